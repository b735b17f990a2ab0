"""Exercise 3: Mandelbrot, chunked and balanced, on three backends, and the imbalance analysis.

Per backend and scheme (node ids ``test_mandelbrot...[pool-balanced]`` and so on):

- ``test_mandelbrot``: the image equals the serial image exactly, on every spec, at every
  worker count;
- ``test_mandelbrot_trace``: from the work trace (records bound to the graded spec and rows,
  from processes the grader knows, see ``controller.evidence``): every row ran exactly
  once, in a worker; for pool and ipyparallel the calling process computed nothing, by its
  trace and by the CPU time the operating system measured; a chunked version gave each worker one
  contiguous ``array_split`` block;
- ``test_mandelbrot_balance`` (balanced only): on ``GRADING`` at P=4 over ``REPEATS`` runs
  (``REPEATS`` more if they do not pass), the rule of ``parakit.controller.verdicts.balance``: no
  worker waited while others computed, and the work was even or every worker computed until the end.
  docs/mandelbrot.md has the measured distributions behind it.

All specs and repeats of one function and worker count run in one child (pool and ipyparallel:
one child for every worker count; ``Grading`` caches it).
The analysis functions (costs, imbalance, pixel times, the plot) are graded in
``test_mandelbrot_analysis.py``.
"""

from __future__ import annotations

from collections import Counter
from functools import lru_cache

import numpy as np
import pytest

