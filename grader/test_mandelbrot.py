"""Exercise 3: Mandelbrot, chunked and balanced, on three backends, and the imbalance analysis.

Per backend and scheme (node ids ``test_mandelbrot...[pool-balanced]`` and so on):

- ``test_mandelbrot``: the image equals the serial image exactly, on every spec, at every
  worker count;
- ``test_mandelbrot_trace``: from the work trace, every row ran exactly once, in worker
  processes; a chunked version gave each worker one contiguous ``array_split`` block;
- ``test_mandelbrot_balance`` (balanced only): on ``GRADING`` at P=4, over ``REPEATS`` runs
  (``REPEATS`` more if they do not pass): ``R = max/mean`` of per-worker work, recomputed from
  the serial iteration counts of the rows each worker ran, is at most ``R_MAX`` in one run, or
  ``R_finish`` (max/mean of the workers' finish times) at most ``FINISH_MAX`` in half of them;
  contiguous row blocks give R = 1.57 and R_finish >= 1.18 there, every run.
  docs/mandelbrot.md has the measured distributions behind these numbers.

All specs and repeats of one function and worker count run in one child (``Grading`` caches it).
The analysis functions are plain functions; they run in a child of their own too.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

from grader.checks import _ranges, fail, require_ok
from grader.harness import Outcome
from problems.mandelbrot import (
    GRADING,
    PIXEL_CONSTANT,
    Spec,
    block_rows,
    chunk_costs,
    imbalance,
    row_work,
    serial_image,
)

KERNEL = "mandelbrot.compute_rows"
SCHEMES = [(b, s) for b in ("mpi", "ipp", "pool") for s in ("chunked", "balanced")]
IDS = [f"{b}-{s}" for b, s in SCHEMES]
SPECS = {
    "default": Spec(),  # the course's plotter; also GRADING
    "odd": Spec(x1=-1.6, x2=0.6, y1=-1.1, y2=0.9, w=64, h=37, maxit=80),  # 37: prime
    "tiny": Spec(x1=-1.0, x2=0.5, y1=-0.5, y2=0.5, w=7, h=2, maxit=30),  # fewer rows than workers
}
assert GRADING == SPECS["default"]
BALANCE_WORKERS = 4  # where balance is graded (see balanced(); never P=2: by symmetry, two
#                      blocks of the viewport balance by accident)
REPEATS = 5  # balanced runs on GRADING; balanced() judges them together
R_MAX = 1.30  # R of work a balancing run reaches (row blocks: 1.57 at P=4, every run)
FINISH_MAX = 1.08  # or median R_finish (row blocks at P=4: 1.18 or more in 360 runs measured)


def _cases(scheme: str, workers: int) -> tuple[list[str], list[dict]]:
    """Case names and cases of one child: every spec, plus the balance repeats at P=4."""
    names = list(SPECS)
    if scheme == "balanced" and workers == BALANCE_WORKERS:
        names += [f"repeat-{i}" for i in range(1, REPEATS)]  # "default" is the first repeat
    specs = [SPECS.get(name, GRADING) for name in names]
    return names, [{"args": (spec,), "everywhere": True} for spec in specs]


def _outcomes(grading, backend: str, scheme: str, workers: int) -> dict[str, Outcome]:
    names, cases = _cases(scheme, workers)
    extra = {"view": "balanced"} if backend == "ipp" and scheme == "balanced" else {}
    outcomes = grading.run(backend, "mandelbrot", f"mandelbrot_{backend}_{scheme}", cases,
                           workers, key="specs", **extra)
    return dict(zip(names, outcomes, strict=True))


def _context(backend: str, scheme: str, workers: int, name: str, spec: Spec) -> str:
    return (f"mandelbrot_{backend}_{scheme} with {workers} workers on the {name} spec "
            f"({spec.w}x{spec.h})")


# -- what the trace says -----------------------------------------------------------------------

def rows_by_pid(outcome: Outcome) -> dict[int, list[int]]:
    """The rows each process computed through compute_rows, in the order it computed them."""
    rows: dict[int, list[int]] = defaultdict(list)
    for r in outcome.records:
        if r.kernel == KERNEL:
            rows[r.pid].extend(int(k) for k in r.task)
    return dict(rows)


def expected_workers(outcome: Outcome, backend: str, scheme: str, workers: int) -> tuple[
        list[int], int, set[int]]:
    """(pids known to be workers, how many workers there must be, pids that must not compute).

    Pool workers and engines are known only by the pids in the trace; MPI ranks by pid.
    """
    if backend == "mpi":
        ranks = [outcome.pids[r] for r in sorted(outcome.pids)]
        if scheme == "balanced" and workers >= 2:
            return ranks[1:], workers - 1, {ranks[0]}  # rank 0 is the master
        return ranks, workers, set()
    client = outcome.pids.get(0)
    pids = [p for p in rows_by_pid(outcome) if p != client]
    return pids, workers, {client}


def worker_work(outcome: Outcome, backend: str, scheme: str, workers: int,
                spec: Spec = GRADING) -> list[float]:
    """Work of each of the expected workers (0 for a worker that ran nothing), from row_work."""
    work_of_row = row_work(spec)
    ran = rows_by_pid(outcome)
    pids, count, _ = expected_workers(outcome, backend, scheme, workers)
    work = [float(work_of_row[ran.get(p, [])].sum()) for p in pids]
    return work + [0.0] * max(0, count - len(work))


def finish_ratio(outcome: Outcome, backend: str, scheme: str, workers: int) -> float:
    """R_finish: max/mean over the expected workers of the time their last row finished,
    counted from the first row's start (a worker that ran nothing finished at 0)."""
    records = [r for r in outcome.records if r.kernel == KERNEL]
    if not records:
        return float("nan")
    t0 = min(r.start for r in records)
    ends: dict[int, float] = defaultdict(float)
    for r in records:
        ends[r.pid] = max(ends[r.pid], r.end - t0)
    pids, count, _ = expected_workers(outcome, backend, scheme, workers)
    finished = [ends.get(p, 0.0) for p in pids]
    return imbalance(finished + [0.0] * max(0, count - len(finished)))


