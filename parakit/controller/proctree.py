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
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path

import psutil

TAG_VAR = "PARAKIT_TAG"  # unique per started child: finds its whole tree
OWNER_VAR = "PARAKIT_OWNER"  # pid of the grading process: finds orphans of a dead session
_PYTHON_NAMES = ("python", "python3")
_watched_uids: set[int] = set()  # users graded code runs as besides ours (the grader's --run-as)


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


def _children(proc: psutil.Process) -> list[psutil.Process]:
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


class _Capture(threading.Thread):
    """Copy a pipe to a file, up to ``limit`` bytes; beyond that, count and keep only the tail.

    A submission that prints 100 MB therefore costs the grader a counter, not its disk, and the
    failure message can still show the last lines.
    """

    def __init__(self, pipe, path: Path, limit: int, tail: int = 4096):
        super().__init__(daemon=True)
        self.pipe, self.path, self.limit, self.tail_size = pipe, path, limit, tail
        self.total = 0
        self.tail = b""
        self.start()

    def run(self) -> None:
        with open(self.path, "wb") as out:
            for chunk in iter(lambda: self.pipe.read1(1 << 16), b""):
                if self.total < self.limit:
                    out.write(chunk[: self.limit - self.total])
                    out.flush()
                self.total += len(chunk)
                self.tail = (self.tail + chunk)[-self.tail_size:]
        self.pipe.close()

    @property
    def truncated(self) -> bool:
        return self.total > self.limit