from parakit.controller.processes.observe import Proc
from parakit.controller.session.outcome import Outcome
from parakit.controller.verdicts import balance, balance_report
from parakit.controller.verdicts.checks import fail, picture_name, require_array, require_ok
from parakit.controller.verdicts.cpurule import CpuTally, serial_cpu
from parakit.controller.verdicts.evidence import (
    Evidence,
    mandelbrot_binding,
    sort_records,
)
from parakit.controller.verdicts.mismatch import ranges
from problems.mandelbrot import (
    GRADING,
    Spec,
    block_rows,
    compute_rows,
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
BALANCE_WORKERS = 4  # where balance is graded (never P=2: by symmetry, two blocks of the
#                      viewport balance by accident)
# What a lone rank must do, said when a balanced MPI version wrote no row at one process.
ALONE = ("with 1 process rank 0 has no workers to hand rows to: it must compute every row "
         "itself (see the docstring of mandelbrot_mpi_balanced)")


def _cases(scheme: str, workers: int) -> tuple[list[str], list[dict]]:
    """Case names and cases of one child: every spec, plus the balance repeats at P=4."""
    names = list(SPECS)
    if scheme == "balanced" and workers == BALANCE_WORKERS:
        names += [f"repeat-{i}" for i in range(1, balance.REPEATS)]  # "default" is the first
    specs = [SPECS.get(name, GRADING) for name in names]
    return names, [{"args": (spec,), "everywhere": True} for spec in specs]


def _outcomes(grading, backend: str, scheme: str, workers: int) -> dict[str, Outcome]:
    names, _ = _cases(scheme, workers)
    extra = {"view": "balanced"} if backend == "ipp" and scheme == "balanced" else {}
    outcomes = grading.run(backend, "mandelbrot", f"mandelbrot_{backend}_{scheme}",
                           lambda n: _cases(scheme, n)[1], workers, key="specs", **extra)
    return dict(zip(names, outcomes, strict=True))


def _context(backend: str, scheme: str, workers: int, name: str, spec: Spec) -> str:
    return (f"mandelbrot_{backend}_{scheme} with {workers} workers on the {name} spec "
            f"({spec.w}x{spec.h})")


# -- what the trace says -----------------------------------------------------------------------

def evidence(outcome: Outcome, backend: str, spec: Spec) -> Evidence:
    """The outcome's compute_rows records, sorted into those that count and those that do not."""
    return sort_records(outcome, KERNEL, backend, mandelbrot_binding(spec))


def rows_by_process(ev: Evidence) -> dict[Proc, list[int]]:
    """The rows each process computed (valid records only), in the order it computed them."""
    return {p: [int(k) for r in recs for k in r.task] for p, recs in ev.by_process().items()}


def _describe(ran: dict[int, list[int]], work_of_row: np.ndarray, ev: Evidence) -> str:
    return "\n".join(f"  {ev.label(pid)}: rows {ranges(sorted(rows))} "
                     f"(work {int(work_of_row[rows].sum())})" for pid, rows in ran.items())


def check_trace(outcome: Outcome, backend: str, scheme: str, workers: int, spec: Spec,
                context: str) -> Evidence:
    """Rows once each, in workers; chunked: one contiguous array_split block per worker."""
    ev = evidence(outcome, backend, spec)
    ran = rows_by_process(ev)
    work_of_row = row_work(spec)
    rejected = f" ({ev.rejections()})" if ev.rejected else ""
    if not ran:
        fail(f"{context}: no row of the graded spec went through "
             "problems.mandelbrot.compute_rows(spec, rows) in a worker" + (
                 rejected or "; compute every row with it so the grader can see where the work "
                 "ran"))
    counts = Counter(k for rows in ran.values() for k in rows)
    missing = [k for k in range(spec.h) if counts[k] == 0]
    twice = sorted(k for k, n in counts.items() if n > 1)
    who = "\n" + _describe(ran, work_of_row, ev)
    if missing or twice:
        parts = ([f"rows {ranges(missing)} never ran" + rejected] if missing else []) + \
                ([f"rows {ranges(twice)} ran more than once"] if twice else [])
        fail(f"{context}: {' and '.join(parts)}; every row must be computed exactly once, by "
             f"compute_rows on the spec you were given. Rows per process:{who}")
    if ran.get(ev.caller):
        where = "engines" if backend == "ipp" else "pool workers"
        fail(f"{context}: {len(ran[ev.caller])} rows ran in {ev.label(ev.caller)}; rows must "
             f"run in the {where}. Rows per process:{who}")
    if scheme == "chunked":
        _check_blocks(ev, backend, workers, spec, ran, context, who)
    return ev


def _check_blocks(ev: Evidence, backend: str, workers: int, spec: Spec,
                  ran: dict[int, list[int]], context: str, who: str) -> None:
    blocks = [b for b in block_rows(spec.h, workers) if b]
    block_of = {k: i for i, b in enumerate(blocks) for k in b}
    shown = ", ".join(f"{b[0]}-{b[-1]}" if len(b) > 1 else f"{b[0]}" for b in blocks)
    rule = (f"with {workers} workers the blocks are rows {shown} "
            f"(numpy.array_split(range({spec.h}), {workers}))")
    for r in ev.valid:
        if len({block_of[int(k)] for k in r.task}) > 1:
            fail(f"{context}: one compute_rows call took rows {ranges(sorted(r.task))}, which "
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
def test_mandelbrot(grading, settings, pictures, backend, scheme):
    """The image equals the serial image exactly, on every spec, at every worker count."""
    function = f"mandelbrot_{backend}_{scheme}"
    for workers in settings.worker_counts:
        outcomes = _outcomes(grading, backend, scheme, workers)
        for name, spec in SPECS.items():
            context = _context(backend, scheme, workers, name, spec)
            outcome = outcomes[name]
            require_ok(outcome, context)
            require_array(outcome.value, serial_image(spec), context, what="image",
                          workers=workers, exact=True,
                          picture=pictures / picture_name(function, workers, name),
                          alone=ALONE if (backend, scheme) == ("mpi", "balanced") else "")


@pytest.mark.points(2)
@pytest.mark.parametrize(("backend", "scheme"), SCHEMES, ids=IDS)
def test_mandelbrot_trace(grading, settings, backend, scheme):
    """From the trace: every row once, in worker processes; chunked: one block per worker.
    Pool and ipyparallel: the CPU time went to the workers, not to the calling process."""
    cpu = CpuTally()
    for workers in settings.worker_counts:
        outcomes = _outcomes(grading, backend, scheme, workers)
        for name, spec in SPECS.items():
            context = _context(backend, scheme, workers, name, spec)
            require_ok(outcomes[name], context)
            ev = check_trace(outcomes[name], backend, scheme, workers, spec, context)
            cpu.add(outcomes[name], ev, _serial_cpu(spec), float(row_work(spec).sum()), backend)
    if cpu.verdict():
        fail(f"mandelbrot_{backend}_{scheme}: {cpu.verdict()}")


@lru_cache(maxsize=8)
def _serial_cpu(spec: Spec) -> float:
    """CPU seconds the rows of ``spec`` take here, serially (tracing is off in this process)."""
    return serial_cpu(compute_rows, spec, range(spec.h))


@pytest.mark.points(3)
@pytest.mark.workers(BALANCE_WORKERS)
@pytest.mark.parametrize(("backend", "scheme"), [s for s in SCHEMES if s[1] == "balanced"],
                         ids=[i for i in IDS if i.endswith("balanced")])
def test_mandelbrot_balance(grading, pictures, backend, scheme):
    """Balanced beats row blocks: at P=4 the runs balance by the rule of ``controller.balance``.

    A static decomposition gives the same measures every run; a dynamic one depends on how the
    OS shares the cores, so REPEATS runs are judged together, and REPEATS fresh runs in a new
    child get a second chance if they do not pass (the machine may have been busy).
    """
    workers = BALANCE_WORKERS  # the child of test_mandelbrot at P=4 ran the first REPEATS
    runs = [o for n, o in _outcomes(grading, backend, scheme, workers).items()
            if n == "default" or n.startswith("repeat-")]
    context = f"mandelbrot_{backend}_{scheme} with {workers} workers on the default spec"
    measured = _measure(runs, backend, workers, context)
    if not balance.balanced([m for m, _ in measured]):
        extra = {"view": "balanced"} if backend == "ipp" else {}
        more = grading.run(backend, "mandelbrot", f"mandelbrot_{backend}_{scheme}",
                           [{"args": (GRADING,), "everywhere": True}] * balance.REPEATS,
                           workers, **extra)
        runs += more
        measured += _measure(more, backend, workers, context)
    cpu = CpuTally()  # a balanced-looking trace of work done elsewhere is no balance
    for outcome, (_, ev) in zip(runs, measured, strict=True):
        cpu.add(outcome, ev, _serial_cpu(GRADING), float(row_work(GRADING).sum()), backend)
    if cpu.verdict():
        fail(f"{context}: {cpu.verdict()}")
    if not balance.balanced([m for m, _ in measured]):
        fail(balance_report.message(measured, workers, context,
                                pictures / f"balance-{backend}-{scheme}.png", backend))


def _measure(runs: list[Outcome], backend: str, workers: int,
             context: str) -> list[tuple[balance.Measures, Evidence]]:
    out = []
    for outcome in runs:
        require_ok(outcome, context)
        ev = check_trace(outcome, backend, "balanced", workers, GRADING, context)
        out.append((balance.measure(ev, GRADING, workers, outcome.seen), ev))
    return out


