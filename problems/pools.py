"""A helper for multiprocessing exercises."""

from __future__ import annotations


def pool_size(pool) -> int:
    """The number of worker processes of a ``multiprocessing.Pool``.

    The graded functions receive a ready pool; the Pool class has no public attribute for its
    size, so the kit reads the private one here, in one place.
    """
    return pool._processes
