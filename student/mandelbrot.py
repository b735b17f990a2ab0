"""Exercise 3: the Mandelbrot set, chunked and balanced, on three backends.

Compute every row with ``problems.mandelbrot.compute_rows(spec, rows)``: it returns the
iteration counts of those rows, shape ``(len(rows), spec.w)``, and records which process ran
them (the grader reads that record). ``spec`` is a ``problems.mandelbrot.Spec``: pixel (k, j)
is ``c = (spec.x1 + j*spec.dx) + (spec.y1 + k*spec.dy) i``; the image has shape
``(spec.h, spec.w)``. Every parallel function returns the whole image, equal to
``problems.mandelbrot.serial_image(spec)``, on rank 0 / in the calling process (``None`` on the
other MPI ranks). Try yours: ``python -m problems.mandelbrot --help``.
"""

from __future__ import annotations

import numpy as np

from problems.mandelbrot import Spec, compute_rows, mandelbrot  # noqa: F401  (you will need them)

# -- part 1: how unbalanced is it? -----------------------------------------------------------


def pixel_times(spec: Spec) -> np.ndarray:
    """Seconds each pixel takes, shape ``(spec.h, spec.w)``.

    Time every call of the scalar kernel ``mandelbrot(x, y, spec.maxit)`` on its own
    (``time.perf_counter()`` before and after).
    """
    raise NotImplementedError("exercise 3: pixel_times")


def chunk_costs(pixel_costs: np.ndarray, nchunks: int) -> np.ndarray:
    """The total cost of each of ``nchunks`` contiguous row blocks, shape ``(nchunks,)``.

    ``pixel_costs`` has shape ``(h, w)``; the blocks are those of
    ``numpy.array_split(range(h), nchunks)`` (the first ``h % nchunks`` blocks get one more row).
    """
    raise NotImplementedError("exercise 3: chunk_costs")


def imbalance(costs) -> float:
    """The load imbalance ``max(costs) / mean(costs)`` (1.0 is perfect balance)."""
    raise NotImplementedError("exercise 3: imbalance")


def plot_distribution(pixel_times: np.ndarray, nchunks: int, path) -> None:
    """Write a PNG to ``path``: the histogram of per-pixel times and the cost of each block.

    Use matplotlib without a display (``matplotlib.use("Agg")``).
    """
    raise NotImplementedError("exercise 3: plot_distribution")


# -- part 2: chunked, one contiguous row block per worker -------------------------------------


def mandelbrot_mpi_chunked(spec: Spec, comm) -> np.ndarray | None:
    """Rank r computes block r of ``numpy.array_split(range(h), size)``; gather on rank 0.

    ``spec`` is given on every rank. Return the image on rank 0, ``None`` elsewhere.
    Hint: ``Gatherv`` takes per-rank counts when the blocks differ in size.
    """
    raise NotImplementedError("exercise 3: mandelbrot_mpi_chunked")


def mandelbrot_ipp_chunked(spec: Spec, view) -> np.ndarray:
    """Engine i of the ``DirectView`` computes block i of ``array_split(range(h), len(view))``."""
    raise NotImplementedError("exercise 3: mandelbrot_ipp_chunked")


def mandelbrot_pool_chunked(spec: Spec, pool) -> np.ndarray:
    """As many contiguous ``array_split`` blocks as the pool has workers, one task each.

    ``problems.pools.pool_size(pool)`` tells how many workers the pool has.
    """
    raise NotImplementedError("exercise 3: mandelbrot_pool_chunked")


# -- part 3: balanced ------------------------------------------------------------------------


def mandelbrot_mpi_balanced(spec: Spec, comm) -> np.ndarray | None:
    """Even out the work over the ranks; return the image on rank 0, ``None`` elsewhere.

    The sheet's suggestion is master-worker: rank 0 hands out small batches of rows as workers
    finish, with non-blocking messages (``Isend``/``Irecv``, ``Request.Waitany``) so that it
    serves whichever worker finishes first. Any decomposition that balances is accepted: rows
    dealt cyclically (row k on rank k mod size), a master that also computes between
    hand-outs, ... With a single process, rank 0 computes everything itself.
    """
    raise NotImplementedError("exercise 3: mandelbrot_mpi_balanced")


def mandelbrot_ipp_balanced(spec: Spec, view) -> np.ndarray:
    """Small batches of rows on an ipyparallel ``LoadBalancedView`` (``view.map``)."""
    raise NotImplementedError("exercise 3: mandelbrot_ipp_balanced")


def mandelbrot_pool_balanced(spec: Spec, pool) -> np.ndarray:
    """Small batches of rows, scheduled dynamically (e.g. ``pool.starmap(..., chunksize=1)``)."""
    raise NotImplementedError("exercise 3: mandelbrot_pool_balanced")
