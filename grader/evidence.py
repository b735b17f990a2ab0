"""Evidence of parallel work: trace records bound to the graded call, from processes the grader
knows, weighed against the CPU time the operating system measured.

A trace record is written inside the graded processes, so on its own it proves little. It
counts here only if

- it comes from a process the grader saw in the run (``Outcome.seen.workers``: the ranks of
  its mpiexec, the workers of the pool it created, the engines it started) or from the calling
  process; a record from any other pid is a **forgery**;
- it is bound to the graded data (``Record.binding``): the graded spec or operands, the values
  of exactly the rows or documents it claims, and work units that agree with them.

For pool and ipyparallel runs, the CPU time of the calling process and of each worker comes
from the operating system (``grader.observe``): runs whose CPU went to the calling process, not
to the workers, did not run in parallel, whatever their trace says (:class:`CpuTally`).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from grader.harness import Outcome
from problems.mandelbrot import Spec, row_work, serial_image, spec_digest
from problems.mandelbrot import row_digests as mandelbrot_rows
from problems.matmul import matrix_digest
from problems.matmul import row_digests as matmul_rows
from problems.trace import Record, digest

# Judging by CPU time, summed over every run of a graded function (the OS counts CPU time in
# ticks of 10 ms, too coarse for one small run): the work takes SERIAL seconds of CPU when the
# grader does it itself; the workers must have used at least WORKER_SHARE of that, unless the
# calling process used less than CALLER_SHARE of it (then the work ran nowhere we can see,
# and the trace checks decide). Judged only when SERIAL_MIN seconds of work were graded.
WORKER_SHARE = 0.25  # the kit's workers use 1 to 2 times the serial CPU time
CALLER_SHARE = 0.5  # a calling process that did the work used the serial CPU time or more
SERIAL_MIN = 0.1

# Why a record does not count, as the failure messages say it.
FORGED = "forged"  # from a process that is not one of the run's workers


@dataclass
class Evidence:
    """The records of one kernel in one graded call, sorted by whether they count."""

    valid: list[Record] = field(default_factory=list)
    rejected: dict[str, list[Record]] = field(default_factory=dict)  # reason -> records
    caller: int | None = None  # pid of the calling process (pool, ipp), None for MPI
    workers: dict[int, str] = field(default_factory=dict)  # known workers: pid -> label

    def by_pid(self) -> dict[int, list[Record]]:
        out: dict[int, list[Record]] = defaultdict(list)
        for r in self.valid:
            out[r.pid].append(r)
        return dict(out)

    def label(self, pid: int) -> str:
        if pid == self.caller:
            return f"the calling process (pid {pid})"
        return self.workers.get(pid, f"pid {pid}")

    def rejections(self) -> str:
        """One sentence per reason records were not counted ('' if all counted)."""
        parts = []
        for why, records in self.rejected.items():
            pids = sorted({r.pid for r in records})
            shown = ", ".join(map(str, pids[:4])) + (", ..." if len(pids) > 4 else "")
            if why == FORGED:
                parts.append(f"{len(records)} trace record(s) come from processes that are "
                             f"not workers of this run (pid {shown}): the grader counts only "
                             "work done by the kit's kernel in the processes it started")
            else:
                parts.append(f"{len(records)} kernel call(s) did not count: {why}")
        return "; ".join(parts)


def sort_records(outcome: Outcome, kernel: str, backend: str,
                 unbound: Callable[[Record], str]) -> Evidence:
    """Sort the kernel's records of ``outcome``: ``unbound(record)`` says why a record is not
    bound to the graded data ('' if it is)."""
    caller = outcome.pids.get(0) if backend in ("pool", "ipp", "plain") else None
    evidence = Evidence(caller=caller, workers=dict(outcome.seen.workers))
    known = set(evidence.workers) | ({caller} if caller is not None else set())
    for record in outcome.records:
        if record.kernel != kernel:
            continue
        if evidence.workers and record.pid not in known:
            why = FORGED  # no worker known (a user's own cluster): pids cannot be checked
        else:
            why = unbound(record)
        if why:
            evidence.rejected.setdefault(why, []).append(record)
        else:
            evidence.valid.append(record)
    return evidence


def serial_cpu(function: Callable, *args) -> float:
    """CPU seconds this thread spends on ``function(*args)``: what the work costs serially."""
    start = time.thread_time()
    function(*args)
    return time.thread_time() - start


@dataclass
class CpuTally:
    """CPU time of the calling process and of the workers over the runs of one function, from
    the operating system, against what the same work costs serially."""

    caller: float = 0.0
    workers: float = 0.0
    serial: float = 0.0
    runs: int = 0

    def add(self, outcome: Outcome, serial: float) -> None:
        seen = outcome.seen
        if seen.caller_cpu is None or not seen.workers:  # MPI, or not observed
            return
        self.caller += seen.caller_cpu
        self.workers += sum(seen.cpu.values())
        self.serial += serial
        self.runs += 1

    def verdict(self) -> str:
        """'' or the sentence that says the calling process did the work, not its workers."""
        if self.serial < SERIAL_MIN or self.workers >= WORKER_SHARE * self.serial \
                or self.caller < CALLER_SHARE * self.serial:
            return ""
        return (f"over its {self.runs} runs the calling process used {self.caller:.2f} s of CPU "
                f"time and the workers {self.workers:.2f} s together (measured by the operating "
                f"system), while the work takes {self.serial:.2f} s serially: it ran in the "
                "calling process, whatever the trace says")


# -- what binds a record to the graded data, per kernel ------------------------------------------

def mandelbrot_binding(spec: Spec) -> Callable[[Record], str]:
    """compute_rows records count for ``spec`` only: its digest, rows of the image, each row's
    values those of the serial image, units the work of those rows."""
    want = spec_digest(spec)
    digests = mandelbrot_rows(serial_image(spec))
    work = row_work(spec)

    def unbound(record: Record) -> str:
        binding = record.binding if isinstance(record.binding, dict) else {}
        if binding.get("spec") != want:
            return "compute_rows ran on another spec than the graded one (pass on the spec " \
                   "you were given, unchanged)"
        rows = record.task
        if not (isinstance(rows, list) and all(isinstance(k, int) and 0 <= k < spec.h
                                               for k in rows)):
            return f"compute_rows was called for rows outside 0..{spec.h - 1}"
        if binding.get("rows") != [digests[k] for k in rows]:
            return "their results are not the values of the rows they name"
        if record.units != float(work[rows].sum()):
            return "their work units disagree with the work of their rows"
        return ""
    return unbound


def matmul_binding(A: np.ndarray, B: np.ndarray) -> Callable[[Record], str]:
    """multiply records count for this product only: B itself, rows of A, units rows*k*n."""
    want_b = matrix_digest(B)
    rows_of_a = set(matmul_rows(A))

    def unbound(record: Record) -> str:
        binding = record.binding if isinstance(record.binding, dict) else {}
        if binding.get("B") != want_b:
            return "multiply() got another matrix than the graded B"
        rows = binding.get("rows")
        if not (isinstance(rows, list) and all(isinstance(d, str) for d in rows)
                and set(rows) <= rows_of_a):
            return "multiply() got rows that are not rows of the graded A"
        if record.units != float(len(rows) * B.size):
            return "their work units disagree with the rows multiplied"
        return ""
    return unbound


def matmul_rows_done(evidence: Evidence, A: np.ndarray) -> Counter:
    """How many times each row of A (by index) went through a valid multiply record."""
    index: dict[str, list[int]] = defaultdict(list)
    for i, d in enumerate(matmul_rows(A)):
        index[d].append(i)
    done: Counter = Counter()
    for record in evidence.valid:
        for d in record.binding["rows"]:
            for i in index[d]:  # equal rows of A are the same work: count each
                done[i] += 1
    return done


@lru_cache(maxsize=32)
def _documents(paths: tuple[str, ...]) -> dict[str, tuple[str, float]]:
    """Digest and size of each graded document that exists (read once per session)."""
    want = {}
    for path in paths:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            continue
        want[path] = (digest(data), float(len(data)))
    return want


def wordcount_binding(paths: list[str]) -> Callable[[Record], str]:
    """count_file records count for the graded documents only, with their content and size."""
    want = _documents(tuple(paths))

    def unbound(record: Record) -> str:
        binding = record.binding if isinstance(record.binding, dict) else {}
        if not isinstance(record.task, str) or record.task not in want:
            return "count_file counted files that are not among the graded documents"
        content, size = want[record.task]
        if binding.get("content") != content or record.units != size:
            return "count_file counted another content than the graded document's"
        return ""
    return unbound
