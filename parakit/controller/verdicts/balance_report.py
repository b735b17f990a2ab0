"""Why a Mandelbrot balance test failed, in words a student can act on: the rule of
``parakit.controller.verdicts.balance`` run by run, by the clock where the workers had the CPUs they
wanted, by the split where they did not."""

from __future__ import annotations

from pathlib import Path

from parakit.controller.processes.cputime import available_cpus
from parakit.controller.verdicts import balance
from parakit.controller.verdicts.evidence import Evidence
from problems.mandelbrot import GRADING, chunk_costs, imbalance, row_work


def message(measured: list[tuple[balance.Measures, Evidence]], workers: int,
                       context: str, picture: Path, backend: str) -> str:
    runs = [m for m, _ in measured]
    why = []
    few = [m.computing for m in runs if not m.enough_workers]
    if few:
        why.append(f"in {len(few)} of {len(runs)} runs only {min(few)} of the {workers} "
                   "processes computed rows (at most one may only schedule)")
    fixed = balance.fixed_split(runs)
    timed = [m for m in runs if m.timed and m.enough_workers]
    why += _by_the_clock(timed, len(runs), fixed, workers)
    why += _by_the_split([m for m in runs if not m.timed and m.enough_workers], len(runs), fixed,
                         workers)
    worst, ev = max(measured, key=lambda x: (not x[0].balances(not fixed), x[0].max_wait,
                                             x[0].r_work))
    drawn = balance.picture(ev, picture, backend, f"{backend}, {workers} workers: the least "
                            f"balanced run (R_work {worst.r_work:.2f}, R_finish "
                            f"{worst.r_finish:.2f})")
    return (f"{context}: the load was not balanced in enough runs (at least half of "
            f"{len(runs)} must be): " + "; ".join(why) + ". Work = iterations + 2 per pixel, "
            f"from the serial image. In the run with R_work = {worst.r_work:.2f}, R_finish = "
            f"{worst.r_finish:.2f}:\n" + balance.describe(worst, ev) + drawn)


def _by_the_split(runs: list[balance.Measures], total: int, fixed: bool,
                  workers: int) -> list[str]:
    """Why runs judged by their split (rule 3' of ``controller.balance``) did not balance."""
    bad = [m for m in runs if not m.balances(not fixed)]
    if not bad:
        return []
    crowded = _span([m.crowded * 100 for m in bad], "{:.0f}")
    _, cpus = available_cpus()
    why = [f"in {len(bad)} of {total} runs the CPUs were too crowded for the clock to show "
           f"the schedule (the workers waited for a CPU {crowded}% of the time they wanted "
           f"one; at most {balance.CROWDED_MAX:.0%} to judge by time: {workers} workers on "
           f"{cpus}, and whatever else ran beside them), so how the rows were split decides: "
           "the work "
           f"was uneven (R_work = max/mean of per-worker work {_span([m.r_work for m in bad])},"
           f" at most {balance.WORK_MAX})"]
    if fixed:
        why.append("every run gave each worker the same rows: a split fixed in advance, "
                   "whose work must then be even")
    big = [m.largest_piece for m in bad if m.largest_piece > balance.PIECE_MAX]
    if big and not fixed:
        why.append(f"and the rows were not handed out in small pieces: one piece carried up to"
                   f" {max(big):.0%} of a worker's fair share of the work (at most "
                   f"{balance.PIECE_MAX:.0%}); hand out small batches as workers become free")
    late = [m.late for m in bad if m.late > balance.LATE_MAX]
    if late and not fixed:
        why.append(f"and a worker stopped while the others still began up to {max(late):.0%} "
                   f"of the work (at most {balance.LATE_MAX:.0%}): it was idle while work was "
                   "left, so the rows were not handed out as workers became free")
    return why


def _by_the_clock(runs: list[balance.Measures], total: int, fixed: bool,
                  workers: int) -> list[str]:
    """Why runs judged by their clock (rules 2 and 3 of ``controller.balance``) did not."""
    why = []
    blocks = imbalance(chunk_costs(row_work(GRADING)[:, None], workers))
    waited = [m.max_wait for m in runs if m.max_wait > balance.WAIT_MAX]
    if waited:
        why.append(f"in {len(waited)} of {total} runs a worker waited while others "
                   f"computed, up to {max(waited):.0%} of the run (at most "
                   f"{balance.WAIT_MAX:.0%}): a barrier, a sleep or a slow hand-out before its "
                   "next rows; waiting does not balance the load")
    lucky = [m for m in runs if m.r_work > balance.WORK_MAX and m.r_finish <= balance.FINISH_MAX]
    if fixed and lucky:
        why.append(f"every run gave each worker the same rows, a split fixed in advance, so "
                   f"its work decides and it was uneven (R_work = max/mean of per-worker work "
                   f"{_values(m.r_work for m in lucky)}, at most {balance.WORK_MAX}); the "
                   f"finish times lined up in {len(lucky)} of {total} runs only because "
                   "the light workers computed more slowly (the operating system gave them less "
                   "CPU, or something else ran beside them), not because of the schedule: hand "
                   "out rows as workers become free, or split them evenly")
    uneven = [m for m in runs if m.r_work > balance.WORK_MAX and m.r_finish > balance.FINISH_MAX]
    if uneven:
        why.append(f"in {len(uneven)} of {total} runs both the work (R_work = max/mean of "
                   f"per-worker work {_values(m.r_work for m in uneven)}, at most "
                   f"{balance.WORK_MAX}) and the finish times (R_finish "
                   f"{_values(m.r_finish for m in uneven)}, at most {balance.FINISH_MAX}) were "
                   f"uneven; one contiguous block per worker gives R_work = {blocks:.2f}")
    return why


def _span(values: list[float], form: str = "{:.2f}") -> str:
    """``1.53`` or ``1.53-1.57``: the range of the values."""
    low, high = form.format(min(values)), form.format(max(values))
    return low if low == high else f"{low}-{high}"


def _values(values) -> str:
    return ", ".join(f"{v:.2f}" for v in values)
