"""Child processes that can always be cleaned up, whatever the graded code does to escape.

With MPICH every rank sits in a session of its own, so ``killpg`` on the launcher misses the
ranks. Two mechanisms find every process a graded call starts:

- **Child subreaper** (Linux, :func:`become_subreaper`): the grading process is made the reaper of
  its orphans, so a process that detaches (double fork, ``setsid``, a scrubbed environment) is
  re-parented to the grader instead of to init and stays among its descendants. Processes
  that appeared below the grader during a job and are not the job's own (:func:`new_processes`)
  are leftovers of the graded code: reported, then killed.
- **Tags**, the fallback where there is no subreaper: every process the grader starts carries the
  environment variable ``TAG_VAR`` (inherited by everything it starts in turn); on kill we take
  the union of the psutil process tree and every process carrying the tag. A process that
  scrubs its environment and detaches escapes this one; docs/robustness.md says so.
"""

from __future__ import annotations

import ctypes
import os
import socket
import sys
from collections.abc import Iterable, Mapping

import psutil

from parakit.controller.processes import shm

HOST = socket.gethostname()  # this machine, as the kit's trace records and stack files name it
TAG_VAR = "PARAKIT_TAG"  # unique per started child: finds its whole tree
OWNER_VAR = "PARAKIT_OWNER"  # pid of the grading process: finds orphans of a dead session
PYTHON_NAMES = ("python", "python3")
_watched_uids: set[int] = set()  # users graded code runs as besides ours (the grader's --run-as)
_spared: dict[int, bool] = {}  # the grader's own processes started while jobs run (spare):
#                               pid -> whether its descendants are spared too


def watch_uid(uid: int) -> None:
    """Also find (and end) processes of user ``uid``: graded code runs as it (``--run-as``)."""
    _watched_uids.add(uid)


def _ours(uids) -> bool:
    """Whether a process with psutil ``uids`` belongs to this grader: our user or a watched one."""
    return uids is not None and (uids.real == os.getuid() or uids.real in _watched_uids)


def _environ(proc: psutil.Process) -> Mapping[str, str]:
    try:
        return proc.environ()
    except (psutil.Error, OSError):
        return {}


def tagged(var: str, value: str) -> list[psutil.Process]:
    """Every live process whose environment has ``var=value`` (ours only: same user, or the user
    graded code runs as; as root, any user's: a caller such as ``parakit grade`` may not know
    which user its grader's ``--run-as`` named, and the value is specific to our run)."""
    me = os.getpid()
    anyone = os.geteuid() == 0
    found = []
    for proc in psutil.process_iter(["pid", "uids"]):
        try:
            if proc.pid == me or not (anyone or _ours(proc.info["uids"])):
                continue
        except (psutil.Error, KeyError):
            continue
        if _environ(proc).get(var) == value:
            found.append(proc)
    return found


def alive(procs: Iterable[psutil.Process]) -> list[psutil.Process]:
    out = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.Error:
            pass
    return out


