"""A process's CPU time as the operating system counts it: what the grader measures from
outside, here and (through ``parakit.controller.processes.probe``) on other hosts; and how long the
operating system kept it from a CPU while it could have run (its run-queue delay), which
tells a schedule the code chose from one the machine imposed."""

from __future__ import annotations

import os
from pathlib import Path
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


def times_of(pids: list[int]) -> dict[int, Times]:
    """``times`` of each of these processes of this machine that is still there."""
    out = {}
    for pid in pids:
        try:
            found = times(psutil.Process(pid))
        except psutil.Error:
            found = None
        if found is not None:
            out[pid] = found
    return out


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


def available_cpus() -> tuple[float, str]:
    """How many CPUs this process may use, and why: the fewer of its affinity mask
    (``taskset``, a cpuset) and its cgroup's CFS quota (v1 ``cpu.cfs_quota_us`` /
    ``cpu.cfs_period_us``, v2 ``cpu.max``; the smallest on the way up the hierarchy, as the
    kernel applies them all). Other load is not in it: the run-queue delay (``Times.waited``)
    measures that, per process, while it runs."""
    try:
        cpus: float = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = float(os.cpu_count() or 1)
    why = f"the {cpus:g} CPU(s) of its affinity mask"
    quota = _cfs_quota()
    if quota is not None and quota < cpus:
        cpus, why = quota, f"a CPU quota of {quota:g} CPU (cgroup CFS)"
    return cpus, why


def _cfs_quota() -> float | None:
    """The smallest CFS quota, in CPUs, of this process's cgroup and its ancestors (None:
    none set, or no cgroup file system)."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    found = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2: cpu.max is "max 100000" or "50000 100000"
            files = [(f"{d}/cpu.max", None) for d in _up("/sys/fs/cgroup", path)]
        elif "cpu" in controllers.split(","):
            base = "/sys/fs/cgroup/" + controllers
            files = [(f"{d}/cpu.cfs_quota_us", f"{d}/cpu.cfs_period_us") for d in _up(base, path)]
        else:
            continue
        for quota_file, period_file in files:
            try:
                text = Path(quota_file).read_text().split()
                if period_file:
                    text.append(Path(period_file).read_text().strip())
                quota, period = int(text[0]), int(text[1])
            except (OSError, ValueError, IndexError):
                continue
            if quota > 0 and period > 0:
                found.append(quota / period)
    return min(found, default=None)


def _up(base: str, path: str) -> list[str]:
    """The cgroup folder of ``path`` under ``base`` and those of its ancestors."""
    parts = [p for p in path.split("/") if p]
    return [os.path.join(base, *parts[:n]) for n in range(len(parts), -1, -1)]
