"""Exercise 3: Mandelbrot, chunked and balanced decompositions on three backends.

Every row is computed with ``problems.mandelbrot.compute_rows(spec, rows)``: it returns the
iteration counts of those rows and records, for the grader, which process ran them.
"""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING

import numpy as np

from problems.mandelbrot import Spec, compute_rows, mandelbrot
from problems.pools import pool_size

if TYPE_CHECKING:
    from mpi4py import MPI
# mpi4py is imported inside the MPI functions only: importing it initialises MPI, which a
# pool or an ipyparallel client does not need (about 0.3 s per process).

BATCH = 2  # rows per task in the balanced versions: small, so that the load evens out, but
#           worth the cost of a task (about 0.1 ms for a pool, 1 ms for ipyparallel)


def _blocks(h: int, parts: int) -> list[np.ndarray]:
    """Contiguous row blocks, as even as possible (numpy.array_split boundaries)."""
    return np.array_split(np.arange(h), parts)


def _batches(h: int, size: int = BATCH) -> list[list[int]]:
    return [list(range(k, min(k + size, h))) for k in range(0, h, size)]


# -- analysis ---------------------------------------------------------------------------------

def pixel_times(spec: Spec) -> np.ndarray:
    """Seconds each pixel takes with the scalar kernel, shape ``(h, w)``."""
    times = np.empty((spec.h, spec.w))
    for k in range(spec.h):
        y = spec.y1 + k * spec.dy
        for j in range(spec.w):
            x = spec.x1 + j * spec.dx
            start = time.perf_counter()
            mandelbrot(x, y, spec.maxit)
            times[k, j] = time.perf_counter() - start
    return times


def chunk_costs(pixel_costs: np.ndarray, nchunks: int) -> np.ndarray:
    """Total cost of each contiguous row block (``numpy.array_split`` boundaries)."""
    per_row = np.asarray(pixel_costs, dtype=float).sum(axis=1)
    return np.array([block.sum() for block in np.array_split(per_row, nchunks)])


def imbalance(costs) -> float:
    """``max / mean``: 1 is perfect balance; the run takes this many times the ideal."""
    costs = np.asarray(costs, dtype=float)
    return float(costs.max() / costs.mean())