def balanced(runs: list[Outcome], backend: str, scheme: str, workers: int) -> bool:
    """The runs show a balancing schedule: the work was even (R <= R_MAX) in at least one run,
    or every worker kept computing until the end (R_finish <= FINISH_MAX) in half of them.

    The second is needed where processes outnumber cores: the OS then decides how much CPU,
    and so how much work, each worker gets. An MPI master-worker at P=4 has three workers on
    two cores (and MPICH ranks busy-wait: a textbook master spinning in Waitany shares a core
    with one of them), so R of work is 1.05-2.0 however good the schedule; its finish times
    still agree within a few percent.
    Row blocks fail both: R = 1.57 every run, R_finish 1.18 or more. The median, not the best,
    of R_finish: a lucky placement (the heaviest block's process alone on a core) can bring
    one static run's finish times close together, never half of them.
    """
    if any(imbalance(worker_work(o, backend, scheme, workers)) <= R_MAX for o in runs):
        return True
    finish = [finish_ratio(o, backend, scheme, workers) for o in runs]
    return statistics.median(finish) <= FINISH_MAX


def _describe(ran: dict[int, list[int]], work_of_row: np.ndarray, labels: dict[int, str]) -> str:
    lines = []
    for pid, rows in ran.items():
        label = labels.get(pid, f"pid {pid}")
        lines.append(f"  {label}: rows {_ranges(sorted(rows))} "
                     f"(work {int(work_of_row[rows].sum())})")
    return "\n".join(lines)


