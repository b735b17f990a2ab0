"""Exercise 2: matrix multiplication on three backends.

Correctness: one test per backend and shape, each checked at every process count against
``A @ B``. Parallelism: one test per backend, judged from the work trace of a larger product.
All shapes of one backend and process count run in one child (``Grading`` caches the run).
"""

from __future__ import annotations

import pytest

from grader.checks import fail, require_array, require_ok, work_by_pid
from problems.matmul import random_pair

BACKENDS = ["mpi", "ipp", "pool"]
SHAPES = {  # name: (m, k, n)
    "square": (48, 48, 48),
    "rectangular": (40, 24, 56),
    "indivisible": (37, 23, 19),  # 37 rows divide by none of 2, 3, 4
    "fewer-rows-than-workers": (3, 5, 4),
    "tiny": (1, 1, 1),
}
LARGE = (1024, 256, 256)  # enough work per worker for the trace to show parallelism
PAIRS = {name: random_pair(*shape, seed=i) for i, (name, shape) in
         enumerate([*SHAPES.items(), ("large", LARGE)])}
NAMES = list(PAIRS)


def _outcomes(grading, backend: str, workers: int):
    cases = [{"args": PAIRS[name]} for name in NAMES]
    return dict(zip(NAMES, grading.run(backend, "matmul", f"matmul_{backend}", cases, workers,
                                       key="all-shapes"), strict=True))


@pytest.mark.points(1)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_matmul(grading, settings, backend, shape):
    """C equals A @ B at every process count."""
    A, B = PAIRS[shape]
    for workers in settings.worker_counts:
        outcome = _outcomes(grading, backend, workers)[shape]
        context = (f"matmul_{backend} with {workers} workers, A {A.shape[0]}x{A.shape[1]} "
                   f"@ B {B.shape[0]}x{B.shape[1]}")
        require_ok(outcome, context)
        require_array(outcome.value, A @ B, context, what="product")


@pytest.mark.points(2)
@pytest.mark.parametrize("backend", BACKENDS)
def test_matmul_parallel(grading, settings, backend):
    """From the trace: every row multiplied once through multiply(), in several workers."""
    workers = settings.workers
    A, B = PAIRS["large"]
    outcome = _outcomes(grading, backend, workers)["large"]
    context = f"matmul_{backend} with {workers} workers, A {A.shape[0]}x{A.shape[1]}"
    require_ok(outcome, context)
    require_array(outcome.value, A @ B, context, what="product")
    (m, k), n = A.shape, B.shape[1]
    work = work_by_pid(outcome.records)
    total = sum(work.values())
    if total != m * k * n:
        if total == 0:
            fail(f"{context}: no block product went through problems.matmul.multiply(a_rows, B); "
                 "use it for every block so the grader can see where the work ran")
        fail(f"{context}: the traced products add up to {total / (k * n):g} rows of A, expected "
             f"{m}: every row must be multiplied exactly once by multiply()")
    client = outcome.pids.get(0) if backend != "mpi" else None
    if client is not None and work.get(client, 0):
        share = work[client] / total
        fail(f"{context}: {share:.0%} of the work ran in the calling process (pid {client}); "
             f"it must run in the {'engines' if backend == 'ipp' else 'pool workers'}")
    busy = [pid for pid, units in work.items() if units > 0]
    if workers >= 2 and len(busy) < 2:
        who = "rank 0" if backend == "mpi" and busy == [outcome.pids.get(0)] else "one process"
        fail(f"{context}: all the work ran in {who} (pid {busy[0]}); split the rows of A "
             f"across the {workers} workers")
