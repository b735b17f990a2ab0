"""multiprocessing: a ``Pool`` of P workers, forked by the runner for each case."""

from __future__ import annotations

from pathlib import Path

from parakit.backends.base import Backend
from parakit.controller import observe
from parakit.controller.launch import Child


class Pool(Backend):
    name = "pool"

    def observer(self, child: Child, jobdir: Path, workers: int) -> observe.Observer:
        return PoolObserver(child, jobdir)


class PoolObserver(observe.Observer):
    """The pool's workers: the children of the calling process, seen when the runner marks
    ``alive-{i}`` (the call has returned, the pool still lives) and waits for ``ack-{i}``.
    They were started for this case, so all their CPU time is this case's."""

    def __init__(self, child: Child, jobdir: Path):
        super().__init__(child, jobdir)
        self._acked = -1

    def poll(self, case: int) -> None:
        super().poll(case)
        if self._acked < case and (self.jobdir / f"alive-{case}").exists():
            self._workers_alive()
            observe.answer(self.jobdir / f"ack-{case}")
            self._acked = case

    def _workers_alive(self) -> None:
        caller = self.caller()
        if caller is None:
            return
        own = self.child.own_processes()
        for proc in caller.children():
            if proc.pid in own:
                continue
            cpu = observe.cpu_seconds(proc)
            if cpu is not None:
                self.current.workers[observe.here(proc.pid)] = f"pool worker (pid {proc.pid})"
                self.current.cpu[observe.here(proc.pid)] = cpu
        self.set_caller_cpu(caller)