def _labels(outcome: Outcome, backend: str) -> dict[int, str]:
    if backend == "mpi":
        return {pid: f"rank {r} (pid {pid})" for r, pid in outcome.pids.items()}
    return {outcome.pids.get(0): f"the calling process (pid {outcome.pids.get(0)})"}


def check_trace(outcome: Outcome, backend: str, scheme: str, workers: int, spec: Spec,
                context: str) -> None:
    """Rows once each, in workers; chunked: one contiguous array_split block per worker."""
    ran = rows_by_pid(outcome)
    work_of_row = row_work(spec)
    labels = _labels(outcome, backend)
    if not ran:
        fail(f"{context}: no row went through problems.mandelbrot.compute_rows(spec, rows); "
             "compute every row with it so the grader can see where the work ran")
    counts = Counter(k for rows in ran.values() for k in rows)
    missing = [k for k in range(spec.h) if counts[k] == 0]
    twice = sorted(k for k, n in counts.items() if n > 1)
    alien = sorted(k for k in counts if not 0 <= k < spec.h)
    who = "\n" + _describe(ran, work_of_row, labels)
    if alien:
        fail(f"{context}: compute_rows was called for rows {alien[:10]} outside 0..{spec.h - 1}")
    if missing or twice:
        parts = ([f"rows {_ranges(missing)} never ran"] if missing else []) + \
                ([f"rows {_ranges(twice)} ran more than once"] if twice else [])
        fail(f"{context}: {' and '.join(parts)}; every row must be computed exactly once. "
             f"Rows per process:{who}")
    _, _, forbidden = expected_workers(outcome, backend, scheme, workers)
    for pid in forbidden:
        if ran.get(pid):
            where = ("rank 0, the master: it must only hand out rows and collect them"
                     if backend == "mpi" else
                     "the calling process: rows must run in the "
                     + ("engines" if backend == "ipp" else "pool workers"))
            fail(f"{context}: {len(ran[pid])} rows ran on {where}. Rows per process:{who}")
    if scheme == "chunked":
        _check_blocks(outcome, backend, workers, spec, ran, context, who)


def _check_blocks(outcome: Outcome, backend: str, workers: int, spec: Spec,
                  ran: dict[int, list[int]], context: str, who: str) -> None:
    blocks = [b for b in block_rows(spec.h, workers) if b]
    block_of = {k: i for i, b in enumerate(blocks) for k in b}
    shown = ", ".join(f"{b[0]}-{b[-1]}" if len(b) > 1 else f"{b[0]}" for b in blocks)
    rule = (f"with {workers} workers the blocks are rows {shown} "
            f"(numpy.array_split(range({spec.h}), {workers}))")
    for r in outcome.records:
        if r.kernel == KERNEL and len({block_of[int(k)] for k in r.task}) > 1:
            fail(f"{context}: one compute_rows call took rows {_ranges(sorted(r.task))}, which "
                 f"span several blocks; chunked means one contiguous block per worker: {rule}. "
                 f"Rows per process:{who}")
    for i, block in enumerate(blocks):
        owners = [pid for pid, rows in ran.items() if set(block) & set(rows)]
        if len(owners) > 1:
            fail(f"{context}: block {i} (rows {block[0]}-{block[-1]}) was split over "
                 f"{len(owners)} processes; chunked means one contiguous block per worker: "
                 f"{rule}. Rows per process:{who}")
    if backend == "pool":  # which worker takes which task is the pool's choice
        return
    for rows in ran.values():
        mine = sorted({block_of[k] for k in rows})
        if len(mine) > 1:
            fail(f"{context}: one process ran {len(mine)} blocks; each worker must run exactly "
                 f"one: {rule}. Rows per process:{who}")


# -- parallel versions ----------------------------------------------------------------------

