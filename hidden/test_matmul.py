"""Hidden tests of exercise 2: shapes the students do not see before grading.

Same fixtures and verdicts as ``grader/test_matmul.py`` (``check_shape``), in a child of their
own; the points count towards ``matmul``.
"""

from __future__ import annotations

import pytest

from grader import test_matmul as visible
from problems.matmul import random_pair

SHAPES = {  # name: (m, k, n)
    "outer-product": (29, 1, 31),  # k = 1: a column times a row
    "single-column": (101, 7, 1),  # n = 1: matrix times vector, 101 is prime
}
PAIRS = {name: random_pair(*shape, seed=100 + i) for i, (name, shape) in enumerate(SHAPES.items())}


@pytest.mark.points(1)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("backend", visible.BACKENDS)
def test_matmul_hidden(grading, settings, pictures, backend, shape):
    """C equals A @ B at every process count, on shapes not shown to students."""
    visible.check_shape(grading, settings, pictures, backend, shape, PAIRS, "hidden-shapes")
