"""The Mandelbrot balance rule (``grader.test_mandelbrot.balanced``) on synthetic traces.

Each run is a pool run at P=4 on the grading spec: per worker, a list of (rows, start, end).
The rule must pass a dynamic schedule whose work the OS made uneven but whose workers all
computed until the end, and fail row blocks whatever their timing.
"""

from __future__ import annotations

import numpy as np

from grader.harness import OK, Outcome
from grader.test_mandelbrot import GRADING, KERNEL, balanced, finish_ratio, worker_work
from problems.mandelbrot import block_rows, imbalance
from problems.trace import Record


def _run(per_worker: list[list[tuple[list[int], float, float]]]) -> Outcome:
    records = [Record(KERNEL, rows, 0.0, 100 + w, "host", start, end, end - start)
               for w, tasks in enumerate(per_worker) for rows, start, end in tasks]
    return Outcome(OK, pids={0: 1}, records=records)


def _blocks(ends: list[float]) -> Outcome:
    """Row blocks, worker i finishing at ends[i]."""
    return _run([[(rows, 0.0, end)] for rows, end in zip(block_rows(GRADING.h, 4), ends,
                                                           strict=True)])


def _dynamic(shares: list[int], skew: float = 0.0) -> Outcome:
    """Rows dealt in order to workers in proportion to ``shares`` (e.g. the CPU each got), all
    finishing at 1.0 (+ skew for the last worker)."""
    owners = np.repeat(np.arange(len(shares)), shares)
    order = np.resize(owners, GRADING.h)
    per_worker = []
    for w in range(len(shares)):
        rows = [int(k) for k in np.flatnonzero(order == w)]
        step = 1.0 / len(rows)
        per_worker.append([([k], i * step, (i + 1) * step + (skew if w == 3 else 0.0))
                           for i, k in enumerate(rows)])
    return _run(per_worker)


def test_an_even_dynamic_schedule_passes_on_work():
    assert balanced([_dynamic([1, 1, 1, 1])], "pool", "balanced", 4)


def test_a_dynamic_schedule_on_unfair_cores_passes_on_finish_times():
    # one worker had a core to itself, three shared the other: work 3 : 1 : 1 : 1
    runs = [_dynamic([3, 1, 1, 1]) for _ in range(5)]
    assert imbalance(worker_work(runs[0], "pool", "balanced", 4)) > 1.3
    assert balanced(runs, "pool", "balanced", 4)


def test_row_blocks_fail_even_when_one_run_finishes_together():
    lucky = _blocks([1.0, 1.0, 1.0, 1.0])  # the OS happened to even out the finish times
    usual = [_blocks([0.4, 1.0, 1.0, 0.4]) for _ in range(4)]
    assert finish_ratio(lucky, "pool", "chunked", 4) == 1.0
    assert not balanced([lucky, *usual], "pool", "balanced", 4)


def test_finish_times_count_only_if_most_runs_show_them():
    late = [_dynamic([3, 1, 1, 1], skew=0.5) for _ in range(3)]
    on_time = [_dynamic([3, 1, 1, 1]) for _ in range(2)]
    assert not balanced(late + on_time, "pool", "balanced", 4)
    assert balanced(late[:2] + on_time + on_time, "pool", "balanced", 4)
