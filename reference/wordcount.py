"""Exercise 4: map-reduce word count on three backends.

Design shared by the three backends:

* Workers get *paths*, not contents: every worker can open the files itself (same machine or a
  shared file system), so a path of a few dozen bytes travels instead of megabytes of text.
* Map = count a whole *batch* of documents and merge their counts locally; reduce = add the few
  partial Counters. A Counter per document would ship the common vocabulary again and again
  (a document's Counter pickles to about as many bytes as it has distinct words, and the client
  would merge N of them one after the other); one merged Counter per batch sends each distinct
  word once per batch and leaves most of the merging to the workers, in parallel.
* Batches are balanced by bytes (counting time is proportional to size), largest document first
  into the lightest batch, so one document much larger than the rest gets a batch of its own
  instead of piling up behind others. Sizing the files up front also makes a missing path fail
  early, in the calling process, with ``FileNotFoundError`` naming it.
"""

from __future__ import annotations

import heapq
import os
from collections import Counter

from problems.pools import pool_size
from problems.wordcount import count_file


def _batches(paths: list, parts: int) -> list[list]:
    """``paths`` split into ``parts`` batches of nearly equal bytes (greedy, largest first).

    ``os.path.getsize`` raises FileNotFoundError naming a missing path. Empty batches are
    kept, so there are always exactly ``parts`` (MPI scatters one per rank).
    """
    sizes = [os.path.getsize(p) for p in paths]
    batches: list[list] = [[] for _ in range(parts)]
    lightest = [(0, i) for i in range(parts)]  # heap of (bytes so far, batch index)
    for i in sorted(range(len(paths)), key=lambda i: -sizes[i]):
        load, b = heapq.heappop(lightest)
        batches[b].append(paths[i])
        heapq.heappush(lightest, (load + sizes[i], b))
    return batches


def count_batch(paths: list) -> Counter:
    """The map step: count each document of a batch and merge the counts locally."""
    total: Counter = Counter()
    for path in paths:
        total.update(count_file(path))
    return total


def wordcount_mpi(paths: list | None, comm) -> Counter | None:
    """Rank 0 splits the paths into one batch per rank; counts are summed back onto rank 0."""
    # If a path is missing, rank 0 raises here, before the scatter; under `python -m mpi4py`
    # (how the course starts programs) an uncaught exception aborts every rank: no hang.
    batches = _batches(list(paths), comm.Get_size()) if comm.Get_rank() == 0 else None
    mine = comm.scatter(batches, root=0)
    # Lower-case reduce pickles Python objects; MPI.SUM applies `+`, which adds Counters.
    from mpi4py import MPI

    return comm.reduce(count_batch(mine), op=MPI.SUM, root=0)


def wordcount_ipp(paths: list, view) -> Counter:
    """Map: one batch per engine of the DirectView; reduce: sum the Counters on the client."""
    batches = _batches(list(paths), len(view))
    # DirectView.map hands engine i the i-th contiguous slice of the sequence: with exactly
    # one batch per engine, each engine counts one batch. count_batch is sent by reference
    # (module and name); the engines import this module themselves.
    partials = view.map_sync(count_batch, batches)
    return sum(partials, Counter())


# A pool schedules dynamically: a few batches per worker let a worker that finishes early take
# more work, while still sending far fewer Counters than documents.
_BATCHES_PER_WORKER = 4


def wordcount_pool(paths: list, pool) -> Counter:
    """Byte-balanced batches handed out dynamically to the pool; counts summed as they arrive."""
    paths = list(paths)
    workers = pool_size(pool)
    batches = [b for b in _batches(paths, min(len(paths), workers * _BATCHES_PER_WORKER)) if b]
    total: Counter = Counter()
    for partial in pool.imap_unordered(count_batch, batches):
        total.update(partial)
    return total