def plot_distribution(pixel_times: np.ndarray, nchunks: int, path) -> None:
    """PNG with the histogram of per-pixel times and the cost of each row block."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    micro = np.asarray(pixel_times) * 1e6
    costs = chunk_costs(pixel_times, nchunks)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.hist(micro.ravel(), bins=50, log=True)
    left.set_xlabel("time per pixel (µs)")
    left.set_ylabel("pixels")
    right.bar(range(nchunks), costs, color="tab:orange")
    right.axhline(costs.mean(), color="k", ls="--", label="mean")
    right.set_xlabel("row block")
    right.set_ylabel("time (s)")
    right.set_title(f"{nchunks} blocks: imbalance max/mean = {imbalance(costs):.2f}")
    right.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# -- MPI --------------------------------------------------------------------------------------

def mandelbrot_mpi_chunked(spec: Spec, comm: MPI.Comm) -> np.ndarray | None:
    """Each rank computes its own row block; the blocks are gathered on rank 0."""
    from mpi4py import MPI

    rank, size = comm.Get_rank(), comm.Get_size()
    blocks = _blocks(spec.h, size)
    mine = compute_rows(spec, blocks[rank])
    counts = [len(b) * spec.w for b in blocks]  # in elements, not rows
    image = np.empty((spec.h, spec.w), dtype=mine.dtype) if rank == 0 else None
    comm.Gatherv(mine, [image, counts, MPI.INT] if rank == 0 else None, root=0)
    return image


_WORK, _STOP = 1, 2  # message tags: a batch of rows to compute / no more work
AHEAD = 2  # batches a worker holds at once: it starts the next while its result travels
POLL = 2e-4  # seconds the master sleeps between checks once it has nothing left to compute


def mandelbrot_mpi_balanced(spec: Spec, comm: MPI.Comm) -> np.ndarray | None:
    """Master-worker where the master computes too: rank 0 hands out row batches as workers
    finish, and computes a batch itself whenever no result is waiting. Alone, it computes
    everything (there is nobody to hand work to)."""
    if comm.Get_rank() == 0:
        return _master(spec, comm)
    _worker(spec, comm)
    return None


def _master(spec: Spec, comm: MPI.Comm, computes: bool = True) -> np.ndarray:
    from mpi4py import MPI

    # Why the master computes: with P ranks on P cores, a master that only schedules leaves a
    # core idle (about 1x at np=2 on 2 cores: reference.contrasts.mandelbrot_mpi_master_only).
    # It serves the workers between its own batches, and each worker holds AHEAD batches, so
    # one of the master's batches (BATCH rows) never leaves a worker without work.
    image = np.empty((spec.h, spec.w), dtype=np.intc)
    todo = deque(_batches(spec.h))
    queued: dict[int, deque] = {w: deque() for w in range(1, comm.Get_size())}
    stopped, sends = set(), []

    def feed(w: int) -> None:
        """Send worker w its next batch, with a receive posted for the result; or, when no
        work is left, tell it to stop (once: it reads its messages in order, so it still
        computes what it holds first)."""
        if w in stopped:
            return
        if not todo:
            sends.append(comm.isend(None, dest=w, tag=_STOP))
            stopped.add(w)
            return
        rows = todo.popleft()
        sends.append(comm.isend(rows, dest=w, tag=_WORK))
        buf = np.empty((len(rows), spec.w), dtype=np.intc)
        queued[w].append((rows, comm.Irecv(buf, source=w), buf))

    def collect() -> bool:
        """Place every result that has arrived and refill its worker; True if any had."""
        arrived = False
        for w, batches in queued.items():
            # A worker's batches finish in the order it got them (messages between two ranks
            # arrive in order): only the oldest can be done.
            while batches and batches[0][1].Test():
                rows, _, buf = batches.popleft()
                image[rows] = buf
                feed(w)
                arrived = True
        return arrived

    for _ in range(AHEAD):  # prime every worker (or stop it: more workers than batches)
        for w in queued:
            feed(w)
    while todo or any(queued.values()):
        if collect():
            continue
        if todo and computes:  # no result waiting: the master's own share
            rows = todo.popleft()
            image[rows] = compute_rows(spec, rows)
        else:  # not a busy Waitany: MPI polls at 100% CPU in it, taking a core from workers
            time.sleep(POLL)
    MPI.Request.Waitall(sends)
    return image


def _worker(spec: Spec, comm: MPI.Comm) -> None:
    from mpi4py import MPI

    status = MPI.Status()
    while True:
        rows = comm.recv(source=0, status=status)
        if status.Get_tag() == _STOP:
            return
        comm.Send(np.ascontiguousarray(compute_rows(spec, rows)), dest=0)


# -- ipyparallel ------------------------------------------------------------------------------

def mandelbrot_ipp_chunked(spec: Spec, view) -> np.ndarray:
    """One contiguous row block per engine of the DirectView, stacked in engine order."""
    import ipyparallel as ipp

    view.scatter("rows", np.arange(spec.h), block=True)  # array_split blocks, in engine order
    # Reference: each engine passes its own "rows" from its namespace; nothing else is sent.
    blocks = view.apply_sync(compute_rows, spec, ipp.Reference("rows"))
    return np.vstack(blocks)


def mandelbrot_ipp_balanced(spec: Spec, view) -> np.ndarray:
    """Guided self-scheduling on a LoadBalancedView: batches shrink as the work runs out, and
    an idle engine takes the next one."""
    # A task costs 1-3 ms on its way through ipyparallel's scheduler (measured by
    # `parakit bench`), as much as a few rows: 2-row batches made the 600x400 image slower on 2
    # engines than on one. Guided batches (what is left / (2 * engines)) make few big tasks
    # first and small ones at the end, where they even out the load: 19 tasks for 400 rows on
    # 2 engines instead of 200.
    batches = _guided_batches(spec.h, len(view))
    results = view.map_sync(compute_rows, [spec] * len(batches), batches)
    return np.vstack(results)  # map returns the results in the order of the batches


def _guided_batches(h: int, workers: int) -> list[list[int]]:
    """Consecutive row batches, each ``ceil(rows left / (2 * workers))`` rows: no batch is more
    than half a worker's fair share, and the last ones are single rows."""
    batches, k = [], 0
    while k < h:
        size = -(-(h - k) // (2 * workers))
        batches.append(list(range(k, k + size)))
        k += size
    return batches


# -- multiprocessing --------------------------------------------------------------------------

def mandelbrot_pool_chunked(spec: Spec, pool) -> np.ndarray:
    """One contiguous row block per pool worker."""
    blocks = _blocks(spec.h, pool_size(pool))
    # chunksize=1: one block per task, so no worker is handed two blocks in one go.
    return np.vstack(pool.starmap(compute_rows, [(spec, b) for b in blocks], chunksize=1))


def mandelbrot_pool_balanced(spec: Spec, pool) -> np.ndarray:
    """Small row batches handed out dynamically: an idle worker takes the next one."""
    # chunksize=1: a worker takes one task at a time from the queue, so the fast ones take
    # more. starmap returns the results in task order, which is row order. (imap_unordered
    # with rows placed as they arrive was 15% slower on 2 cores: the client's threads wake for
    # every result and take CPU from the workers.)
    tasks = [(spec, rows) for rows in _batches(spec.h)]
    return np.vstack(pool.starmap(compute_rows, tasks, chunksize=1))
