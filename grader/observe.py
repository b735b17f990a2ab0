"""What the grader sees of a graded run from outside: its workers, and the CPU time they used.

Nothing here asks the graded code: the processes come from the process table (the ranks below
mpiexec, the pool's workers below the child, the session's engines), their CPU time from the
operating system. So a trace record from a process that is not one of these is a forgery, and
a call whose CPU time went to the calling process did not run in parallel, whatever its trace
says. The child only marks when a case begins (``ready-{i}``) and, for a pool, when the call
has returned while its workers still live (``alive-{i}``, answered by ``ack-{i}``); a child
that does not mark simply gets no credit for the processes it did not show.

MPI ranks busy-wait in MPICH (a waiting rank uses a whole core), so their CPU time says nothing
about where the work ran; for MPI only the ranks themselves are known.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from grader import proctree


@dataclass
class Seen:
    """One case as observed: the job's workers (pid -> label) and CPU seconds per process."""

    workers: dict[int, str] = field(default_factory=dict)
    cpu: dict[int, float] = field(default_factory=dict)  # worker pid -> CPU seconds in the case
    caller_cpu: float | None = None  # the calling process's CPU seconds in the case
    ranks: dict[int, int] = field(default_factory=dict)  # MPI: rank -> pid, from the launcher


def _cpu(proc: psutil.Process) -> float | None:
    try:
        times = proc.cpu_times()
        return times.user + times.system
    except psutil.Error:
        return None


def _answer(path: Path) -> None:
    """Create an empty file in a folder the graded code owns: never through a link it planted
    there (under ``--run-as`` the grader is root)."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644))
    except OSError:
        pass


def _rank(proc: psutil.Process) -> str:
    """The MPI rank a launcher gave a process (its initial environment), or '?'."""
    try:
        env = proc.environ()
    except psutil.Error:
        return "?"
    return env.get("PMI_RANK") or env.get("OMPI_COMM_WORLD_RANK") or "?"


class Observer:
    """Watches one child's run, case by case; ``poll`` is called from the harness's loop."""

    def __init__(self, backend: str, child: proctree.Child, jobdir: Path,
                 engines: Iterable[int] = (), ranks: int = 0):
        self.backend, self.child, self.jobdir = backend, child, jobdir
        self.nranks = ranks  # MPI: how many ranks to look for
        self.engines = {pid: f"engine (pid {pid})" for pid in engines}
        self._start: dict[int, float] = {}  # pid -> CPU at the case's start
        self._caller_start: float | None = None
        self._ready = -1  # last case whose start was seen
        self._acked = -1
        self._scans = 0  # looks for the MPI ranks
        self.current = Seen()

    def _caller(self) -> psutil.Process | None:
        try:
            return psutil.Process(self.child.popen.pid)
        except psutil.Error:
            return None

    def poll(self, case: int) -> None:
        """Look at the run while case ``case`` is under way."""
        if self.backend == "mpi":
            # still starting, or not yet exec'd (a launcher that names no rank: 100 looks)
            if len(self.current.ranks) < self.nranks and self._scans < 100:
                self._scans += 1
                self._see_ranks(self.current)
            return
        if self._ready < case and (self.jobdir / f"ready-{case}").exists():
            self._ready = case
            self._case_started()
        if self.backend == "pool" and self._acked < case \
                and (self.jobdir / f"alive-{case}").exists():
            self._pool_alive()
            _answer(self.jobdir / f"ack-{case}")
            self._acked = case

    def _case_started(self) -> None:
        caller = self._caller()
        self._caller_start = _cpu(caller) if caller else None
        if self.backend == "ipp":
            self._start = {}
            for pid in self.engines:
                try:
                    cpu = _cpu(psutil.Process(pid))
                except psutil.Error:
                    cpu = None
                if cpu is not None:
                    self._start[pid] = cpu

    def _pool_alive(self) -> None:
        """The call returned and its pool still lives: its workers and their CPU time (they
        were started for this case, so all of it is this case's)."""
        caller = self._caller()
        if caller is None:
            return
        own = self.child.own_processes()
        for proc in caller.children():
            if proc.pid in own:
                continue
            cpu = _cpu(proc)
            if cpu is not None:
                self.current.workers[proc.pid] = f"pool worker (pid {proc.pid})"
                self.current.cpu[proc.pid] = cpu
        self._set_caller_cpu(caller)

    def _set_caller_cpu(self, caller: psutil.Process | None) -> None:
        now = _cpu(caller) if caller else None
        if now is not None and self._caller_start is not None:
            self.current.caller_cpu = now - self._caller_start

    def _see_ranks(self, seen: Seen) -> None:
        """The ranks: the processes two levels below mpiexec (its proxies, then theirs). A
        process caught between the proxy's fork and its exec has no rank in its environment
        yet: it is labelled again at the next look."""
        try:
            top = psutil.Process(self.child.popen.pid)
            for proxy in top.children():
                for proc in proxy.children():
                    rank = _rank(proc)
                    seen.workers[proc.pid] = f"rank {rank} (pid {proc.pid})"
                    if rank.isdigit():
                        seen.ranks[int(rank)] = proc.pid
        except psutil.Error:
            pass

    def finish_case(self) -> Seen:
        """The observation of the case whose result just arrived; the next one starts empty."""
        seen = self.current
        if self.backend == "ipp":
            seen.workers = dict(self.engines)
            for pid, start in self._start.items():
                try:
                    now = _cpu(psutil.Process(pid))
                except psutil.Error:
                    now = None
                if now is not None:
                    seen.cpu[pid] = now - start
            self._set_caller_cpu(self._caller())
        elif self.backend == "mpi" and len(seen.ranks) < self.nranks:
            self._see_ranks(seen)
        self.current = Seen(workers=dict(seen.workers), ranks=dict(seen.ranks)) \
            if self.backend == "mpi" else Seen()
        self._start, self._caller_start = {}, None
        return seen
