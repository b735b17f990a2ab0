"""Exercise 2: matrix multiplication C = A @ B, row-block decomposition on three backends."""

from __future__ import annotations

import os
import tempfile
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from problems.matmul import multiply
from problems.pools import pool_size

if TYPE_CHECKING:
    from mpi4py import MPI
# mpi4py is imported inside matmul_mpi only: importing it initialises MPI, which a pool's
# workers and ipyparallel's engines do not need (0.1-0.3 s each, and a shared-memory segment).


def _row_counts(m: int, parts: int) -> np.ndarray:
    """Rows per part, as even as possible (the first ``m % parts`` parts get one more)."""
    return np.array([len(block) for block in np.array_split(np.arange(m), parts)])


def matmul_mpi(A: np.ndarray | None, B: np.ndarray | None, comm: MPI.Comm) -> np.ndarray | None:
    """Row blocks of A scattered, B broadcast, C gathered on rank 0."""
    from mpi4py import MPI

    rank, size = comm.Get_rank(), comm.Get_size()
    # Only rank 0 knows the shapes; everyone needs them to allocate receive buffers.
    m, k, n = comm.bcast(A.shape + B.shape[1:] if rank == 0 else None, root=0)
    if rank == 0:
        A = np.ascontiguousarray(A, dtype=np.float64)
        B = np.ascontiguousarray(B, dtype=np.float64)
    else:
        B = np.empty((k, n), dtype=np.float64)
    # Upper-case methods move raw numpy buffers: no pickling, one copy on the wire.
    comm.Bcast(B, root=0)

    # Scatterv, not Scatter: the blocks may differ by a row (m need not divide by size, and
    # ranks beyond m get zero rows). Counts and displacements are in elements, not rows.
    rows = _row_counts(m, size)
    a_rows = np.empty((rows[rank], k), dtype=np.float64)
    comm.Scatterv([A, rows * k, MPI.DOUBLE] if rank == 0 else None, a_rows, root=0)

    c_rows = multiply(a_rows, B)

    C = np.empty((m, n), dtype=np.float64) if rank == 0 else None
    comm.Gatherv(c_rows, [C, rows * n, MPI.DOUBLE] if rank == 0 else None, root=0)
    return C


def matmul_ipp(A: np.ndarray, B: np.ndarray, view) -> np.ndarray:
    """B pushed once to every engine, rows of A scattered, blocks gathered in engine order."""
    import ipyparallel as ipp

    view.push({"B": B}, block=True)
    view.scatter("a_rows", A, block=True)  # contiguous row blocks, possibly empty, in order
    # Reference: the argument is looked up in each engine's namespace, so nothing is resent.
    blocks = view.apply_sync(multiply, ipp.Reference("a_rows"), ipp.Reference("B"))
    return np.vstack(blocks).reshape(A.shape[0], B.shape[1])


# Pool workers cannot be given B at start-up (the pool already exists), and sending B with
# every task would pickle it once per task (reference/contrasts.py measures both). Instead A, B
# and C live in memory-mapped .npy files, in RAM (/dev/shm) where the system has it: tasks
# carry only a row range, each worker maps the files once per call (cached below), and writes
# its rows of C straight into the shared output file. Nothing large is pickled.
TASKS_PER_WORKER = 4  # row blocks per worker: each task is a real matrix-matrix product, and
#                      a worker slowed down by the machine takes fewer of them
_RAM = "/dev/shm" if os.path.isdir("/dev/shm") else None  # else the default temporary folder


@lru_cache(maxsize=4)
def _mapped(path: str, mode: str = "r") -> np.ndarray:
    return np.load(path, mmap_mode=mode)


def _multiply_rows(folder: str, start: int, stop: int) -> None:
    A, B = _mapped(os.path.join(folder, "A.npy")), _mapped(os.path.join(folder, "B.npy"))
    C = _mapped(os.path.join(folder, "C.npy"), "r+")
    C[start:stop] = multiply(A[start:stop], B)


def matmul_pool(A: np.ndarray, B: np.ndarray, pool) -> np.ndarray:
    """Row blocks on a pool, handed out dynamically; data shared through memory-mapped files."""
    m, n = A.shape[0], B.shape[1]
    parts = TASKS_PER_WORKER * pool_size(pool)
    blocks = [b for b in np.array_split(np.arange(m), parts) if len(b)]
    with tempfile.TemporaryDirectory(prefix="matmul-", dir=_RAM) as folder:
        np.save(os.path.join(folder, "A.npy"), np.asarray(A, dtype=np.float64))
        np.save(os.path.join(folder, "B.npy"), np.asarray(B, dtype=np.float64))
        np.lib.format.open_memmap(os.path.join(folder, "C.npy"), "w+", np.float64, (m, n))
        tasks = [(folder, int(b[0]), int(b[-1]) + 1) for b in blocks]
        pool.starmap(_multiply_rows, tasks, chunksize=1)
        return np.array(np.load(os.path.join(folder, "C.npy")))
