"""Watching MPI ranks from outside: below mpiexec on this machine, or on every host of a
cluster through the remote shell (``parakit.controller.processes.probe``), by the tag
every process of a run inherits (the launchers pass the environment on to the ranks)."""

from __future__ import annotations

import time
from pathlib import Path

import psutil

from parakit.controller.processes import observe
from parakit.controller.processes.cputime import Times
from parakit.controller.processes.hosts import Hosts, not_the_graders
from parakit.controller.processes.launch import Child
from parakit.controller.processes.proctree import TAG_VAR

PROXIES = ("hydra_pmi_proxy", "orted", "prted")  # the launchers' per-host processes
LOOK_EVERY = 0.3  # seconds between looks at remote hosts while ranks are missing


def _rank(proc: psutil.Process) -> str:
    """The MPI rank a launcher gave a process (its initial environment), or '?'."""
    try:
        env = proc.environ()
    except psutil.Error:
        return "?"
    return env.get("PMI_RANK") or env.get("OMPI_COMM_WORLD_RANK") or "?"


class RankObserver(observe.Observer):
    """The ranks: the processes two levels below mpiexec (its proxies, then theirs), and the
    CPU time each used, over windows without gaps: from its runner's ``loading-{rank}`` mark
    (before the graded module is imported) to the first result, then from result to result.
    A waiting rank sleeps between polls (``runtime.MPICH_IDLE``), so CPU time is work."""

    def __init__(self, child: Child, jobdir: Path, ranks: int, hosts: Hosts | None = None):
        super().__init__(child, jobdir)
        self.nranks, self._scans = ranks, 0
        self.hosts = hosts or Hosts()
        self._cpu_mark: dict[observe.Proc, Times] = {}  # rank -> its times where its window began
        self._counted: set[int] = set()  # ranks whose window has begun

    def poll(self, case: int) -> None:
        # still starting, or not yet exec'd (a launcher that names no rank: 100 looks)
        if len(self.current.ranks) < self.nranks and self._scans < 100 and self.may_look():
            self._scans += 1
            self._see_ranks(self.current)
        if len(self._counted) < self.nranks:
            self._count_loading()

    def may_look(self) -> bool:
        """Whether to look for ranks now (every poll here; other hosts cost a probe)."""
        return True

    def _count_loading(self) -> None:
        """Begin the CPU window of each rank that marked ``loading-{rank}``, and answer
        ``counted-{rank}``: the runner waits for it before it imports the graded module."""
        loading = [r for r in range(self.nranks)
                   if r not in self._counted and (self.jobdir / f"loading-{r}").exists()]
        if not loading:
            return
        if any(r not in self.current.ranks for r in loading):
            self._see_ranks(self.current)  # a rank that marks is there: look for it now
        procs = {self.current.ranks[r]: r for r in loading if r in self.current.ranks}
        self._cpu_mark.update(self.rank_cpu(set(procs)))
        for rank in procs.values():
            self._counted.add(rank)
            observe.answer(self.jobdir / f"counted-{rank}")

    def rank_cpu(self, procs: set[observe.Proc]) -> dict[observe.Proc, Times]:
        """CPU time and waiting so far of these ranks (those still there)."""
        return self.hosts.times(procs)

    def _see_ranks(self, seen: observe.Seen) -> None:
        """A process caught between the proxy's fork and its exec has no rank in its
        environment yet: it is labelled again at the next look."""
        try:
            top = psutil.Process(self.child.popen.pid)
            for proxy in top.children():
                for proc in proxy.children():
                    rank = _rank(proc)
                    seen.workers[observe.here(proc.pid)] = f"rank {rank} (pid {proc.pid})"
                    if rank.isdigit():
                        seen.ranks[int(rank)] = observe.here(proc.pid)
        except psutil.Error:
            pass

    def finish_case(self) -> observe.Seen:
        if len(self.current.ranks) < self.nranks:
            self._see_ranks(self.current)
        now = self.rank_cpu(set(self._cpu_mark))
        # A rank gone before its CPU time was read (the runner waits for the grader after
        # its last result) hides its last window: the case has no CPU evidence (fails closed).
        gone = set(self._cpu_mark) - set(now)
        if not gone:
            spent = {proc: now[proc] - mark for proc, mark in self._cpu_mark.items()}
            self.current.cpu = {proc: t.cpu for proc, t in spent.items()}
            self.current.waited = {proc: t.waited for proc, t in spent.items()}
        self._cpu_mark.update(now)
        return super().finish_case()

    def next_seen(self, seen: observe.Seen) -> observe.Seen:
        return observe.Seen(workers=dict(seen.workers), ranks=dict(seen.ranks))


def _ranks_on(procs: list[dict]) -> dict[int, int]:
    """rank -> pid of the processes the launcher started as ranks: tagged with a rank, and
    not below another process with a rank (a rank's own children inherit its variables)."""
    ranked = {p["pid"]: p for p in procs if str(p.get("rank") or "").isdigit()}
    return {int(p["rank"]): pid for pid, p in ranked.items() if p["ppid"] not in ranked}


class RemoteRankObserver(RankObserver):
    """The ranks on every host of the cluster: found by the run's tag, through the remote
    shell, until all are seen (rank numbers from the launcher's ``PMI_RANK``)."""

    def __init__(self, child: Child, jobdir: Path, ranks: int, hosts: Hosts):
        super().__init__(child, jobdir, ranks, hosts)
        self._last = 0.0

    def may_look(self) -> bool:
        return time.monotonic() - self._last > LOOK_EVERY  # a look costs a probe per host

    def _see_ranks(self, seen: observe.Seen) -> None:
        self._last = time.monotonic()
        for host, procs in self.hosts.probe_all("find", TAG_VAR, self.child.tag).items():
            for rank, pid in _ranks_on(procs).items():
                seen.ranks[rank] = (host, pid)
                seen.workers[(host, pid)] = f"rank {rank} (pid {pid} on {host})"


def _from_graded_code(pid: int, parent: dict[int, int], ranks: set[int]) -> bool:
    """Whether a process is below a rank, or detached (adopted by the host's init)."""
    while pid in parent:
        if pid in ranks or parent[pid] == 1:
            return True
        pid = parent[pid]
    return False


def remote_leftovers(hosts: Hosts, child: Child, seen: observe.Seen) -> dict[str, list[dict]]:
    """Processes of the run still on the hosts after it returned, by host: started since the
    run, with its tag or detached (an orphan), and neither a rank, nor a launcher's proxy,
    nor the remote shell's processes that started a proxy."""
    ranks = set(seen.ranks.values())
    left = {}
    found = not_the_graders(hosts.probe_all("new", str(child.created), TAG_VAR, child.tag))
    for host, procs in found.items():
        parent = {p["pid"]: p["ppid"] for p in procs}
        rank_pids = set(_ranks_on(procs).values()) | {pid for h, pid in ranks if h == host}

        # a launcher's proxy, or the remote shell's wrapper that starts one (it may outlive
        # the proxy by a moment); never something a rank started, whatever its name
        own = {p["pid"] for p in procs if not _from_graded_code(p["pid"], parent, rank_pids)
               and (p["name"].startswith(PROXIES) or any(x in p["cmdline"] for x in PROXIES))}
        for pid in list(own):  # the remote shell's processes above a proxy
            while parent.get(pid) in parent:
                pid = parent[pid]
                own.add(pid)
        own |= rank_pids
        mine = [p for p in procs if p["pid"] not in own]
        if mine:
            left[host] = mine
    return left
