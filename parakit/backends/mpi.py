"""MPI: ranks started by ``mpiexec`` (or any launcher given with ``--mpiexec``)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from parakit.backends.base import Backend
from parakit.backends.ranks import RankObserver, RemoteRankObserver, remote_leftovers
from parakit.controller.processes import observe
from parakit.controller.processes.hosts import Hosts, describe_left
from parakit.controller.processes.launch import Child
from parakit.controller.processes.proctree import OWNER_VAR, TAG_VAR
from parakit.controller.session.backend import BackendError


def detect_mpiexec(command: str | None = None) -> tuple[tuple[str, ...], str]:
    """The MPI launcher and its kind ("mpich", "openmpi" or "" for others, e.g. srun), with
    ``--oversubscribe`` for Open MPI (more ranks than cores); BackendError if there is none."""
    if command:
        launcher = tuple(shlex.split(command))
        return launcher, _kind(launcher[0])
    exe = shutil.which("mpiexec", path=os.pathsep.join([str(Path(sys.executable).parent),
                                                         os.environ.get("PATH", "")]))
    if exe is None:
        raise BackendError("mpiexec not found: install the kit with `pip install -e .` (it "
                           "brings the mpich wheel) or put an MPI's mpiexec on PATH, or pass "
                           "--mpiexec")
    kind = _kind(exe)
    if kind == "openmpi":
        flags = ["--oversubscribe"] + (["--allow-run-as-root"] if os.getuid() == 0 else [])
        return (exe, *flags), kind
    return (exe,), kind


def _kind(exe: str) -> str:
    try:
        version = subprocess.run([exe, "--version"], capture_output=True, text=True,
                                 timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    if "Open MPI" in version or "OpenRTE" in version:
        return "openmpi"
    return "mpich" if "HYDRA" in version else ""


def host_flags(kind: str, hosts: Hosts) -> list[str]:
    """mpiexec's flags that place ranks on ``hosts`` and reach them with its remote shell."""
    if not hosts.several:
        return []
    listed = ",".join(f"{name}:{n}" for name, n in hosts.slots)
    custom = hosts.remote_shell != ("ssh",)
    if kind == "mpich":
        if custom and len(hosts.remote_shell) > 1:
            raise BackendError(f"--remote-shell {shlex.join(hosts.remote_shell)}: MPICH's "
                               "mpiexec takes one program (-launcher-exec), without arguments; "
                               "wrap it in a script")
        where = ["-f", hosts.hostfile] if hosts.hostfile else ["-hosts", listed]
        return where + (["-launcher", "ssh", "-launcher-exec", hosts.remote_shell[0]]
                        if custom else [])
    if kind == "openmpi":
        where = ["--hostfile", hosts.hostfile] if hosts.hostfile else ["--host", listed]
        return where + (["--mca", "plm_rsh_agent", shlex.join(hosts.remote_shell)]
                        if custom else [])
    raise BackendError("--hosts and --hostfile work with MPICH's or Open MPI's mpiexec; with "
                       "another launcher (e.g. srun under Slurm) it places the ranks itself: "
                       "leave them out")


class Mpi(Backend):
    """``mpiexec -n P python -m mpi4py -m RUNNER``: an uncaught exception aborts all ranks.

    The launcher is looked for once, when first needed; without one every MPI run fails with
    the reason and the other backends still run. With several hosts the ranks are placed on
    them and watched there through the remote shell (``RemoteRankObserver``).
    """

    name = "mpi"

    def __init__(self, command: str | None = None, hosts: Hosts | None = None):
        self._command = command
        self.hosts = hosts or Hosts()
        self._launcher: tuple[str, ...] | None = None
        self._flags: list[str] = []
        self._error = ""
        self.kind = ""  # "mpich", "openmpi" or "" (another launcher), once found

    @property
    def launcher(self) -> tuple[str, ...]:
        """The launch command with its placement flags (() if there is none)."""
        if self._launcher is None and not self._error:
            try:
                launcher, self.kind = detect_mpiexec(self._command)
                self._flags = host_flags(self.kind, self.hosts)
                self._launcher = launcher
            except BackendError as exc:
                self._error = str(exc)
        return (*self._launcher, *self._flags) if self._launcher else ()

    @property
    def unavailable(self) -> str:
        return "" if self.launcher else self._error

    @property
    def schedules(self) -> bool:
        """A launcher other than MPICH's or Open MPI's mpiexec (``--mpiexec "srun
        --mpi=pmi2"``) starts the ranks in the allocation it finds in its environment."""
        return bool(self.launcher) and self.kind == ""

    @property
    def launcher_levels(self) -> int:
        """mpiexec's proxies, then the ranks; with several hosts everything below mpiexec is
        the remote shell's (judged on the hosts themselves, ``leftovers``)."""
        return 64 if self.hosts.several else 2

    def start(self) -> dict:
        if self.unavailable:
            raise BackendError(self.unavailable)
        return {}

    def command(self, module_args: Sequence[str], workers: int) -> list[str]:
        return [*self.launcher, "-n", str(workers), sys.executable, "-m", "mpi4py", *module_args]

    def program(self, module: str, ranks: int) -> list[str]:
        """A module run as a program on ``ranks`` ranks (no mpi4py wrapper: its own output).
        MPICH's launcher labels each line with the rank that printed it (``labels_lines``)."""
        label = ["-prepend-rank"] if self.labels_lines else []
        return [*self.launcher, *label, "-n", str(ranks), sys.executable, "-m", module]

    @property
    def labels_lines(self) -> bool:
        """Whether a program's output comes labelled ``[rank] line`` by the launcher (MPICH's
        hydra; other launchers' labels are not parsed: the lines' text says the rank)."""
        return bool(self.launcher) and self.kind == "mpich"

    def result_ranks(self, workers: int) -> int:
        return workers

    def observer(self, child: Child, jobdir: Path, workers: int) -> observe.Observer:
        if self.hosts.several:
            return RemoteRankObserver(child, jobdir, workers, self.hosts)
        return RankObserver(child, jobdir, workers)

    def leftovers(self, child: Child, seen: observe.Seen) -> list[str]:
        if not self.hosts.several:
            return []
        return describe_left(remote_leftovers(self.hosts, child, seen))

    def dump_stacks(self, child: Child) -> None:
        if self.hosts.several:
            self.hosts.signal_stacks(child.outdir, TAG_VAR, child.tag)

    def sweep(self, child: Child) -> None:
        if self.hosts.several:  # the run's tagged processes, then what detached from them
            self.hosts.probe_all("kill", TAG_VAR, child.tag)
            self.hosts.end(remote_leftovers(self.hosts, child, observe.Seen()))
            self.hosts.probe_all("shm", str(child.began))  # what the killed ranks left there

    def stop(self) -> None:
        if self.hosts.several:  # anything of this session's runs, on every host
            self.hosts.probe_all("kill", OWNER_VAR, str(os.getpid()))
