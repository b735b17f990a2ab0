"""What the grading session needs of a backend: the interface ``parakit.backends`` implement
(``parakit.backends.base.Backend`` is the plain one, the others override what differs), and
the error a backend raises when it cannot run anything. Defined here, on the session's side,
so that the session never imports a backend: backends are handed to it (``Runtime.backends``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from parakit.controller.processes import observe
from parakit.controller.processes.launch import Child


class BackendError(RuntimeError):
    """The backend cannot run anything (no launcher, a cluster that did not start)."""


class Backend(Protocol):
    """How to start what a run needs, launch a runner with P workers, tell the run's own
    processes, watch its workers from outside, and stop and sweep what was started."""

    name: str
    launcher_levels: int  # generations below the started child that are the launcher's own
    schedules: bool  # its launcher is the batch system's (srun): its variables kept

    @property
    def unavailable(self) -> str: ...

    @property
    def engines(self) -> tuple[int, ...]: ...

    def start(self) -> dict: ...

    def command(self, module_args: Sequence[str], workers: int) -> list[str]: ...

    def result_ranks(self, workers: int) -> int: ...

    def observer(self, child: Child, jobdir: Path, workers: int) -> observe.Observer: ...

    def leftovers(self, child: Child, seen: observe.Seen) -> list[str]: ...

    def dump_stacks(self, child: Child) -> None: ...

    def sweep(self, child: Child) -> None: ...

    def failed(self) -> None: ...

    def stop(self) -> None: ...
