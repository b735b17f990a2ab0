"""The hosts MPI ranks and ipyparallel engines run on: this machine, or a list of hosts that
the controller reaches with a remote shell (``ssh`` by default).

Given with ``--hosts node1:2,node2:2`` or ``--hostfile FILE`` (MPICH's format: ``host[:slots]``
per line, ``#`` comments), they place MPI ranks (``mpiexec -hosts`` / ``-f``, launched over the
remote shell) and the session's ipyparallel engines (ipyparallel's SSH engine launcher).
What the controller observes of a remote host (its ranks, engines, CPU times) and how it
cleans up there goes through the same remote shell, by ``parakit.controller.processes.probe``; every
host must see the checkout, the Python and the work folder at the same paths.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from parakit.controller.processes.cputime import Times, times_of
from parakit.controller.processes.probe_session import ProbeSession
from parakit.controller.processes.proctree import HOST

PROBE_TIMEOUT = 30.0  # seconds a probe of one host may take
PROBE = [sys.executable, "-m", "parakit.controller.processes.probe", "serve"]


class HostsError(ValueError):
    """A host list or hostfile that cannot be used."""


def _parse_entries(entries: list[str], where: str) -> tuple[tuple[str, int], ...]:
    slots = []
    for entry in entries:
        name, _, count = entry.strip().partition(":")
        if not name or any(c.isspace() for c in name):
            raise HostsError(f"{where}: {entry!r} is not HOST or HOST:SLOTS")
        try:
            n = int(count) if count else 1
        except ValueError:
            raise HostsError(f"{where}: {entry!r}: SLOTS must be a whole number") from None
        if n < 1:
            raise HostsError(f"{where}: {entry!r}: SLOTS must be 1 or more")
        slots.append((name, n))
    if not slots:
        raise HostsError(f"{where}: no host named")
    return tuple(slots)


def _expand_counts(value: str, n: int) -> list[int]:
    """Slurm's per-node counts (``2(x3),1``) as a list of ``n``; one each if not given."""
    counts: list[int] = []
    for part in filter(None, value.split(",")):
        count, _, times = part.partition("(x")
        counts += [int(count)] * int(times.rstrip(")") or 1)
    return counts if len(counts) == n else [1] * n


def srun_shell() -> str:
    """``parakit-srun-shell``, the kit's console script beside this Python."""
    return str(Path(sys.executable).with_name("parakit-srun-shell"))


