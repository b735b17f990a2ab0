"""What the grader sees of a graded run from outside: its workers, and the CPU time they used.

Nothing here asks the graded code: the processes come from the process table (the ranks below
mpiexec, the pool's workers below the child, the session's engines), their CPU time from the
operating system. So a trace record from a process that is not one of these is a forgery, and
a call whose CPU time went to the calling process did not run in parallel, whatever its trace
says. The child marks where it is: ``loading`` (before the graded module is imported: CPU time
is counted from there), when a case begins (``ready-{i}``) and, for a pool, when the pool is
open (``pool-{i}``, answered by ``seen-{i}``) and when the call has returned while its workers
still live (``alive-{i}``, answered by ``ack-{i}``). A child that does not mark gets no
credit for the processes it did not show, and a pool or MPI run with no worker seen fails.

MPICH ranks would poll while they wait (a whole core each); the grader makes them sleep
instead (``runtime.MPICH_IDLE``, ``parakit.worker.idle_cheaply``), so their CPU time is work
too. Each backend's observer lives with the backend (``parakit.backends``); this module has
what they share.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from parakit.controller.processes import proctree
from parakit.controller.processes.cputime import cpu_seconds
from parakit.controller.processes.launch import Child

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
    call_cpu: float | None = None  # the same from the runner's ready-{i} mark: the call alone
    ranks: dict[int, Proc] = field(default_factory=dict)  # MPI: rank -> process, from outside
    other_cpu: dict[Proc, float] = field(default_factory=dict)  # processes of the graded code's
    waited: dict[Proc, float] = field(default_factory=dict)  # worker -> seconds kept off a CPU


def answer(path: Path) -> None:
    """Create an empty file in a folder the graded code owns: never through a link it planted
    there (under ``--run-as`` the grader is root)."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644))
    except OSError:
        pass


class Observer:
    """Watches one child's run, case by case; ``poll`` is called from the job's loop.

    This one sees the calling process only: its CPU time over windows that follow each other
    without a gap, from the runner's ``loading`` mark (written before the graded module is
    imported) to the first result, then from each result to the next. CPU time the graded
    code spends outside a call (at import, between cases) therefore counts for a case too.
    Each backend's observer (``parakit.backends``) adds the workers it can find from outside.
    """

    def __init__(self, child: Child, jobdir: Path):
        self.child, self.jobdir = child, jobdir
        self._caller_mark: float | None = None  # its CPU seconds where the window began
        self._call_mark: float | None = None  # ... where the call began (ready-{i})
        self._ready = -1  # last case whose start was seen
        self.current = Seen()

    def caller(self) -> psutil.Process | None:
        """The process the controller started (the pool's owner, the ipyparallel client)."""
        try:
            return psutil.Process(self.child.popen.pid)
        except psutil.Error:
            return None

    def _caller_cpu(self) -> float | None:
        caller = self.caller()
        return cpu_seconds(caller) if caller else None

    def poll(self, case: int) -> None:
        """Look at the run while case ``case`` is under way."""
        if self._caller_mark is None and (self.jobdir / "loading").exists():
            self._caller_mark = self._caller_cpu()
        if self._ready < case and (self.jobdir / f"ready-{case}").exists():
            self._ready = case
            self._call_mark = self._caller_cpu()
            self.case_started()

    def case_started(self) -> None:
        """The child marked the start of a case (hook for the backends' observers)."""

    def finish_case(self) -> Seen:
        """The observation of the case whose result just arrived; the next one starts empty."""
        now = self._caller_cpu()
        if now is not None and self._caller_mark is not None:
            self.current.caller_cpu = now - self._caller_mark
        if now is not None and self._call_mark is not None:
            self.current.call_cpu = now - self._call_mark
        self._caller_mark, self._call_mark = now, None
        seen, self.current = self.current, self.next_seen(self.current)
        return seen

    def next_seen(self, seen: Seen) -> Seen:
        """What the next case starts with: nothing (MPI keeps its ranks)."""
        return Seen()
