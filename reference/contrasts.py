"""Deliberately worse versions of reference solutions, for ``parakit bench`` to compare against.

Each one is correct and differs from the reference in one idea only, so that the ratio of the
two times measures that idea:

- ``matmul_mpi_pickle``: lower-case ``bcast``/``scatter``/``gather`` of numpy arrays (pickled,
  copied into and out of byte strings) instead of ``Bcast``/``Scatterv``/``Gatherv`` on the raw
  buffers (``reference.matmul.matmul_mpi``).
- ``matmul_pool_ship_b``: every pool task carries its own pickled copy of B.
- ``matmul_pool_per_worker``: B reaches each worker once, through the pool's initializer; the
  same tasks then carry rows of A only.
- ``mandelbrot_mpi_master_only``: the classic master-worker, whose master only schedules
  (``reference.mandelbrot.mandelbrot_mpi_balanced`` has it compute between hand-outs): with
  as many ranks as cores, one core mostly waits.

Not part of the student release (they are working solutions).
"""

from __future__ import annotations

import multiprocessing

import numpy as np

from problems.mandelbrot import Spec, compute_rows
from problems.matmul import multiply
from problems.pools import pool_size
from reference import mandelbrot
from reference.matmul import TASKS_PER_WORKER  # the reference's tasks: only B's journey differs


def matmul_mpi_pickle(A: np.ndarray | None, B: np.ndarray | None, comm) -> np.ndarray | None:
    """As ``reference.matmul.matmul_mpi``, with pickle-based collectives."""
    rank = comm.Get_rank()
    B = comm.bcast(B, root=0)
    blocks = np.array_split(A, comm.Get_size()) if rank == 0 else None
    c_rows = multiply(comm.scatter(blocks, root=0), B)
    blocks = comm.gather(c_rows, root=0)
    return np.vstack(blocks) if rank == 0 else None


def _row_blocks(A: np.ndarray, workers: int) -> list[np.ndarray]:
    return np.array_split(A, TASKS_PER_WORKER * workers)


def matmul_pool_ship_b(A: np.ndarray, B: np.ndarray, pool) -> np.ndarray:
    """Row blocks of A on the pool, each task with B: B is pickled once per task."""
    tasks = [(rows, B) for rows in _row_blocks(A, pool_size(pool))]
    return np.vstack(pool.starmap(multiply, tasks, chunksize=1))


_B: np.ndarray | None = None  # a pool worker's copy of B, set by the initializer


def _set_b(B: np.ndarray) -> None:
    global _B
    _B = B


def _times_b(a_rows: np.ndarray) -> np.ndarray:
    return multiply(a_rows, _B)


def matmul_pool_per_worker(A: np.ndarray, B: np.ndarray, pool) -> np.ndarray:
    """B given to each worker once, at start-up, by a pool of the same size made for this B.

    The time includes creating that pool (B cannot be handed to an existing pool's workers).
    With the ``fork`` start method the workers inherit B from the parent without any copy.
    """
    with multiprocessing.Pool(pool_size(pool), _set_b, (B,)) as own:
        blocks = own.map(_times_b, _row_blocks(A, pool_size(pool)), chunksize=1)
    return np.vstack(blocks)


def mandelbrot_mpi_master_only(spec: Spec, comm) -> np.ndarray | None:
    """As ``reference.mandelbrot.mandelbrot_mpi_balanced``, with a master that never computes
    (alone, it has to)."""
    if comm.Get_size() == 1:
        return compute_rows(spec, range(spec.h))
    if comm.Get_rank() == 0:
        return mandelbrot._master(spec, comm, computes=False)
    mandelbrot._worker(spec, comm)
    return None