@pytest.mark.points(2)
@pytest.mark.parametrize(("backend", "scheme"), SCHEMES, ids=IDS)
def test_mandelbrot(grading, settings, backend, scheme):
    """The image equals the serial image exactly, on every spec, at every worker count."""
    for workers in settings.worker_counts:
        outcomes = _outcomes(grading, backend, scheme, workers)
        for name, spec in SPECS.items():
            context = _context(backend, scheme, workers, name, spec)
            outcome = outcomes[name]
            require_ok(outcome, context)
            _require_image(outcome.value, serial_image(spec), context)


def _require_image(value, expected: np.ndarray, context: str) -> None:
    if value is None:
        fail(f"{context}: returned None; return the {expected.shape[0]}x{expected.shape[1]} "
             "image on rank 0 / in the calling process")
    value = np.asarray(value)
    if value.shape != expected.shape:
        fail(f"{context}: the image has shape {value.shape}, expected {expected.shape} (h, w)")
    if not np.issubdtype(value.dtype, np.integer):
        if not np.array_equal(value, np.round(value)):
            fail(f"{context}: the image has dtype {value.dtype} with non-integer entries; "
                 "expected the integer iteration counts from compute_rows")
    bad = np.flatnonzero((value != expected).any(axis=1))
    if len(bad):
        fail(f"{context}: {len(bad)} of {expected.shape[0]} rows differ from the serial image "
             f"(rows {_ranges(bad)}); is each row's result stored at its own row index?")


@pytest.mark.points(2)
@pytest.mark.parametrize(("backend", "scheme"), SCHEMES, ids=IDS)
def test_mandelbrot_trace(grading, settings, backend, scheme):
    """From the trace: every row once, in worker processes; chunked: one block per worker."""
    for workers in settings.worker_counts:
        outcomes = _outcomes(grading, backend, scheme, workers)
        for name, spec in SPECS.items():
            context = _context(backend, scheme, workers, name, spec)
            require_ok(outcomes[name], context)
            check_trace(outcomes[name], backend, scheme, workers, spec, context)


@pytest.mark.points(3)
@pytest.mark.parametrize(("backend", "scheme"), [s for s in SCHEMES if s[1] == "balanced"],
                         ids=[i for i in IDS if i.endswith("balanced")])
def test_mandelbrot_balance(grading, backend, scheme):
    """Balanced beats row blocks: at P=4, at least one of the repeats balances
    (``balanced``: R of work <= R_MAX once, or R_finish <= FINISH_MAX in half the runs).

    A static decomposition gives the same R every run, so any one run judges it; a dynamic
    schedule balances finish times, and on a busy machine a worker starved of CPU does less
    work, so R of work varies from run to run: one balancing run shows that the schedule
    balances. If none of the REPEATS runs does, REPEATS fresh runs get a second chance.
    """
    workers = BALANCE_WORKERS  # the child of test_mandelbrot at P=4 ran the first REPEATS
    runs = [o for n, o in _outcomes(grading, backend, scheme, workers).items()
            if n == "default" or n.startswith("repeat-")]
    context = f"mandelbrot_{backend}_{scheme} with {workers} workers on the default spec"
    _check_runs(runs, backend, scheme, workers, context)
    if not balanced(runs, backend, scheme, workers):
        # Second chance, in a fresh child: the machine may have been busy.
        extra = {"view": "balanced"} if backend == "ipp" else {}
        more = grading.run(backend, "mandelbrot", f"mandelbrot_{backend}_{scheme}",
                           [{"args": (GRADING,), "everywhere": True}] * REPEATS, workers,
                           **extra)
        _check_runs(more, backend, scheme, workers, context)
        runs += more
    if not balanced(runs, backend, scheme, workers):
        fail(_imbalance_message(runs, backend, scheme, workers, context))


def _check_runs(runs: list[Outcome], backend: str, scheme: str, workers: int,
                context: str) -> None:
    for outcome in runs:
        require_ok(outcome, context)
        check_trace(outcome, backend, scheme, workers, GRADING, context)


