"""The worker side: code that runs inside graded processes, started by the controller.

``parakit.worker.grade`` runs a graded function over a job's cases, ``parakit.worker.bench``
times one; both open their backend's context (an MPI communicator, a pool, an ipyparallel view)
through ``parakit.worker.contexts``. Nothing here imports the controller side (pytest, the
plugin, the jobs): graded code runs in these processes, so what they report is data for the
controller to check, never a verdict (docs/architecture.md).

This module holds what both runners share: the statuses a result can carry, resource limits,
stack dumps on SIGUSR1 and the marks that tell the controller where a run is.
"""

from __future__ import annotations

import faulthandler
import os
import resource
import signal
import socket
import time
from pathlib import Path

# Statuses a result file can carry (the controller adds "crashed" and "timeout").
OK, NOT_IMPLEMENTED, ERROR = "ok", "not_implemented", "error"
MISSING_MODULE, MISSING_FUNCTION = "missing_module", "missing_function"
IMPORT_ERROR = "import_error"
LIMIT, LEAKED = "limit", "leaked"  # a resource limit was hit; processes were left running
RUNNER_ABORT = 86  # the error code of the runner's own MPI_Abort after a failed case
_stack_files: list = []  # keep the faulthandler files open for the life of the process


def watch_stacks(jobdir: str | os.PathLike, label: str) -> None:
    """Dump this process's stack to ``jobdir/stack-{host}-{pid}.txt`` when it receives
    SIGUSR1, so that the controller can say where a hung run was before it kills it."""
    path = Path(jobdir, stack_file(os.getpid()))
    file = open(path, "w")  # noqa: SIM115  (must stay open: faulthandler writes to its fd)
    file.write(f"{label}\n")
    file.flush()
    _stack_files.append(file)
    faulthandler.register(signal.SIGUSR1, file=file, all_threads=False)


def stack_file(pid: int) -> str:
    """The name of a process's stack file: by host and pid (pids repeat across hosts)."""
    return f"stack-{socket.gethostname()}-{pid}.txt"


def idle_cheaply() -> None:
    """Make waiting cost little CPU time in this process and all it starts, so that the CPU
    time the operating system counts is work (``parakit.controller.processes.observe``).

    MPICH polls while a rank waits; the controller's environment makes it sleep a microsecond
    after each empty poll (``runtime.MPICH_IDLE``). The kernel rounds such a sleep up by the
    thread's timer slack (50 us by default, 200 us here): a waiting rank then uses about 6% of
    a core instead of all of it. A longer slack saves more (1 ms: 2%) but delays every message
    a sleeping rank waits for: across two hosts the reference's master-worker then left
    workers waiting up to half a run. Graded code may set another slack; that only makes its
    own waiting look like work, which the work it claims must then explain.
    """
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_TIMERSLACK, TIMER_SLACK_NS, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: waiting is measured as it is
        pass


PR_SET_TIMERSLACK = 29
TIMER_SLACK_NS = 200_000


def apply_limits(memory: int = 0, cpu: int = 0) -> None:
    """Memory (address space, bytes) and CPU-time (seconds) limits for this process and all it
    starts; 0: no limit."""
    if memory:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    if cpu:
        # SIGXCPU at the soft limit (reported as such), SIGKILL a little later
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))


MARK_LOOK_MAX = 0.005  # seconds between looks for the controller's answer, at most


def mark(jobdir: str | os.PathLike, name: str, wait_for: str = "", timeout: float = 10.0) -> None:
    """Tell the controller where the run is (``parakit.controller.processes.observe``): create
    ``jobdir/name``; optionally wait (at most ``timeout`` s) for its answer ``wait_for``.

    The wait counts in the graded process's CPU time, so it looks less often the longer it
    lasts (0.5 ms, doubling up to ``MARK_LOOK_MAX``): a controller slowed down by a crowded
    machine (seconds to answer beside busy neighbours) must not turn the wait into work.
    """
    Path(jobdir, name).touch()
    deadline = time.monotonic() + timeout
    pause = 0.0005
    while wait_for and not Path(jobdir, wait_for).exists() and time.monotonic() < deadline:
        time.sleep(pause)
        pause = min(2 * pause, MARK_LOOK_MAX)
