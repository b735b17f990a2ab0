"""multiprocessing: a ``Pool`` of P workers, forked by the runner for each case."""

from __future__ import annotations

import time
from pathlib import Path

import psutil

from parakit.backends.base import Backend
from parakit.controller.processes import observe
from parakit.controller.processes.cputime import times
from parakit.controller.processes.launch import Child


class Pool(Backend):
    name = "pool"

    def observer(self, child: Child, jobdir: Path, workers: int) -> observe.Observer:
        return PoolObserver(child, jobdir)


class PoolObserver(observe.Observer):
    """The pool's workers: the children of the calling process when the runner marks
    ``pool-{i}`` (the pool is open, the graded code has not run yet: the runner waits for
    ``seen-{i}``). Their CPU time is looked at every ``LOOK_EVERY`` seconds during the case and
    when the runner marks ``alive-{i}`` (the call has returned, the pool still lives) and waits
    for ``ack-{i}``. They were started for this case, so all their CPU time is this case's;
    each keeps the last figure seen, also if the graded code ended the pool early. Other
    children of the caller are processes of the graded code's own: their CPU time is counted
    too, never as a worker's. A case in which no worker was seen has no evidence of parallel
    work (``cpurule.CpuTally`` fails it, closed)."""

    def __init__(self, child: Child, jobdir: Path):
        super().__init__(child, jobdir)
        self._acked, self._pooled, self._looked = -1, -1, 0.0
        self._earlier: set[int] = set()  # processes of finished cases (a pool still ending)

    def poll(self, case: int) -> None:
        super().poll(case)
        if self._pooled < case and (self.jobdir / f"pool-{case}").exists():
            self._look(workers=True)
            observe.answer(self.jobdir / f"seen-{case}")
            self._pooled = case
        elif self._acked < case and (self.jobdir / f"alive-{case}").exists():
            self._look()
            observe.answer(self.jobdir / f"ack-{case}")
            self._acked = case
        elif time.monotonic() - self._looked > LOOK_EVERY:
            self._look(ended=self.jobdir / f"result-{case}-0.json")

    def _look(self, workers: bool = False, ended: Path | None = None) -> None:
        """CPU seconds of the caller's children; ``workers``: they are the pool's workers.

        ``ended``: the case's result file. Once it is there the runner may already have forked
        the next case's pool, so a child not seen before belongs to no process of this case.
        The children are listed *before* the file is looked for: a child listed while the
        result was not yet written was started during this case.
        """
        self._looked = time.monotonic()
        caller = self.caller()
        if caller is None:
            return
        own = self.child.own_processes()
        try:
            children = caller.children()
        except psutil.Error:
            return
        known = set(self.current.workers) | set(self.current.other_cpu)
        if ended is not None and ended.exists():
            children = [c for c in children if observe.here(c.pid) in known]
        for proc in children:
            where = observe.here(proc.pid)
            if proc.pid in own or proc.pid in self._earlier:
                continue
            found = times(proc)
            if found is None:
                continue
            if workers:
                self.current.workers[where] = f"pool worker (pid {proc.pid})"
            if where in self.current.workers:
                self.current.cpu[where], self.current.waited[where] = found
            else:
                self.current.other_cpu[where] = found.cpu

    def finish_case(self) -> observe.Seen:
        self._earlier.update(pid for _, pid in [*self.current.workers,
                                                *self.current.other_cpu])
        return super().finish_case()


LOOK_EVERY = 0.05  # seconds between looks for the pool's workers (a look reads /proc)