@dataclass(frozen=True)
class Hosts:
    """Where ranks and engines go; empty ``slots``: this machine only."""

    slots: tuple[tuple[str, int], ...] = ()  # (host, slots), in order
    hostfile: str = ""  # the file they came from (mpiexec reads it itself)
    remote_shell: tuple[str, ...] = ("ssh",)
    remote_copy: tuple[str, ...] = ("scp",)  # ipyparallel fetches engine logs with it
    slurm_job: str = ""  # the allocation's job (--hosts slurm): engines start as a step of it
    _self_names: dict[str, str] = field(default_factory=dict, compare=False, repr=False)
    _sessions: dict[str, ProbeSession] = field(default_factory=dict, compare=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)

    @classmethod
    def parse(cls, hosts: str = "", hostfile: str = "", remote_shell: str = "",
              remote_copy: str = "") -> Hosts:
        """From the options; HostsError names what is wrong."""
        shell = tuple(shlex.split(remote_shell)) or ("ssh",)
        copy = tuple(shlex.split(remote_copy)) or ("scp",)
        if hosts and hostfile:
            raise HostsError("give --hosts or --hostfile, not both")
        if hosts == "slurm":
            return cls.of_allocation(dict(os.environ), shell if shell != ("ssh",) else ())
        if hosts:
            return cls(_parse_entries(hosts.split(","), f"--hosts {hosts}"), "", shell, copy)
        if hostfile:
            path = Path(hostfile).expanduser()
            try:
                lines = path.read_text().splitlines()
            except OSError as exc:
                raise HostsError(f"--hostfile {hostfile}: {exc.strerror}") from None
            entries = [ln.split("#", 1)[0].strip() for ln in lines]
            return cls(_parse_entries([e for e in entries if e], f"--hostfile {hostfile}"),
                       str(path.resolve()), shell, copy)
        return cls((), "", shell, copy)

    @classmethod
    def of_allocation(cls, environ: dict[str, str], shell: tuple[str, ...] = ()) -> Hosts:
        """The nodes of the Slurm allocation this runs in (``--hosts slurm``), as many slots
        on each as it has tasks there (``SLURM_TASKS_PER_NODE``: ``sbatch --ntasks-per-node``),
        reached with ``parakit-srun-shell`` (a step of the allocation) unless ``shell``."""
        job, nodes = environ.get("SLURM_JOB_ID", ""), environ.get("SLURM_JOB_NODELIST", "")
        if not job or not nodes:
            raise HostsError("--hosts slurm: not inside a Slurm allocation (no SLURM_JOB_ID); "
                             "run it in salloc or sbatch, or name the hosts")
        try:
            names = subprocess.run(["scontrol", "show", "hostnames", nodes], capture_output=True,
                                   text=True, check=True, timeout=30).stdout.split()
        except (OSError, subprocess.SubprocessError) as exc:
            raise HostsError(f"--hosts slurm: cannot list the nodes {nodes} with scontrol: "
                             f"{exc}") from None
        tasks = _expand_counts(environ.get("SLURM_TASKS_PER_NODE", ""), len(names))
        return cls(tuple(zip(names, tasks, strict=True)), "",
                   shell or (srun_shell(),), (srun_shell(), "--copy"), job)

    @property
    def several(self) -> bool:
        """Whether runs leave this machine."""
        return bool(self.slots)

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.slots]

    def placement(self, ranks: int) -> list[str]:
        """The host of each of ``ranks`` ranks as mpiexec places them: the hosts in order, each
        filled up to its slots, then round again (MPICH's default)."""
        order = [name for name, n in self.slots for _ in range(n)] or [HOST]
        return [order[r % len(order)] for r in range(ranks)]

    def counts(self, ranks: int) -> dict[str, int]:
        """How many of ``ranks`` ranks (or engines) each host gets."""
        out: dict[str, int] = {}
        for host in self.placement(ranks):
            out[host] = out.get(host, 0) + 1
        return out

    def describe(self) -> str:
        return ", ".join(f"{name} ({n} slot{'s' * (n > 1)})" for name, n in self.slots) \
            or f"this machine ({HOST})"

    # -- reaching a host --------------------------------------------------------------------
    def command(self, host: str, argv: list[str]) -> list[str]:
        """``argv`` run on ``host`` through the remote shell (``ssh host -- 'argv'``)."""
        return [*self.remote_shell, host, "--", shlex.join(argv)]

    def probe(self, host: str, *args: str) -> tuple[str, object]:
        """Ask ``parakit.controller.processes.probe ARGS`` on ``host``: (its name for itself,
        answer); HostsError if the host cannot be reached. The question goes to the host's probe
        session (:class:`ProbeSession`), started at the first question and started again once
        if it has ended."""
        for attempt in (1, 2):
            with self._lock:
                session = self._sessions.get(host)
                fresh = session is None or not session.alive
                if fresh:
                    session = self._sessions[host] = ProbeSession(self.command(host, PROBE))
            try:
                data = session.ask(args, PROBE_TIMEOUT)
                break
            except (OSError, ValueError) as exc:  # TimeoutError is an OSError
                session.close()
                if fresh or attempt == 2:
                    raise HostsError(f"cannot reach {host} with "
                                     f"{' '.join(self.remote_shell)}: {exc}") from None
        if "error" in data:
            raise HostsError(f"the probe on {host} could not answer {args[0]}: {data['error']}")
        return str(data["host"]), data["answer"]

    def close(self) -> None:
        """End the probe sessions (each probe ends when its input closes)."""
        with self._lock:
            sessions = list(self._sessions.values())
            self._sessions.clear()
        for session in sessions:
            session.close()

    def probe_all(self, *args: str) -> dict[str, object]:
        """The probe on every host at once; of those that answer, their name for themselves
        -> answer."""
        def one(host: str) -> tuple[str, object] | None:
            try:
                return self.probe(host, *args)
            except HostsError:
                return None

        with ThreadPoolExecutor(max_workers=min(16, len(self.names) or 1)) as pool:
            return dict(found for found in pool.map(one, self.names) if found is not None)

    def self_names(self) -> dict[str, str]:
        """Each host's name for itself (as trace records, stack files and probes give it;
        ``--hosts`` may use another, e.g. a short one), by how it is reached. Probed once."""
        if not self._self_names:
            for host in self.names:
                try:
                    self._self_names[host] = self.probe(host, "cpu")[0]
                except HostsError:
                    self._self_names[host] = host
        return dict(self._self_names)

    def times(self, procs: set[tuple[str, int]]) -> dict[tuple[str, int], Times]:
        """CPU time and waiting so far (``cputime.Times``) of processes given as (host, pid),
        those still there: this machine's from its process table, other hosts' by probe."""
        by_host: dict[str, list[int]] = {}
        for host, pid in procs:
            by_host.setdefault(host, []).append(pid)
        out = {}
        for host, pids in by_host.items():
            if host == HOST:
                out.update({(host, pid): found for pid, found in times_of(pids).items()})
                continue
            try:
                _, answer = self.probe(self.address(host), "cpu", *map(str, pids))
            except HostsError:
                continue
            out.update({(host, int(pid)): Times(*map(float, t))
                        for pid, t in dict(answer).items()})
        return out

    def address(self, name: str) -> str:
        """How to reach the host that calls itself ``name``."""
        return next((a for a, n in self.self_names().items() if n == name), name)

    def signal_stacks(self, outdir: Path, var: str, value: str) -> None:
        """Ask the processes on other hosts that registered a stack file in ``outdir``
        (``stack-{host}-{pid}.txt``) and carry ``var=value`` for their stacks (SIGUSR1)."""
        by_host: dict[str, list[str]] = {}
        for path in outdir.glob("stack-*.txt"):
            host, _, pid = path.stem.removeprefix("stack-").rpartition("-")
            if host and host != HOST and pid.isdigit():
                by_host.setdefault(host, []).append(pid)
        for host, pids in by_host.items():
            try:
                self.probe(self.address(host), "signal", "SIGUSR1", var, value, *pids)
            except HostsError:
                pass

    def end(self, left: dict[str, list[dict]]) -> None:
        """End the processes of ``left`` (by host, as the probe described them)."""
        for host, procs in left.items():
            try:
                self.probe(self.address(host), "killpids", *(str(p["pid"]) for p in procs))
            except HostsError:
                pass


def not_the_graders(found: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """``found`` (processes by host, as the probe describes them) less, on this machine when
    it is one of the hosts (the first node of a Slurm allocation), the grader's own process
    tree: its runner and what it started are judged here, from the process table
    (``Job._leftovers``), and are not a remote host's leftovers."""
    if HOST not in found:
        return found
    me = psutil.Process()
    ours = {me.pid, *(p.pid for p in me.children(recursive=True))}
    return {host: [p for p in procs if host != HOST or p["pid"] not in ours]
            for host, procs in found.items()}


def describe_left(left: dict[str, list[dict]]) -> list[str]:
    """"pid command on host" for each process left on the hosts."""
    return [f"{p['pid']} {p['cmdline'][:80]} on {host}" for host, procs in left.items()
            for p in procs]
