"""The one interface every backend implements, for grading and for the bench alike.

A backend knows how to start what its runs need (an MPI launcher, an ipyparallel cluster),
how to launch a worker-side runner with P workers, which processes of a run are its own, how to
watch a run's workers from outside, and how to stop and sweep what it started. The worker side
of each backend (what a graded function receives) is ``parakit.worker.contexts``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from parakit.controller.processes import observe
from parakit.controller.processes.launch import Child


class Backend:
    """The plain backend: one process, no communicator, pool or view (serial functions,
    analysis functions, the bench's serial baseline). The others override what differs."""

    name = "plain"
    launcher_levels = 0  # generations below the started child that are the launcher's own
    schedules = False  # whether its launcher is the batch system's (srun): its variables kept

    @property
    def unavailable(self) -> str:
        """Why this backend cannot run here ('' when it can)."""
        return ""

    def start(self) -> dict:
        """Make the backend ready (started once, restarted after a failure) and return what
        the worker side needs to reach it (e.g. a connection file); BackendError if it cannot
        start."""
        return {}

    def command(self, module_args: Sequence[str], workers: int) -> list[str]:
        """The command line of a runner (``["-m", "parakit.worker.grade", JOBDIR]``) with
        ``workers`` workers."""
        return [sys.executable, *module_args]

    def result_ranks(self, workers: int) -> int:
        """How many processes write a result per case (MPI: every rank)."""
        return 1

    @property
    def engines(self) -> tuple[int, ...]:
        """Long-lived worker processes outside the started child (stack dumps reach them)."""
        return ()

    def observer(self, child: Child, jobdir: Path, workers: int) -> observe.Observer:
        """What watches one run's workers from outside."""
        return observe.Observer(child, jobdir)

    def leftovers(self, child: Child, seen: observe.Seen) -> list[str]:
        """Processes of the run left on other hosts after it returned ("pid command on
        host"); this machine's are found by the job itself."""
        return []

    def dump_stacks(self, child: Child) -> None:
        """Ask the run's processes on other hosts for their stacks (a hang)."""

    def sweep(self, child: Child) -> None:
        """End what is left of the run on other hosts (this machine's tree is already gone)."""

    def failed(self) -> None:
        """A run hung or crashed: whatever it may have left stuck is started afresh next time."""

    def stop(self) -> None:
        """Stop and sweep whatever this backend started."""
