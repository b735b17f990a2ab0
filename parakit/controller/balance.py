"""The Mandelbrot balance rule: what one run measured, and the verdict over repeated runs.

Balanced is an outcome, whatever the method (cyclic rows, master-worker with or without a
computing master, self-scheduling, a load-balanced view, ``imap``). A run balances when

1. at most one of the P processes computed nothing (a master that only schedules);
2. **no worker waited while others computed**: no stretch before a worker's first row or
   between two of its rows in which another worker was computing lasts more than
   ``WAIT_MAX`` of the span (first row's start to last row's end). Waiting is time *outside*
   ``compute_rows``: a barrier, a sleep, a spin or a slow hand-out;
3. and either the **work** was even (``R_work = max/mean`` of each worker's work, recomputed
   from the serial iteration counts of its rows, at most ``WORK_MAX``: a static split that
   balances, such as cyclic rows) or every worker **kept computing until the end**
   (``R_finish = max/mean`` of the workers' finish times at most ``FINISH_MAX``: a dynamic
   schedule, whose work follows the CPU each worker got where processes outnumber cores).
   Finish times count only for a schedule that is dynamic in outcome: when every run split
   the rows among the workers in exactly the same way, the split was fixed in advance, and
   its finish times lining up was the operating system's doing (a master handing out one
   block per worker, seen passing 3 of 5 runs on a busy machine): its work decides.

A static split with a barrier before the last rows lines up its finish times, but its light
workers wait half the run for the heavy one (2. fails) and its work stays uneven. Row blocks
fail 3. A worker that finishes its fair share early and then waits (cyclic rows, on cores the
OS shares unevenly) is not waiting *before* work: 2. looks only before and between rows.
The thresholds come from measured distributions (docs/mandelbrot.md,
``benchmarks/balance_distributions.py``); several runs are judged together (``balanced``).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from parakit import timeline
from parakit.controller.evidence import Evidence
from problems.mandelbrot import Spec, row_work

WAIT_MAX = 0.35  # longest wait of a worker while others compute, as a share of the span
WORK_MAX = 1.30  # R_work of an even static split (row blocks at P=4: 1.57)
FINISH_MAX = 1.10  # R_finish of a schedule that keeps every worker computing to the end
REPEATS = 5  # runs judged together: at least half must balance


@dataclass
class Measures:
    """One run: per computing worker (pid) its work, busy seconds, finish and longest wait."""

    expected: int  # P
    work: dict[int, float] = field(default_factory=dict)
    busy: dict[int, float] = field(default_factory=dict)  # seconds inside compute_rows
    finish: dict[int, float] = field(default_factory=dict)  # last end, from the first start
    wait: dict[int, float] = field(default_factory=dict)  # longest wait, share of the span
    span: float = 0.0
    split: frozenset = frozenset()  # the rows each worker computed, as a set of row sets

    @property
    def computing(self) -> int:
        return len(self.work)

    @staticmethod
    def _ratio(values) -> float:
        values = list(values)
        if not values or max(values) <= 0:
            return float("inf")
        return max(values) / statistics.fmean(values)

    @property
    def r_work(self) -> float:
        return self._ratio(self.work.values())

    @property
    def r_busy(self) -> float:
        return self._ratio(self.busy.values())

    @property
    def r_finish(self) -> float:
        return self._ratio(self.finish.values())

    @property
    def max_wait(self) -> float:
        return max(self.wait.values(), default=1.0)

    @property
    def enough_workers(self) -> bool:
        return self.computing >= max(1, self.expected - 1)

    @property
    def balanced(self) -> bool:
        """Whether this run balances, its finish times counting (a dynamic schedule)."""
        return self.balances(finish_counts=True)

    def balances(self, finish_counts: bool) -> bool:
        return (self.enough_workers and self.max_wait <= WAIT_MAX
                and (self.r_work <= WORK_MAX or (finish_counts and self.r_finish <= FINISH_MAX)))


def _merge(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The union of intervals, as sorted disjoint intervals."""
    merged: list[list[float]] = []
    for a, b in sorted(intervals):
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return [(a, b) for a, b in merged]


def _overlap(a: float, b: float, busy: list[tuple[float, float]]) -> float:
    """Length of [a, b] covered by the disjoint intervals ``busy``."""
    return sum(max(0.0, min(b, y) - max(a, x)) for x, y in busy)


def measure(evidence: Evidence, spec: Spec, workers: int) -> Measures:
    """The measures of one run from its valid records (the calling process's are left out:
    the trace test fails them)."""
    work_of_row = row_work(spec)
    by_pid = {p: recs for p, recs in evidence.by_process().items() if p != evidence.caller}
    m = Measures(expected=workers)
    if not by_pid:
        return m
    busy = {pid: _merge([(r.start, r.end) for r in recs]) for pid, recs in by_pid.items()}
    t0 = min(iv[0][0] for iv in busy.values())
    m.span = max(max(iv[-1][1] for iv in busy.values()) - t0, 1e-9)
    m.split = frozenset(frozenset(int(row) for r in recs for row in np.atleast_1d(r.task))
                        for recs in by_pid.values())
    for pid, mine in busy.items():
        m.work[pid] = float(sum(work_of_row[r.task].sum() for r in by_pid[pid]))
        m.busy[pid] = sum(b - a for a, b in mine)
        m.finish[pid] = mine[-1][1] - t0
        others = _merge([iv for p, ivs in busy.items() if p != pid for iv in ivs])
        gaps = [(t0, mine[0][0])] + [(a[1], b[0]) for a, b in zip(mine[:-1], mine[1:], strict=True)]
        m.wait[pid] = max(_overlap(a, b, others) for a, b in gaps) / m.span
    return m


def fixed_split(runs: list[Measures]) -> bool:
    """Whether several runs all split the rows among the workers in the same way."""
    return len(runs) > 1 and len({m.split for m in runs}) == 1


def balanced(runs: list[Measures]) -> bool:
    """The verdict over repeated runs: at least half of them balance, by their work alone if
    the split was fixed (rule 3)."""
    finish_counts = not fixed_split(runs)
    return sum(m.balances(finish_counts) for m in runs) * 2 >= len(runs)


def describe(m: Measures, evidence: Evidence) -> str:
    """Each computing worker's work, busy time, finish and longest wait, one line each."""
    lines = []
    for pid in sorted(m.work, key=lambda p: -m.work[p]):
        lines.append(f"  {evidence.label(pid)}: work {m.work[pid]:.0f}, busy "
                     f"{m.busy[pid] * 1e3:.0f} ms, finished at {m.finish[pid] * 1e3:.0f} ms, "
                     f"longest wait while others computed {m.wait[pid] * m.span * 1e3:.0f} ms")
    return "\n".join(lines)


def picture(evidence: Evidence, path: Path, backend: str, title: str) -> str:
    """Draw each worker's work over time in ``path`` (``parakit.timeline``); the sentence that
    says where, for a failure message ('' ... if it could not be written, and why)."""
    procs = sorted(evidence.by_process().items(), key=lambda item: evidence.label(item[0]))
    rows = timeline.rows_of((evidence.label(p), [(r.start, r.end) for r in recs])
                            for p, recs in procs)
    try:
        timeline.write(path, [(title, rows, timeline.COLOURS.get(backend, "tab:blue"), False)])
    except (OSError, ValueError) as exc:  # the verdict stands without its picture
        return f"\n(no timeline picture: {exc})"
    return f"\nEach worker's work over time: {path}"
