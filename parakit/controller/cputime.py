"""A process's CPU time as the operating system counts it: what the grader measures from
outside, here and (through ``parakit.controller.probe``) on other hosts."""

from __future__ import annotations

import os

import psutil


def cpu_seconds(proc: psutil.Process) -> float | None:
    """User plus system CPU seconds of a process so far (None once it is gone).

    The process's own total (``/proc/PID/stat``) counts in ticks of 10 ms, as long as one
    small case; the scheduler's count per thread (``/proc/PID/task/*/schedstat``) is exact to
    the nanosecond but forgets threads that have ended. The larger of the two is never short
    of the truth by more than a tick, and exact while every thread lives.
    """
    try:
        times = proc.cpu_times()
    except psutil.Error:
        return None
    return max(times.user + times.system, _scheduled(proc.pid))


def _scheduled(pid: int) -> float:
    """Seconds on a CPU of the live threads of ``pid`` by the scheduler's count (0 if it
    cannot be read: not Linux, a kernel without schedstat)."""
    total = 0
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0.0
    for tid in threads:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat", "rb") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return total / 1e9
