"""Work traces: which process ran which piece of work, and how much.

The kit's work kernels (``problems.matmul.multiply``, ``problems.mandelbrot.compute_rows``,
``problems.wordcount.count_file``) call :func:`record`. When tracing is on, each call appends one
JSON line to ``trace-{pid}.jsonl`` in the trace directory; the grader reads those files to see
where the work ran, independently of anything the graded code returns or prints.

Tracing is off unless a directory is set, with :func:`set_directory` (the grader's child runner
does this per graded call, also in pool workers and ipyparallel engines) or the environment
variable ``PARAKIT_TRACE_DIR``. Off, :func:`record` costs one dictionary lookup.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ENV_VAR = "PARAKIT_TRACE_DIR"
_directory: str | None = None


def set_directory(path: str | os.PathLike | None) -> None:
    """Trace into ``path`` from now on in this process (``None``: fall back to the env var)."""
    global _directory
    _directory = None if path is None else os.fspath(path)


def directory() -> str | None:
    """The directory traces go to in this process, or ``None`` when tracing is off."""
    return _directory or os.environ.get(ENV_VAR) or None


@dataclass(frozen=True)
class Record:
    """One traced kernel call."""

    kernel: str
    task: object  # JSON-able identifier of the piece of work (rows, a path, ...)
    units: float  # deterministic work measure (flops, iterations, bytes)
    pid: int
    host: str
    start: float  # time.time() at entry
    end: float
    cpu: float  # process CPU seconds spent in the call


@dataclass
class Pending:
    """The record being written: set ``units`` inside the ``with`` block if known only then."""

    units: float


@contextmanager
def record(kernel: str, task: object, units: float = 0.0) -> Iterator[Pending]:
    """Trace the enclosed work as one record (no-op when tracing is off).

    ``with record("k", task=rows) as rec: ...; rec.units = work`` sets units known only at the end.
    """
    pending = Pending(units)
    where = directory()
    if where is None:
        yield pending
        return
    start, cpu = time.time(), time.process_time()
    yield pending
    rec = {
        "kernel": kernel,
        "task": task,
        "units": float(pending.units),
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "start": start,
        "end": time.time(),
        "cpu": time.process_time() - cpu,
    }
    # One write per record on an O_APPEND descriptor: lines never interleave, a crash loses
    # at most the record being written.
    line = (json.dumps(rec) + "\n").encode()
    fd = os.open(Path(where, f"trace-{os.getpid()}.jsonl"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def read(path: str | os.PathLike) -> list[Record]:
    """All records under the trace directory ``path``, in start order (torn lines skipped)."""
    records = []
    for file in sorted(Path(path).glob("trace-*.jsonl")):
        for line in file.read_text().splitlines():
            try:
                records.append(Record(**json.loads(line)))
            except (ValueError, TypeError):
                continue
    return sorted(records, key=lambda r: r.start)
