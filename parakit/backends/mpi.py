"""MPI: ranks started by ``mpiexec`` (or any launcher given with ``--mpiexec``)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import psutil

from parakit.backends.base import Backend, BackendError
from parakit.controller import observe
from parakit.controller.launch import Child


def detect_mpiexec(command: str | None = None) -> tuple[str, ...]:
    """The MPI launcher, with ``--oversubscribe`` for Open MPI (more ranks than cores);
    BackendError if there is none."""
    if command:
        return tuple(shlex.split(command))
    exe = shutil.which("mpiexec", path=os.pathsep.join([str(Path(sys.executable).parent),
                                                         os.environ.get("PATH", "")]))
    if exe is None:
        raise BackendError("mpiexec not found: install the kit with `pip install -e .` (it "
                           "brings the mpich wheel) or put an MPI's mpiexec on PATH, or pass "
                           "--mpiexec")
    try:
        version = subprocess.run([exe, "--version"], capture_output=True, text=True,
                                 timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        version = ""
    if "Open MPI" in version or "OpenRTE" in version:
        flags = ["--oversubscribe"] + (["--allow-run-as-root"] if os.getuid() == 0 else [])
        return (exe, *flags)
    return (exe,)


class Mpi(Backend):
    """``mpiexec -n P python -m mpi4py -m RUNNER``: an uncaught exception aborts all ranks.

    The launcher is looked for once, when first needed; without one every MPI run fails with
    the reason and the other backends still run.
    """

    name = "mpi"
    launcher_levels = 2  # mpiexec's proxies, then the ranks

    def __init__(self, command: str | None = None):
        self._command = command
        self._launcher: tuple[str, ...] | None = None
        self._error = ""

    @property
    def launcher(self) -> tuple[str, ...]:
        if self._launcher is None and not self._error:
            try:
                self._launcher = detect_mpiexec(self._command)
            except BackendError as exc:
                self._error = str(exc)
        return self._launcher or ()

    @property
    def unavailable(self) -> str:
        return "" if self.launcher else self._error

    def start(self) -> dict:
        if self.unavailable:
            raise BackendError(self.unavailable)
        return {}

    def command(self, module_args: Sequence[str], workers: int) -> list[str]:
        return [*self.launcher, "-n", str(workers), sys.executable, "-m", "mpi4py", *module_args]

    def program(self, module: str, ranks: int) -> list[str]:
        """A module run as a program on ``ranks`` ranks (no mpi4py wrapper: its own output)."""
        return [*self.launcher, "-n", str(ranks), sys.executable, "-m", module]

    def result_ranks(self, workers: int) -> int:
        return workers

    def observer(self, child: Child, jobdir: Path, workers: int) -> observe.Observer:
        return RankObserver(child, jobdir, workers)


def _rank(proc: psutil.Process) -> str:
    """The MPI rank a launcher gave a process (its initial environment), or '?'."""
    try:
        env = proc.environ()
    except psutil.Error:
        return "?"
    return env.get("PMI_RANK") or env.get("OMPI_COMM_WORLD_RANK") or "?"


class RankObserver(observe.Observer):
    """The ranks: the processes two levels below mpiexec (its proxies, then theirs). Their CPU
    time is not kept: MPICH ranks busy-wait, so it says nothing about where work ran."""

    def __init__(self, child: Child, jobdir: Path, ranks: int):
        super().__init__(child, jobdir)
        self.nranks, self._scans = ranks, 0

    def poll(self, case: int) -> None:
        # still starting, or not yet exec'd (a launcher that names no rank: 100 looks)
        if len(self.current.ranks) < self.nranks and self._scans < 100:
            self._scans += 1
            self._see_ranks(self.current)

    def _see_ranks(self, seen: observe.Seen) -> None:
        """A process caught between the proxy's fork and its exec has no rank in its
        environment yet: it is labelled again at the next look."""
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

    def finish_case(self) -> observe.Seen:
        if len(self.current.ranks) < self.nranks:
            self._see_ranks(self.current)
        return super().finish_case()

    def next_seen(self, seen: observe.Seen) -> observe.Seen:
        return observe.Seen(workers=dict(seen.workers), ranks=dict(seen.ranks))
