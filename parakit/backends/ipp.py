"""ipyparallel: the graded function gets a view on P engines of the session's cluster
(``ipp_cluster.SessionCluster``), direct or load-balanced."""

from __future__ import annotations

import os
from pathlib import Path

from parakit.backends.base import Backend
from parakit.backends.ipp_cluster import SessionCluster
from parakit.controller.processes import observe
from parakit.controller.processes.cputime import Times
from parakit.controller.processes.hosts import describe_left, not_the_graders
from parakit.controller.processes.launch import Child
from parakit.controller.processes.proctree import OWNER_VAR


class Ipp(Backend):
    """Runs on the session's cluster: the runner connects as a client and hands the graded
    function a view (direct, or load-balanced with ``view="balanced"``)."""

    name = "ipp"

    def __init__(self, cluster: SessionCluster):
        self.cluster = cluster

    def start(self) -> dict:
        # The runner clears the engines' namespaces (our own cluster only), not the grading
        # process: it holds no client (see the module's doc).
        return {"connection_file": self.cluster.connection_file(),
                "clear_engines": self.cluster.owned}

    @property
    def engines(self) -> tuple[int, ...]:
        return tuple(pid for host, pid in self.cluster.engines if host == observe.HOST)

    def observer(self, child: Child, jobdir: Path, workers: int) -> observe.Observer:
        return EngineObserver(child, jobdir, self.cluster)

    def leftovers(self, child: Child, seen: observe.Seen) -> list[str]:
        return describe_left(self._left(child)) if self.cluster.hosts.several else []

    def sweep(self, child: Child) -> None:
        if self.cluster.hosts.several:
            self.cluster.hosts.end(self._left(child))

    def _left(self, child: Child) -> dict[str, list[dict]]:
        """What the run left on the engines' hosts: processes started since it began, of this
        session (the engines pass its tag on) or detached, other than the engines."""
        found = not_the_graders(self.cluster.hosts.probe_all("new", str(child.created),
                                                             OWNER_VAR, str(os.getpid())))
        engines = set(self.cluster.engines)
        left = {host: [p for p in procs if (host, p["pid"]) not in engines]
                for host, procs in found.items()}
        return {host: procs for host, procs in left.items() if procs}

    def dump_stacks(self, child: Child) -> None:
        if self.cluster.hosts.several:
            self.cluster.hosts.signal_stacks(child.outdir, OWNER_VAR, str(os.getpid()))

    def failed(self) -> None:
        self.cluster.needs_restart = True  # an engine may still be busy with the stuck task

    def stop(self) -> None:
        self.cluster.stop()


class EngineObserver(observe.Observer):
    """The session's engines and the CPU time each spent between ``ready-{i}`` and the result,
    here from the process table, on other hosts through the remote shell (a user's cluster:
    no engines known, no credit)."""

    def __init__(self, child: Child, jobdir: Path, cluster: SessionCluster):
        super().__init__(child, jobdir)
        self.cluster = cluster
        self.engines = {proc: f"engine ({observe.describe(proc)})" for proc in cluster.engines}
        self._start: dict[observe.Proc, Times] = {}

    def case_started(self) -> None:
        self._start = self._engine_cpu()
        observe.answer(self.jobdir / f"go-{self._ready}")  # the runner waits to call

    def _engine_cpu(self) -> dict[observe.Proc, Times]:
        return self.cluster.hosts.times(set(self.engines))

    def finish_case(self) -> observe.Seen:
        self.current.workers = dict(self.engines)
        now = self._engine_cpu()
        spent = {proc: now[proc] - start for proc, start in self._start.items() if proc in now}
        self.current.cpu = {proc: t.cpu for proc, t in spent.items()}
        self.current.waited = {proc: t.waited for proc, t in spent.items()}
        self._start = {}
        return super().finish_case()