def children(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return proc.children()
    except psutil.Error:
        return []


def terminate(procs: Iterable[psutil.Process], grace: float = 1.0) -> list[psutil.Process]:
    """SIGTERM, a short wait, then SIGKILL for survivors; return those that had to be killed."""
    procs = alive(procs)
    for p in procs:
        try:
            p.terminate()
        except psutil.Error:
            pass
    _, survivors = psutil.wait_procs(procs, timeout=grace)
    for p in survivors:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(survivors, timeout=grace)
    return survivors


_PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h
_PR_SET_DUMPABLE = 4


def keep_private() -> bool:
    """Close this process's ``/proc`` entries (open files, memory, environment) to processes
    of the same user that lack ``CAP_SYS_PTRACE``: graded code then cannot write into the
    grader's terminal through ``/proc/PID/fd/1``. (Root has that capability, unless a sandbox
    dropped it: ``parakit.sandbox``.) Children are not affected: exec opens them again. False
    where impossible."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def become_subreaper(on: bool = True) -> bool:
    """Make this process the reaper of orphans below it (Linux 3.4+), or stop being it; False
    where impossible. A subreaper must reap them: :func:`reap`."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def is_subreaper() -> bool:
    """Whether orphans below this process are re-parented to it."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        flag = ctypes.c_int(0)
        return libc.prctl(37, ctypes.byref(flag), 0, 0, 0) == 0 and flag.value == 1
    except (OSError, AttributeError):
        return False


def describe(proc: psutil.Process) -> str:
    """``"1234 python -c ..."``: how a message names a process."""
    try:
        cmd = " ".join(proc.cmdline()) or proc.name()
    except psutil.Error:
        cmd = "?"
    return f"{proc.pid} {cmd[:80]}"


def spare(pids: Iterable[int], descendants: bool = True) -> None:
    """Processes the grader itself started that may appear while a job runs, e.g. an
    ipyparallel cluster launched in the background: never a job's. Known by pid, not by name.
    With ``descendants``, whatever appears below them is spared too: only while no graded code
    runs in them (an engine before its cluster is ready); after that, spare the pids alone."""
    _spared.update(dict.fromkeys(pids, descendants))


def unspare(pids: Iterable[int]) -> None:
    for pid in pids:
        _spared.pop(pid, None)


def subtrees(pids: Iterable[int]) -> set[int]:
    """The pids and every live descendant of them."""
    found = set(pids)
    for pid in list(found):
        try:
            found |= {p.pid for p in psutil.Process(pid).children(recursive=True)}
        except psutil.Error:
            continue
    return found


def _spared_trees() -> set[int]:
    return set(_spared) | subtrees(pid for pid, below in list(_spared.items()) if below)


def new_processes(since: float, keep: Iterable[int] = ()) -> list[psutil.Process]:
    """Live descendants of this process created at or after ``since`` (psutil's clock, i.e. a
    ``create_time()``), except ``keep`` and the spared trees (:func:`spare`). With the
    subreaper these include detached orphans."""
    keep = set(keep) | _spared_trees()
    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if proc.pid in keep or proc.create_time() < since \
                    or proc.status() == psutil.STATUS_ZOMBIE:
                continue
        except psutil.Error:
            continue
        found.append(proc)
    return found


def reap(keep: Iterable[int] = ()) -> None:
    """Collect the exit status of dead orphans re-parented here (no ``Popen`` owns them)."""
    keep = set(keep)
    for proc in psutil.Process().children():
        try:
            if proc.pid not in keep and proc.status() == psutil.STATUS_ZOMBIE:
                os.waitpid(proc.pid, os.WNOHANG)
        except (psutil.Error, ChildProcessError, OSError):
            continue


def end_all(owner: str, since: float | None = None) -> None:
    """Kill every descendant of this process and every process tagged with ``owner``, and wait
    until they are gone (the end of a grading session, before reports are written); then
    remove the shared memory they left in /dev/shm since ``since``
    (``parakit.controller.processes.shm``)."""
    for _ in range(3):
        procs = {p.pid: p for p in psutil.Process().children(recursive=True)}
        procs.update((p.pid, p) for p in tagged(OWNER_VAR, owner))
        living = alive(procs.values())
        if not living:
            break
        terminate(living)
    reap()
    if since is not None:
        shm.sweep(since, {os.getuid(), *_watched_uids})


def sweep_orphans() -> list[psutil.Process]:
    """Kill processes left by an earlier grading session whose owner has died. Only in this
    process's PID namespace: an owner's pid is a number of its own namespace, and a grading in
    another (a container, a simulated host, a Slurm node's) is alive whatever pid it names."""
    orphans = []
    mine = _pid_namespace(os.getpid())
    for proc in psutil.process_iter(["uids"]):
        try:
            if not _ours(proc.info["uids"]) or _pid_namespace(proc.pid) != mine:
                continue
        except (psutil.Error, KeyError):
            continue
        owner = _environ(proc).get(OWNER_VAR)
        if owner and owner.isdigit() and not psutil.pid_exists(int(owner)):
            orphans.append(proc)
    terminate(orphans)
    return orphans


def _pid_namespace(pid: int) -> str | None:
    """The PID namespace a process is in (Linux); None where it cannot be told."""
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None