def _imbalance_message(runs: list[Outcome], backend: str, scheme: str, workers: int,
                       context: str) -> str:
    ratios = [imbalance(worker_work(o, backend, scheme, workers)) for o in runs]
    finish = [finish_ratio(o, backend, scheme, workers) for o in runs]
    _, count, _ = expected_workers(runs[0], backend, scheme, workers)
    blocks = imbalance(chunk_costs(row_work(GRADING)[:, None], count))
    worst = runs[int(np.argmax(ratios))]
    rule = (f"R <= {R_MAX} in at least one run, or R_finish <= {FINISH_MAX} (every worker "
            "computing until the end) in half of them")
    return (f"{context}: load imbalance R = max/mean of per-worker work was "
            f"{', '.join(f'{r:.2f}' for r in ratios)} in {len(ratios)} runs (median "
            f"{statistics.median(ratios):.2f}); a balanced version must reach {rule} (one "
            f"contiguous block for each of the {count} workers gives R = {blocks:.2f} every "
            f"time). Work = iterations + {PIXEL_CONSTANT} per pixel. R_finish (max/mean of "
            f"per-worker finish times): {', '.join(f'{f:.2f}' for f in finish)}. Rows per "
            f"process in the run with R = {max(ratios):.2f}:\n"
            + _describe(rows_by_pid(worst), row_work(GRADING), _labels(worst, backend)))


# -- analysis: plain functions, each run in a child of its own -------------------------------

def _call(grading, function: str, cases: list[tuple]) -> list[Outcome]:
    """Outcomes of a plain function (no pool, view or comm), called in a child process."""
    return grading.run("plain", "mandelbrot", function, [{"args": args} for args in cases], 1,
                       key="analysis")


_rng = np.random.default_rng(3)
COST_INPUTS = [  # (pixel costs, nchunks)
    (row_work(GRADING)[:, None] / 150 + np.zeros((1, 150)), 4),
    (_rng.integers(0, 1000, (100, 150)).astype(float), 3),
    (_rng.integers(0, 1000, (37, 11)).astype(float), 4),  # 37 rows: blocks 10, 9, 9, 9
    (_rng.random((37, 11)) * 1e-5, 5),
    (_rng.random((10, 3)), 10),  # one row per block
    (_rng.random((23, 4)), 1),
]
IMBALANCE_INPUTS = [[1.0, 1.0, 1.0], [1.0, 2.0, 3.0, 6.0], [5.0], [0.1, 0.3],
                    list(_rng.random(7) + 0.5)]


@pytest.mark.points(1)
def test_mandelbrot_chunk_costs(grading):
    """chunk_costs sums pixel costs over the numpy.array_split row blocks."""
    outcomes = _call(grading, "chunk_costs", COST_INPUTS)
    for (costs, nchunks), outcome in zip(COST_INPUTS, outcomes, strict=True):
        h, w = costs.shape
        context = f"chunk_costs(pixel_costs of shape ({h}, {w}), nchunks={nchunks})"
        require_ok(outcome, context)
        expected = chunk_costs(costs, nchunks)
        value = np.asarray(outcome.value, dtype=float) if outcome.value is not None else None
        if value is None or value.shape != expected.shape:
            fail(f"{context}: returned {None if value is None else value.shape}, expected an "
                 f"array of shape {expected.shape}: one cost per block")
        if not np.allclose(value, expected, rtol=1e-9, atol=0):
            sizes = [len(b) for b in block_rows(h, nchunks)]
            fail(f"{context}: returned {np.array2string(value, precision=4)}, expected "
                 f"{np.array2string(expected, precision=4)} (blocks of {sizes} rows, as "
                 f"numpy.array_split(range({h}), {nchunks}) makes them)")


