"""Hidden tests of exercise 2: shapes the students do not see before grading.

Same fixtures and verdicts as ``grader/test_matmul.py``; the points count towards ``matmul``.
"""

from __future__ import annotations

import pytest

from parakit.controller.checks import picture_name, require_ok, require_product
from problems.matmul import random_pair

SHAPES = {  # name: (m, k, n)
    "outer-product": (29, 1, 31),  # k = 1: a column times a row
    "single-column": (101, 7, 1),  # n = 1: matrix times vector, 101 is prime
}
PAIRS = {name: random_pair(*shape, seed=100 + i) for i, (name, shape) in enumerate(SHAPES.items())}


@pytest.mark.points(1)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("backend", ["mpi", "ipp", "pool"])
def test_matmul_hidden(grading, settings, pictures, backend, shape):
    """C equals A @ B at every process count, on shapes not shown to students."""
    cases = [{"args": PAIRS[name]} for name in SHAPES]
    A, B = PAIRS[shape]
    for workers in settings.worker_counts:
        outcomes = dict(zip(SHAPES, grading.run(backend, "matmul", f"matmul_{backend}", cases,
                                                workers, key="hidden-shapes"), strict=True))
        context = (f"matmul_{backend} with {workers} workers, A {A.shape[0]}x{A.shape[1]} "
                   f"@ B {B.shape[0]}x{B.shape[1]}")
        require_ok(outcomes[shape], context)
        require_product(outcomes[shape].value, A @ B, context, workers,
                        pictures / picture_name(f"matmul_{backend}", workers, shape))
