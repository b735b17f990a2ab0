"""Exercise 4: map-reduce word count with three backends.

Count the words of a collection of documents (a list of file paths): the *map* step counts the
words of documents in worker processes, the *reduce* step adds the counts up to one total per
word. Count every document with ``problems.wordcount.count_file(path)``: it applies the kit's
tokenisation rule (see ``problems/wordcount.py``) and lets the grader see which process counted
which document. The result must equal ``problems.wordcount.serial_count(paths)``, a
``collections.Counter`` (word -> number of occurrences).

Things to think about:

* Send paths, not file contents, to the workers: they can open the files themselves.
* A Counter per document is a lot of data to send back and merge in one place; could each worker
  send fewer, already merged counts?
* Documents differ in size; one may be much larger than all the others.
* A path that does not exist must raise ``FileNotFoundError`` naming it, and must not hang.
"""

from __future__ import annotations

from collections import Counter

from problems.wordcount import count_file  # noqa: F401  (you will need it)


def wordcount_ipp(paths: list[str], view) -> Counter:
    """Count on the engines of an ipyparallel ``DirectView``; return the total on the client.

    The sheet's map-reduce: map (count documents) on the engines, reduce (add the counts) on the
    client. Hint: ``view.map_sync(f, sequence)`` splits ``sequence`` across the engines.
    """
    raise NotImplementedError("exercise 4: wordcount_ipp")


def wordcount_mpi(paths: list[str] | None, comm) -> Counter | None:
    """Count with mpi4py. ``paths`` is given on rank 0 (``None`` on every other rank).

    Return the total Counter on rank 0 and ``None`` on every other rank. Every rank, rank 0
    included, should count a share of the documents. Hint: ``comm.scatter`` and
    ``comm.reduce`` (lower case) send Python objects.
    """
    raise NotImplementedError("exercise 4: wordcount_mpi")


def wordcount_pool(paths: list[str], pool) -> Counter:
    """Count with a ``multiprocessing.Pool``; return the total Counter in the calling process."""
    raise NotImplementedError("exercise 4: wordcount_pool")
