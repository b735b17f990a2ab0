"""A process's CPU time as the operating system counts it: what the grader measures from
outside, here and (through ``parakit.controller.probe``) on other hosts; and how long the
operating system kept it from a CPU while it could have run (its run-queue delay), which
tells a schedule the code chose from one the machine imposed."""

from __future__ import annotations

import os
from typing import NamedTuple

import psutil


class Times(NamedTuple):
    """A process's seconds on a CPU, and runnable but waiting for one: other processes, a
    CFS quota (cgroups v1 and v2: throttled time counts) or an affinity mask kept it off."""

    cpu: float
    waited: float

    def __sub__(self, other: Times) -> Times:  # type: ignore[override]
        return Times(self.cpu - other.cpu, self.waited - other.waited)


def times(proc: psutil.Process) -> Times | None:
    """The process's ``Times`` so far (None once it is gone); the CPU time as
    ``cpu_seconds``, the waiting from ``/proc/PID/task/*/schedstat`` (0 where unreadable)."""
    try:
        own = proc.cpu_times()
    except psutil.Error:
        return None
    ran, waited = _scheduled(proc.pid)
    return Times(max(own.user + own.system, ran), waited)


def cpu_seconds(proc: psutil.Process) -> float | None:
    """User plus system CPU seconds of a process so far (None once it is gone).

    The process's own total (``/proc/PID/stat``) counts in ticks of 10 ms, as long as one
    small case; the scheduler's count per thread (``/proc/PID/task/*/schedstat``) is exact to
    the nanosecond but forgets threads that have ended. The larger of the two is never short
    of the truth by more than a tick, and exact while every thread lives.
    """
    found = times(proc)
    return None if found is None else found.cpu


def _scheduled(pid: int) -> tuple[float, float]:
    """Seconds on a CPU, and runnable but off one, of the live threads of ``pid`` by the
    scheduler's count (0 if it cannot be read: not Linux, a kernel without schedstat)."""
    ran = waited = 0
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0.0, 0.0
    for tid in threads:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat", "rb") as f:
                fields = f.read().split()
            ran, waited = ran + int(fields[0]), waited + int(fields[1])
        except (OSError, ValueError, IndexError):
            continue
    return ran / 1e9, waited / 1e9