@pytest.mark.points(1)
def test_mandelbrot_imbalance(grading):
    """imbalance(costs) is max/mean."""
    outcomes = _call(grading, "imbalance", [(np.array(c),) for c in IMBALANCE_INPUTS])
    for costs, outcome in zip(IMBALANCE_INPUTS, outcomes, strict=True):
        context = f"imbalance({np.array2string(np.array(costs), precision=3)})"
        require_ok(outcome, context)
        expected = imbalance(costs)
        try:
            value = float(outcome.value)
        except (TypeError, ValueError):
            fail(f"{context}: returned {outcome.value!r}, expected a number")
        if not np.isclose(value, expected, rtol=1e-9, atol=0):
            fail(f"{context}: returned {value:.6g}, expected max/mean = {expected:.6g}")


PIXEL_SPEC = Spec(w=60, h=40)  # the course viewport, coarser: about 0.15 s of timing
MIN_RANK_CORRELATION = 0.6  # measured 0.9+, also with two busy loops (docs/mandelbrot.md)


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (ties get their mean rank), numpy only."""
    def ranks(x):
        x = np.asarray(x, dtype=float).ravel()
        order = np.argsort(x, kind="stable")
        r = np.empty(len(x))
        r[order] = np.arange(len(x))
        _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
        sums = np.bincount(inverse, weights=r)
        return (sums / counts)[inverse]
    return float(np.corrcoef(ranks(a), ranks(b))[0, 1])


@pytest.mark.points(1)
def test_mandelbrot_pixel_times(grading):
    """pixel_times has one time per pixel that follows the iteration counts."""
    spec = PIXEL_SPEC
    context = f"pixel_times(Spec(w={spec.w}, h={spec.h}))"
    outcome = _call(grading, "pixel_times", [(spec,)])[0]
    require_ok(outcome, context)
    times = np.asarray(outcome.value, dtype=float) if outcome.value is not None else None
    if times is None or times.shape != (spec.h, spec.w):
        fail(f"{context}: returned {None if times is None else times.shape}, expected an array "
             f"of shape ({spec.h}, {spec.w}): one time per pixel, rows first")
    if not np.isfinite(times).all() or (times < 0).any() or times.max() <= 0:
        fail(f"{context}: times must be finite, non-negative seconds, not all zero")
    if times.max() > 1.0:
        fail(f"{context}: a pixel took {times.max():.3g} s; expected seconds per pixel "
             "(microseconds): did you time a whole row or accumulate?")
    rho = rank_correlation(times, serial_image(spec))
    if rho < MIN_RANK_CORRELATION:
        fail(f"{context}: the times hardly follow the iteration counts (rank correlation "
             f"{rho:.2f}, expected at least {MIN_RANK_CORRELATION}); time each pixel's call "
             "of mandelbrot(x, y, maxit) on its own")


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.mark.points(1)
def test_mandelbrot_plot_distribution(grading, workdir):
    """plot_distribution writes a real, non-blank PNG."""
    path = Path(workdir, f"distribution-{time.time_ns()}.png")
    times = (serial_image(GRADING) * 1.2e-7 + 3e-7)
    context = "plot_distribution(pixel_times, 4, path)"
    outcome = _call(grading, "plot_distribution", [(times, 4, str(path))])[0]
    require_ok(outcome, context)
    if not path.is_file():
        fail(f"{context}: no file was written at path")
    data = path.read_bytes()
    if not data.startswith(PNG_SIGNATURE):
        fail(f"{context}: the file is not a PNG (it starts with {data[:8]!r}); "
             "use savefig(path) with a .png path or format='png'")
    import matplotlib.image

    try:
        pixels = matplotlib.image.imread(path)
    except Exception as exc:  # noqa: BLE001
        fail(f"{context}: the PNG cannot be decoded: {exc}")
    if pixels.ndim < 2 or min(pixels.shape[:2]) < 50:
        fail(f"{context}: the image is only {pixels.shape[1]}x{pixels.shape[0]} pixels")
    flat = pixels.reshape(pixels.shape[0] * pixels.shape[1], -1)
    if (flat == flat[0]).all():
        fail(f"{context}: the PNG is a single colour: nothing was drawn")
