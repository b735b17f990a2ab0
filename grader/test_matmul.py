"""Exercise 2: matrix multiplication on three backends.

Correctness: one test per backend and shape, each checked at every process count against
``A @ B``. Parallelism: one test per backend, judged from the work trace of a larger product
(records bound to A and B, from the run's own workers) and the CPU time the workers named in
it used (``controller.cpurule``: at least half the cost of the rows they claim; docs/grading.md).
All shapes of one backend and process count run in one child (``Grading`` caches the run).
"""

from __future__ import annotations

from functools import lru_cache

import pytest

from parakit.controller.processes import observe
from parakit.controller.verdicts.checks import fail, picture_name, require_ok, require_product
from parakit.controller.verdicts.cpurule import CpuTally, serial_cpu
from parakit.controller.verdicts.evidence import (
    matmul_binding,
    matmul_rows_done,
    sort_records,
)
from parakit.controller.verdicts.mismatch import ranges
from problems.matmul import multiply, random_pair

BACKENDS = ["mpi", "ipp", "pool"]
SHAPES = {  # name: (m, k, n)
    "square": (48, 48, 48),
    "rectangular": (40, 24, 56),
    "indivisible": (37, 23, 19),  # 37 rows divide by none of 2, 3, 4
    "fewer-rows-than-workers": (3, 5, 4),
    "tiny": (1, 1, 1),
}
LARGE = (2048, 1024, 1024)  # enough work that the CPU time shows who did it (87 ms serially)
KERNEL = "matmul.multiply"
PAIRS = {name: random_pair(*shape, seed=i) for i, (name, shape) in
         enumerate([*SHAPES.items(), ("large", LARGE)])}


def outcomes(grading, backend: str, workers: int, pairs: dict = PAIRS,
             key: str = "all-shapes") -> dict:
    """The outcome of ``matmul_{backend}`` on every pair of ``pairs`` at ``workers`` (one child
    per key, cached). The hidden tests pass their own pairs and key: their child runs after
    the visible one, so a hidden shape that hangs costs the visible tests nothing."""
    cases = [{"args": pair} for pair in pairs.values()]
    found = dict(zip(pairs, grading.run(backend, "matmul", f"matmul_{backend}", cases, workers,
                                        key=key), strict=True))
    large = found.get("large")
    if pairs is PAIRS and large is not None and large.ok and large.values:
        _check_large(backend, workers, large)
    return found


# The large product's verdict at each (backend, workers), checked when it arrives: its value
# (16 MiB a run, 12 runs) is not kept, so that a grading fits in 768 MiB (Gradescope).
_LARGE_VERDICTS: dict[tuple[str, int], str] = {}


def _check_large(backend: str, workers: int, outcome) -> None:
    A, B = PAIRS["large"]
    context = f"matmul_{backend} with {workers} workers, A {A.shape[0]}x{A.shape[1]}"
    try:
        require_product(outcome.value, _large_product(), context, workers)
        _LARGE_VERDICTS[(backend, workers)] = ""
    except pytest.fail.Exception as exc:
        _LARGE_VERDICTS[(backend, workers)] = str(exc)
    outcome.values.clear()


@lru_cache(maxsize=1)
def _large_product():
    A, B = PAIRS["large"]
    return A @ B


def check_shape(grading, settings, pictures, backend: str, shape: str, pairs: dict = PAIRS,
                key: str = "all-shapes") -> None:
    """C equals A @ B at every process count, else the cause and a picture."""
    A, B = pairs[shape]
    for workers in settings.worker_counts:
        outcome = outcomes(grading, backend, workers, pairs, key)[shape]
        context = (f"matmul_{backend} with {workers} workers, A {A.shape[0]}x{A.shape[1]} "
                   f"@ B {B.shape[0]}x{B.shape[1]}")
        require_ok(outcome, context)
        require_product(outcome.value, A @ B, context, workers,
                        pictures / picture_name(f"matmul_{backend}", workers, shape))


@pytest.mark.points(1)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_matmul(grading, settings, pictures, backend, shape):
    """C equals A @ B at every process count."""
    check_shape(grading, settings, pictures, backend, shape)


@pytest.mark.points(2)
@pytest.mark.parametrize("backend", BACKENDS)
def test_matmul_parallel(grading, settings, backend):
    """From the trace, bound to A and B: every row of A multiplied once through multiply(), in
    several workers, none in the calling process (by its trace and by its CPU time)."""
    workers = settings.workers
    A, B = PAIRS["large"]
    outcome = outcomes(grading, backend, workers)["large"]
    context = f"matmul_{backend} with {workers} workers, A {A.shape[0]}x{A.shape[1]}"
    require_ok(outcome, context)
    if _LARGE_VERDICTS.get((backend, workers)):
        fail(_LARGE_VERDICTS[(backend, workers)])
    ev = sort_records(outcome, KERNEL, backend, matmul_binding(A, B))
    rejected = f" ({ev.rejections()})" if ev.rejected else ""
    if not ev.valid:
        fail(f"{context}: no row of A went through problems.matmul.multiply(a_rows, B) in a "
             "worker" + (rejected or "; use it for every block so the grader can see where "
                         "the work ran"))
    done = matmul_rows_done(ev, A)
    missing = [i for i in range(A.shape[0]) if done[i] == 0]
    twice = sorted(i for i, n in done.items() if n > 1)
    if missing or twice:
        parts = ([f"rows {ranges(missing)} of A were never multiplied" + rejected]
                 if missing else []) + \
                ([f"rows {ranges(twice)} were multiplied more than once"] if twice else [])
        fail(f"{context}: {' and '.join(parts)}; every row must be multiplied exactly once by "
             "multiply()")
    work = {p: sum(len(r.binding["rows"]) for r in recs) for p, recs in ev.by_process().items()}
    if ev.caller is not None and work.get(ev.caller):
        fail(f"{context}: {work[ev.caller] / A.shape[0]:.0%} of the rows were multiplied in the "
             f"calling process ({observe.describe(ev.caller)}); they must be multiplied in the "
             f"{'engines' if backend == 'ipp' else 'pool workers'}")
    if workers >= 2 and len(work) < 2:
        [proc] = work
        fail(f"{context}: all the work ran in {ev.label(proc)}; split the rows of A across the "
             f"{workers} workers")
    # Where the trace puts the rows, the CPU time must be: the workers named must have used it
    # (a product is mostly data to move: the workers use 2-3 times the claimed product's CPU,
    # so only the missing CPU is judged, not what each used beyond its claims)
    cpu = CpuTally(judge=("missing",))
    serial = serial_cpu(multiply, A, B)
    for n in settings.worker_counts:
        run = outcomes(grading, backend, n)["large"]
        if run.ok:
            cpu.add(run, sort_records(run, KERNEL, backend, matmul_binding(A, B)), serial,
                    float(A.shape[0] * B.size), backend)
    if cpu.verdict():
        fail(f"matmul_{backend}, A {A.shape[0]}x{A.shape[1]}: {cpu.verdict()}")
