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

**When time cannot decide.** Waits and finish times are the schedule's only where every
computing worker had a CPU while it computed. Where the operating system kept them from one
(more workers than CPUs, a CFS quota, other load), a worker waits for a master that is not
running and finishes late because it was not scheduled: the clock then shows the machine, not
the code. The grader measures this from outside: each worker's CPU time (the operating system's
count, ``cputime``), and the time the scheduler kept it runnable but off a CPU (its run-queue
delay: other processes, a CFS quota, an affinity mask). A run whose workers were kept waiting
more than ``CROWDED_MAX`` of the time they wanted a CPU (or whose waiting is unknown: a user's
own cluster) is judged by how the rows were split and handed out, which no scheduler changes:

3'. the **work** was even (as in 3.), or the rows were **handed out on demand**: in small
    pieces (none more than ``PIECE_MAX`` of a worker's fair share of the work), not in the
    same way in every run, and no worker stopped while the others still began a sizeable
    share of the work (``LATE_MAX``: a worker idle while work was left). Static blocks,
    blocks with a barrier, one block per worker handed out by a master, and blocks moved at
    random per run all fail this; self-scheduling, a load-balanced view and ``imap`` pass.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from parakit import timeline
from parakit.controller.processes.observe import Seen
from parakit.controller.verdicts.evidence import Evidence
from problems.mandelbrot import Spec, row_work

WAIT_MAX = 0.35  # longest wait of a worker while others compute, as a share of the span
WORK_MAX = 1.30  # R_work of an even static split (row blocks at P=4: 1.57)
FINISH_MAX = 1.10  # R_finish of a schedule that keeps every worker computing to the end
REPEATS = 5  # runs judged together: at least half must balance
CROWDED_MAX = 0.2  # share of the time the workers wanted a CPU and did not get one, beyond
#                   which the clock shows the machine (rule 3')
PIECE_MAX = 0.75  # largest piece of work handed out at once, as a share of a worker's fair share
LATE_MAX = 0.25  # share of the work others may begin after a worker's last piece ended


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
    pieces: list[tuple[int, float, float, float]] = field(default_factory=list)
    #        one per compute_rows call: (pid, start, end, work)
    cpu: float = 0.0  # the computing workers' CPU seconds, measured from outside
    waited: float | None = None  # ... and seconds runnable but off a CPU (None: unknown)

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
    def crowded(self) -> float:
        """The share of the time the computing workers wanted a CPU that they spent waiting
        for one (1.0: unknown)."""
        if self.waited is None or self.cpu + self.waited <= 0:
            return 1.0
        return self.waited / (self.cpu + self.waited)

    @property
    def timed(self) -> bool:
        """Whether the clock shows the schedule: the workers had a CPU when they wanted one."""
        return self.crowded <= CROWDED_MAX

    @property
    def largest_piece(self) -> float:
        """The largest piece of work handed out at once, as a share of a worker's fair
        share (the total work over P)."""
        total = sum(self.work.values())
        if not self.pieces or total <= 0:
            return float("inf")
        return max(w for *_, w in self.pieces) / (total / self.expected)

    @property
    def late(self) -> float:
        """The largest share of the work that other workers began after one worker's last
        piece had ended (a worker left idle while work was handed out)."""
        total = sum(self.work.values())
        if not self.pieces or total <= 0:
            return 1.0
        last_end = {pid: max(end for p, _, end, _ in self.pieces if p == pid)
                    for pid in self.work}
        return max(sum(w for p, start, _, w in self.pieces if p != pid and start > end)
                   for pid, end in last_end.items()) / total

    def handed_out(self) -> bool:
        """Rule 3': small pieces, no worker left idle while others began many more."""
        return self.largest_piece <= PIECE_MAX and self.late <= LATE_MAX

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
        """Rules 1-3 where the clock shows the schedule, else 1 and 3' (``finish_counts``: the
        split was not the same in every run)."""
        if not self.enough_workers:
            return False
        if not self.timed:
            return self.r_work <= WORK_MAX or (finish_counts and self.handed_out())
        return self.max_wait <= WAIT_MAX and (
            self.r_work <= WORK_MAX or (finish_counts and self.r_finish <= FINISH_MAX))


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


def measure(evidence: Evidence, spec: Spec, workers: int, seen: Seen | None = None) -> Measures:
    """The measures of one run from its valid records (the calling process's are left out:
    the trace test fails them); ``seen``: what the grader saw of the run from outside (each
    worker's CPU time and waiting)."""
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
    m.pieces = [(pid, r.start, r.end, float(work_of_row[r.task].sum()))
                for pid, recs in by_pid.items() for r in recs]
    if seen and all(pid in seen.cpu and pid in seen.waited for pid in by_pid):
        m.cpu = sum(seen.cpu[pid] for pid in by_pid)
        m.waited = sum(seen.waited[pid] for pid in by_pid)
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
