"""Child processes that can always be cleaned up: tagged, in their own session, killed as a tree.

With MPICH every rank sits in a session of its own, so ``killpg`` on the launcher misses the
ranks. Every process the grader starts therefore carries the environment variable ``TAG_VAR``
(inherited by everything it starts in turn); on kill we take the union of the psutil process tree
and every process carrying the tag, so that even a rank re-parented to init is found.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path

import psutil

TAG_VAR = "PARAKIT_TAG"  # unique per started child: finds its whole tree
OWNER_VAR = "PARAKIT_OWNER"  # pid of the grading process: finds orphans of a dead session
_PYTHON_NAMES = ("python", "python3")


def _environ(proc: psutil.Process) -> Mapping[str, str]:
    try:
        return proc.environ()
    except (psutil.Error, OSError):
        return {}


def tagged(var: str, value: str) -> list[psutil.Process]:
    """Every live process whose environment has ``var=value`` (ours only: same user)."""
    me = os.getpid()
    uid = os.getuid()
    found = []
    for proc in psutil.process_iter(["pid", "uids"]):
        try:
            if proc.pid == me or proc.info["uids"] is None or proc.info["uids"].real != uid:
                continue
        except (psutil.Error, KeyError):
            continue
        if _environ(proc).get(var) == value:
            found.append(proc)
    return found


def _alive(procs: Iterable[psutil.Process]) -> list[psutil.Process]:
    out = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.Error:
            pass
    return out


def terminate(procs: Iterable[psutil.Process], grace: float = 1.0) -> list[psutil.Process]:
    """SIGTERM, a short wait, then SIGKILL for survivors; return those that had to be killed."""
    procs = _alive(procs)
    for p in procs:
        try:
            p.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=grace)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=grace)
    return alive


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
                 outdir: str | os.PathLike, output_limit: int = 1 << 20):
        self.tag = uuid.uuid4().hex
        self.outdir = Path(outdir)
        env = {**env, TAG_VAR: self.tag, OWNER_VAR: str(os.getpid())}
        self.popen = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                      start_new_session=True)
        self.captures = {name: _Capture(pipe, self.outdir / f"{name}.txt", output_limit)
                         for name, pipe in (("stdout", self.popen.stdout),
                                            ("stderr", self.popen.stderr))}
        self.started = time.monotonic()

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
        """The child, its descendants, and any process carrying its tag."""
        procs: dict[int, psutil.Process] = {}
        try:
            top = psutil.Process(self.popen.pid)
            procs[top.pid] = top
            for p in top.children(recursive=True):
                procs[p.pid] = p
        except psutil.Error:
            pass
        for p in tagged(TAG_VAR, self.tag):
            procs.setdefault(p.pid, p)
        return _alive(procs.values())

    def dump_stacks(self, wait: float = 0.5) -> None:
        """Ask every process that registered a stack file in ``outdir`` to write its stack.

        That is each MPI rank, pool worker and ipyparallel engine of the job (see
        ``grader.child.watch_stacks``); only they have a handler, so only they are signalled.
        """
        uid = os.getuid()
        for path in self.outdir.glob("stack-*.txt"):
            pid = int(path.stem.removeprefix("stack-"))
            try:
                proc = psutil.Process(pid)
                if proc.uids().real == uid and proc.name().startswith(_PYTHON_NAMES):
                    proc.send_signal(signal.SIGUSR1)
            except (psutil.Error, ValueError):
                pass
        time.sleep(wait)

    def stop(self) -> list[psutil.Process]:
        """Kill the whole tree (TERM, short wait, KILL); return processes that needed KILL."""
        killed = terminate(self.tree())
        try:
            self.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        for cap in self.captures.values():
            cap.join(timeout=5)
        return killed


def sweep_orphans() -> list[psutil.Process]:
    """Kill processes left by an earlier grading session whose owner has died."""
    uid = os.getuid()
    orphans = []
    for proc in psutil.process_iter(["uids"]):
        try:
            if proc.info["uids"] is None or proc.info["uids"].real != uid:
                continue
        except (psutil.Error, KeyError):
            continue
        owner = _environ(proc).get(OWNER_VAR)
        if owner and owner.isdigit() and not psutil.pid_exists(int(owner)):
            orphans.append(proc)
    terminate(orphans)
    return orphans
