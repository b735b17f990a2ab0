"""Exercise 2: matrix multiplication C = A @ B, row-block decomposition on three backends."""

from __future__ import annotations

import os
import tempfile
from functools import lru_cache

import numpy as np
from mpi4py import MPI

from problems.matmul import multiply


def _row_counts(m: int, parts: int) -> np.ndarray:
    """Rows per part, as even as possible (the first ``m % parts`` parts get one more)."""
    return np.array([len(block) for block in np.array_split(np.arange(m), parts)])


def matmul_mpi(A: np.ndarray | None, B: np.ndarray | None, comm: MPI.Comm) -> np.ndarray | None:
    """Row blocks of A scattered, B broadcast, C gathered on rank 0."""
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
# every task would pickle it once per task. Instead A, B and C live in memory-mapped .npy
# files: each worker maps B once (cached below), tasks carry only a row range, and workers
# write their rows of C straight into the shared output file. Nothing large is pickled.
_TASK_WORK = 1 << 22  # multiply-adds per task: large enough to hide the per-task cost


@lru_cache(maxsize=4)
def _mapped(path: str, mode: str = "r") -> np.ndarray:
    return np.load(path, mmap_mode=mode)


def _multiply_rows(folder: str, start: int, stop: int) -> None:
    A, B = _mapped(os.path.join(folder, "A.npy")), _mapped(os.path.join(folder, "B.npy"))
    C = _mapped(os.path.join(folder, "C.npy"), "r+")
    C[start:stop] = multiply(A[start:stop], B)


def matmul_pool(A: np.ndarray, B: np.ndarray, pool) -> np.ndarray:
    """Dynamic row ranges on a pool, data shared through memory-mapped files."""
    (m, k), n = A.shape, B.shape[1]
    rows_per_task = max(1, _TASK_WORK // max(1, k * n))
    with tempfile.TemporaryDirectory(prefix="matmul-") as folder:
        np.save(os.path.join(folder, "A.npy"), np.asarray(A, dtype=np.float64))
        np.save(os.path.join(folder, "B.npy"), np.asarray(B, dtype=np.float64))
        np.lib.format.open_memmap(os.path.join(folder, "C.npy"), "w+", np.float64, (m, n))
        tasks = [(folder, s, min(s + rows_per_task, m)) for s in range(0, m, rows_per_task)]
        pool.starmap(_multiply_rows, tasks, chunksize=1)
        return np.array(np.load(os.path.join(folder, "C.npy")))
