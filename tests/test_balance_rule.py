"""The Mandelbrot balance rule (``parakit.controller.verdicts.balance``) on synthetic traces.

Each run is a run at P=4 on the grading spec: per worker, a list of (rows, start, end). The
rule must pass an even static split and a dynamic schedule whose work the OS made uneven but
whose workers all computed until the end, and fail row blocks and waiting, whatever the timing.
Where the workers waited for CPUs (``crowded``), the clock proves nothing either way: the same
schedules must get the same verdicts from their split alone.
"""

from __future__ import annotations

import numpy as np

from parakit.controller.processes.observe import Seen
from parakit.controller.verdicts import balance
from parakit.controller.verdicts.evidence import Evidence
from problems.mandelbrot import GRADING, block_rows, row_work
from problems.trace import Record

KERNEL = "mandelbrot.compute_rows"


def _run(per_worker: list[list[tuple[list[int], float, float]]],
         crowded: float = 0.0) -> balance.Measures:
    """The measures of one run; ``crowded``: the share of the time the workers wanted a CPU
    that they waited for one (0: each had a CPU of its own)."""
    valid = [Record(KERNEL, rows, 0.0, 100 + w, "host", start, end, end - start)
             for w, tasks in enumerate(per_worker) for rows, start, end in tasks]
    procs = [("host", 100 + w) for w in range(4)]
    ev = Evidence(valid=valid, caller=("host", 1), workers={p: f"w{p[1]}" for p in procs})
    cpu = {p: 1.0 for p in procs}
    seen = Seen(cpu=cpu, waited={p: crowded / (1 - crowded) for p in procs})
    return balance.measure(ev, GRADING, 4, seen)


def _blocks(ends: list[float], crowded: float = 0.0) -> balance.Measures:
    """Row blocks, worker i finishing at ends[i]."""
    return _run([[(rows, 0.0, end)] for rows, end in zip(block_rows(GRADING.h, 4), ends,
                                                           strict=True)], crowded)


def _dynamic(shares: list[int], skew: float = 0.0, seed: int = 0,
             crowded: float = 0.0) -> balance.Measures:
    """Rows dealt to workers in proportion to ``shares`` (e.g. the CPU each got), all
    finishing at 1.0 (+ skew for the last worker); each ``seed`` starts the dealing elsewhere,
    so runs split the rows differently, as a dynamic schedule's runs do."""
    owners = np.repeat(np.arange(len(shares)), shares)
    order = np.roll(np.resize(owners, GRADING.h), seed)
    per_worker = []
    for w in range(len(shares)):
        rows = [int(k) for k in np.flatnonzero(order == w)]
        step = 1.0 / max(1, len(rows))
        per_worker.append([([k], i * step, (i + 1) * step + (skew if w == 3 else 0.0))
                           for i, k in enumerate(rows)])
    return _run(per_worker, crowded)


def _cyclic(ends: list[float], crowded: float = 0.0) -> balance.Measures:
    """Static cyclic rows (row k on worker k mod 4), one call each, worker i ending at ends[i]."""
    return _run([[(list(range(w, GRADING.h, 4)), 0.0, ends[w])] for w in range(4)], crowded)


def test_an_even_dynamic_schedule_balances():
    m = _dynamic([1, 1, 1, 1])
    assert m.r_work < 1.1 and m.max_wait < 0.05 and balance.balanced([m])


def test_a_dynamic_schedule_on_unfair_cores_balances_by_its_finish_times():
    # one worker had a core to itself, three shared the other: work 3 : 1 : 1 : 1
    runs = [_dynamic([3, 1, 1, 1], seed=i) for i in range(5)]
    assert all(m.r_work > balance.WORK_MAX and m.r_finish <= balance.FINISH_MAX for m in runs)
    assert balance.balanced(runs)


def test_cyclic_rows_balance_by_their_work_even_when_finish_times_spread():
    m = _cyclic([0.6, 1.0, 0.8, 0.7])  # the OS shared the cores unevenly
    assert m.r_work < 1.1 and m.r_finish > balance.FINISH_MAX
    assert balance.balanced([m] * 5)


def test_row_blocks_fail_even_when_one_run_finishes_together():
    lucky = _blocks([1.0, 1.0, 1.0, 1.0])  # the OS happened to even out the finish times
    usual = [_blocks([0.4, 1.0, 1.0, 0.4]) for _ in range(4)]
    assert lucky.r_finish == 1.0 and lucky.balanced
    assert not balance.balanced([lucky, *usual])


def test_a_fixed_split_is_judged_by_its_work_even_when_every_run_finishes_together():
    """A master handing out one row block per worker: the same rows went to the same workers
    in every run, so the finish times lining up was the OS's doing (seen in 3 of 5 runs on a
    busy machine, docs/mandelbrot.md)."""
    runs = [_blocks([1.0, 1.0, 1.0, 1.0]) for _ in range(5)]
    assert all(m.balanced for m in runs) and balance.fixed_split(runs)
    assert not balance.balanced(runs)
    dynamic = [_dynamic([3, 1, 1, 1], seed=i) for i in range(5)]  # the same finish, dealt anew
    assert not balance.fixed_split(dynamic) and balance.balanced(dynamic)


