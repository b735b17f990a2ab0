"""What the grader sees of a graded run from outside: its workers, and the CPU time they used.

Nothing here asks the graded code: the processes come from the process table (the ranks below
mpiexec, the pool's workers below the child, the session's engines), their CPU time from the
operating system. So a trace record from a process that is not one of these is a forgery, and
a call whose CPU time went to the calling process did not run in parallel, whatever its trace
says. The child only marks when a case begins (``ready-{i}``) and, for a pool, when the call
has returned while its workers still live (``alive-{i}``, answered by ``ack-{i}``); a child
that does not mark simply gets no credit for the processes it did not show.

MPI ranks busy-wait in MPICH (a waiting rank uses a whole core), so their CPU time says nothing
about where the work ran; for MPI only the ranks themselves are known. Each backend's observer
lives with the backend (``parakit.backends``); this module has what they share.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from parakit.controller import proctree
from parakit.controller.launch import Child

Proc = tuple[str, int]  # a process anywhere: (its host's name for itself, its pid there)
HOST = proctree.HOST


def here(pid: int) -> Proc:
    """A process of this machine."""
    return (HOST, pid)


def describe(proc: Proc) -> str:
    """``pid 123`` here, ``pid 123 on node2`` elsewhere."""
    host, pid = proc
    return f"pid {pid}" if host == HOST else f"pid {pid} on {host}"


@dataclass
class Seen:
    """One case as observed: the job's workers (-> label) and CPU seconds per process."""

    workers: dict[Proc, str] = field(default_factory=dict)
    cpu: dict[Proc, float] = field(default_factory=dict)  # worker -> CPU seconds in the case
    caller_cpu: float | None = None  # the calling process's CPU seconds in the case
    ranks: dict[int, Proc] = field(default_factory=dict)  # MPI: rank -> process, from outside


def cpu_seconds(proc: psutil.Process) -> float | None:
    """User plus system CPU seconds of a process so far (None once it is gone)."""
    try:
        times = proc.cpu_times()
        return times.user + times.system
    except psutil.Error:
        return None


def answer(path: Path) -> None:
    """Create an empty file in a folder the graded code owns: never through a link it planted
    there (under ``--run-as`` the grader is root)."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644))
    except OSError:
        pass


class Observer:
    """Watches one child's run, case by case; ``poll`` is called from the job's loop.

    This one sees the calling process only (its CPU time between ``ready-{i}`` and the result);
    each backend's observer (``parakit.backends``) adds the workers it can find from outside.
    """

    def __init__(self, child: Child, jobdir: Path):
        self.child, self.jobdir = child, jobdir
        self._caller_start: float | None = None
        self._ready = -1  # last case whose start was seen
        self.current = Seen()

    def caller(self) -> psutil.Process | None:
        """The process the controller started (the pool's owner, the ipyparallel client)."""
        try:
            return psutil.Process(self.child.popen.pid)
        except psutil.Error:
            return None

    def poll(self, case: int) -> None:
        """Look at the run while case ``case`` is under way."""
        if self._ready < case and (self.jobdir / f"ready-{case}").exists():
            self._ready = case
            caller = self.caller()
            self._caller_start = cpu_seconds(caller) if caller else None
            self.case_started()

    def case_started(self) -> None:
        """The child marked the start of a case (hook for the backends' observers)."""

    def set_caller_cpu(self, caller: psutil.Process | None) -> None:
        now = cpu_seconds(caller) if caller else None
        if now is not None and self._caller_start is not None:
            self.current.caller_cpu = now - self._caller_start

    def finish_case(self) -> Seen:
        """The observation of the case whose result just arrived; the next one starts empty."""
        seen, self.current = self.current, self.next_seen(self.current)
        self._caller_start = None
        return seen

    def next_seen(self, seen: Seen) -> Seen:
        """What the next case starts with: nothing (MPI keeps its ranks)."""
        return Seen()