class Child:
    """One graded child: started in a new session with its output captured, then waited for."""

    def __init__(self, cmd: list[str], env: Mapping[str, str], cwd: str | os.PathLike,
                 outdir: str | os.PathLike, output_limit: int = 1 << 20,
                 user: tuple[int, int] | None = None):
        self.tag = uuid.uuid4().hex
        self.outdir = Path(outdir)
        env = {**env, TAG_VAR: self.tag, OWNER_VAR: str(os.getpid())}
        as_user = {}
        if user is not None:  # (uid, gid): no supplementary groups; HOME it can write
            watch_uid(user[0])
            as_user = {"user": user[0], "group": user[1], "extra_groups": []}
            env["HOME"] = str(cwd)
        self.popen = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                      start_new_session=True, **as_user)
        self.captures = {name: _Capture(pipe, self.outdir / f"{name}.txt", output_limit)
                         for name, pipe in (("stdout", self.popen.stdout),
                                            ("stderr", self.popen.stderr))}
        self.started = time.monotonic()
        try:  # psutil's clock, to tell processes that appeared during this child's run
            self.created = psutil.Process(self.popen.pid).create_time()
        except psutil.Error:
            self.created = time.time()

    def own_processes(self, levels: int = 0) -> set[int]:
        """Pids of the child and of its first ``levels`` generations (mpiexec: its proxies and
        the ranks), plus multiprocessing's helper processes of the child itself."""
        own = {self.popen.pid}
        try:
            generation = [psutil.Process(self.popen.pid)]
        except psutil.Error:
            return own
        for proc in generation[0].children():
            try:
                cmd = " ".join(proc.cmdline())
            except psutil.Error:
                continue
            if "resource_tracker" in cmd or "forkserver" in cmd:
                own.add(proc.pid)
        for _ in range(levels):
            generation = [c for p in generation for c in _children(p)]
            own.update(p.pid for p in generation)
        return own

    def output(self, name: str) -> str:
        """The end of the child's stdout or stderr (what a failure message shows)."""
        cap = self.captures[name]
        text = cap.tail.decode(errors="replace")
        if cap.total > len(cap.tail):
            text = "[... earlier output cut ...]\n" + text
        return text

    def note_truncation(self) -> str:
        """A sentence about output that went over the limit, or ''."""
        over = [f"{name} ({cap.total / 2**20:.1f} MiB)" for name, cap in self.captures.items()
                if cap.truncated]
        if not over:
            return ""
        limit = next(iter(self.captures.values())).limit
        return (f"the graded code wrote more output than the limit of {limit / 2**20:g} MiB: "
                f"{', '.join(over)}; only the first part was kept")

    def wait(self, timeout: float) -> int | None:
        """The exit code, or ``None`` if the child is still running after ``timeout`` seconds."""
        try:
            return self.popen.wait(timeout=max(0.0, timeout))
        except subprocess.TimeoutExpired:
            return None

    def tree(self) -> list[psutil.Process]:
        """The child, its descendants, and every descendant of the grader that appeared since
        the child started (detached orphans, see :func:`become_subreaper`); without a
        subreaper, every process carrying the child's tag instead."""
        procs: dict[int, psutil.Process] = {}
        try:
            top = psutil.Process(self.popen.pid)
            procs[top.pid] = top
            for p in top.children(recursive=True):
                procs[p.pid] = p
        except psutil.Error:
            pass
        # With the subreaper, nothing that left the tree can be anywhere but below us; the tag
        # scan (every process's environment, ~10 ms) is the fallback without it.
        extra = new_processes(self.created) if is_subreaper() else tagged(TAG_VAR, self.tag)
        for p in extra:
            procs.setdefault(p.pid, p)
        return alive(procs.values())

    def dump_stacks(self, also: Iterable[int] = (), wait: float = 0.5) -> None:
        """Ask every process of the job that registered a stack file in ``outdir`` to write
        its stack: each MPI rank and pool worker (the child's tree), the engines ``also`` and
        any ipyparallel engine (a user's cluster; see ``parakit.worker.grade.watch_stacks``). A file
        names its process, and graded code could name any: no other process is signalled
        (SIGUSR1 ends one without a handler)."""
        ours = {p.pid for p in self.tree()} | set(also)
        for path in self.outdir.glob("stack-*.txt"):
            try:
                pid = int(path.stem.removeprefix("stack-"))
                proc = psutil.Process(pid)
                engine = proc.cmdline()[-2:] == ["-m", "ipyparallel.engine"]  # a user's own
                if (pid in ours or engine) and proc.name().startswith(_PYTHON_NAMES):
                    proc.send_signal(signal.SIGUSR1)
            except (psutil.Error, ValueError):
                pass
        time.sleep(wait)

    def stop(self) -> list[psutil.Process]:
        """Kill the whole tree (TERM, short wait, KILL); return processes that needed KILL.
        Repeated while processes are left: one may fork while the others are being killed."""
        killed = []
        for _ in range(3):
            tree = self.tree()
            if not tree:
                break
            killed += terminate(tree)
        reap({self.popen.pid})
        try:
            self.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        for cap in self.captures.values():
            cap.join(timeout=5)
        return killed


_PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h


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


def new_processes(since: float, keep: Iterable[int] = ()) -> list[psutil.Process]:
    """Live descendants of this process created at or after ``since`` (psutil's clock, i.e. a
    ``create_time()``), except ``keep``. With the subreaper these include detached orphans."""
    keep = set(keep)
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


def end_all(owner: str) -> None:
    """Kill every descendant of this process and every process tagged with ``owner``, and wait
    until they are gone (the end of a grading session, before reports are written)."""
    for _ in range(3):
        procs = {p.pid: p for p in psutil.Process().children(recursive=True)}
        procs.update((p.pid, p) for p in tagged(OWNER_VAR, owner))
        living = alive(procs.values())
        if not living:
            break
        terminate(living)
    reap()


def sweep_orphans() -> list[psutil.Process]:
    """Kill processes left by an earlier grading session whose owner has died."""
    orphans = []
    for proc in psutil.process_iter(["uids"]):
        try:
            if not _ours(proc.info["uids"]):
                continue
        except (psutil.Error, KeyError):
            continue
        owner = _environ(proc).get(OWNER_VAR)
        if owner and owner.isdigit() and not psutil.pid_exists(int(owner)):
            orphans.append(proc)
    terminate(orphans)
    return orphans