def _barrier(crowded: float = 0.0) -> balance.Measures:
    """Static blocks, a barrier before each worker's last row: finish times line up."""
    blocks = block_rows(GRADING.h, 4)
    work = row_work(GRADING)
    heavy = max(float(work[b].sum()) for b in blocks)
    per_worker = []
    for rows in blocks:
        done = float(work[rows[:-1]].sum()) / heavy  # computes at one speed, then waits
        per_worker.append([(rows[:-1], 0.0, done), (rows[-1:], 1.0, 1.02)])
    return _run(per_worker, crowded)


def test_waiting_for_the_last_rows_is_not_balance():
    m = _barrier()
    assert m.timed and m.r_finish < 1.01 and m.max_wait > 0.4
    assert not balance.balanced([m] * 5)


def test_one_process_may_only_schedule_but_not_two():
    dealt = _dynamic([1, 1, 1, 0])  # a master that computed nothing
    assert dealt.computing == 3 and balance.balanced([dealt])
    two_idle = _dynamic([1, 1, 0, 0])
    assert two_idle.computing == 2 and not balance.balanced([two_idle])


def test_finish_times_count_only_if_most_runs_show_them():
    late = [_dynamic([3, 1, 1, 1], skew=0.5, seed=i) for i in range(3)]
    on_time = [_dynamic([3, 1, 1, 1], seed=10 + i) for i in range(2)]
    assert not balance.balanced(late + on_time)
    assert balance.balanced(late[:2] + on_time + on_time)


# -- where the workers waited for CPUs, the split decides ------------------------------------

CROWDED = 0.6  # four workers on one CPU, roughly: each waits most of the time it could run


def test_crowded_runs_are_judged_by_their_split_with_the_same_verdicts():
    """Every schedule above, on crowded CPUs: balanced ones pass, static ones fail, even where
    their clock says the opposite (a reference kept waiting for its master; blocks that
    happened to finish together)."""
    assert not _dynamic([1, 1, 1, 1], crowded=CROWDED).timed
    assert balance.balanced([_dynamic([3, 1, 1, 1], skew=2.0, seed=i, crowded=CROWDED)
                             for i in range(5)])  # the clock says late: not the code's doing
    assert balance.balanced([_cyclic([0.2, 1.0, 0.5, 0.7], crowded=CROWDED)] * 5)
    assert not balance.balanced([_blocks([1.0] * 4, crowded=CROWDED) for _ in range(5)])
    assert not balance.balanced([_barrier(crowded=CROWDED)] * 5)


def _pieces(cuts: list[int], rows_per_piece: int, crowded: float) -> balance.Measures:
    """Contiguous blocks cut at ``cuts`` (moved per run), each computed in small pieces, all
    workers computing at once: static, whatever the size of its pieces."""
    per_worker = []
    for rows in np.split(np.arange(GRADING.h), cuts):
        pieces = [rows[i:i + rows_per_piece].tolist() for i in range(0, len(rows),
                                                                     rows_per_piece)]
        work = row_work(GRADING)
        t, tasks = 0.0, []
        for piece in pieces:
            tasks.append((piece, t, t + float(work[piece].sum()) / 1e5))
            t = tasks[-1][2]
        per_worker.append(tasks)
    return _run(per_worker, crowded)


def test_blocks_moved_per_run_fail_crowded_even_in_small_pieces():
    """A split fixed before any row ran, moved at random per run so that no two runs split
    alike, computed in pieces as small as a dynamic schedule's: its light workers stop while
    the heavy ones still start half their rows."""
    runs = [_pieces([25 + d, 50 - d, 75 + d], 2, CROWDED) for d in range(-2, 3)]
    assert not balance.fixed_split(runs)
    assert all(m.largest_piece <= balance.PIECE_MAX and m.late > balance.LATE_MAX
               for m in runs), [(m.largest_piece, m.late) for m in runs]
    assert not balance.balanced(runs)


def test_one_big_piece_per_worker_is_no_hand_out():
    """A master handing out one block per worker in a new order each run: one piece each."""
    runs = [_pieces([25 + d, 50, 75], 100, CROWDED) for d in range(5)]
    assert all(m.largest_piece > balance.PIECE_MAX for m in runs)
    assert not balance.balanced(runs)


def test_waiting_is_unknown_without_the_workers_cpu_and_then_the_split_decides():
    ev = Evidence(valid=[Record(KERNEL, [k], 0.0, 100 + k % 4, "host", 0.0, 1.0, 1.0)
                         for k in range(GRADING.h)], caller=("host", 1))
    m = balance.measure(ev, GRADING, 4)  # a user's own cluster: nothing seen from outside
    assert m.waited is None and not m.timed
