"""Exercise 2: matrix multiplication C = A @ B with three backends.

Every backend splits the rows of A into blocks, multiplies each block by the whole of B with
``problems.matmul.multiply(a_rows, B)`` (use it: the grader traces where the work ran) and
assembles C. It must work for any shapes (m, k) @ (k, n), including m not divisible by the
number of workers and m smaller than it. Inputs are float64.
"""

from __future__ import annotations

import numpy as np

from problems.matmul import multiply  # noqa: F401  (you will need it)


def matmul_mpi(A: np.ndarray | None, B: np.ndarray | None, comm) -> np.ndarray | None:
    """Multiply with mpi4py. A and B are given on rank 0 (``None`` elsewhere).

    Return C on rank 0 and ``None`` on every other rank. Hint: ``Bcast``, ``Scatterv``,
    ``Gatherv`` work on numpy buffers without pickling.
    """
    raise NotImplementedError("exercise 2: matmul_mpi")


def matmul_ipp(A: np.ndarray, B: np.ndarray, view) -> np.ndarray:
    """Multiply on the engines of an ipyparallel ``DirectView``; return C on the client."""
    raise NotImplementedError("exercise 2: matmul_ipp")


def matmul_pool(A: np.ndarray, B: np.ndarray, pool) -> np.ndarray:
    """Multiply with a ``multiprocessing.Pool``; return C in the calling process.

    Try not to send B along with every task.
    """
    raise NotImplementedError("exercise 2: matmul_pool")
