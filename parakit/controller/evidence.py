"""Evidence of parallel work: trace records bound to the graded call, from processes the grader
knows, weighed against the CPU time the operating system measured.

A trace record is written inside the graded processes, so on its own it proves little. It
counts here only if

- it comes from a process the grader saw in the run (``Outcome.seen.workers``: the ranks of
  its mpiexec, the workers of the pool it created, the engines it started) or from the calling
  process; a record from any other pid is a **forgery**;
- it is bound to the graded data (``Record.binding``): the graded spec or operands, the values
  of exactly the rows or documents it claims, and work units that agree with them.

For pool and ipyparallel runs, the CPU time of each worker comes from the operating system
(``parakit.controller.observe``): runs whose workers used far less CPU than the work takes did
not run in them, whatever their trace says (:class:`CpuTally`).
"""

from __future__ import annotations

import os
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from threadpoolctl import threadpool_limits

from parakit.controller import observe
from parakit.controller.observe import Proc
from parakit.controller.outcome import Outcome
from problems.mandelbrot import Spec, row_work, serial_image, spec_digest
from problems.mandelbrot import row_digests as mandelbrot_rows
from problems.matmul import matrix_digest
from problems.matmul import row_digests as matmul_rows
from problems.trace import Record, digest

# The CPU rule (CpuTally) is judged only when SERIAL_MIN seconds of work were graded: the OS
# counts CPU time in ticks of 10 ms, too coarse for one small run.
SERIAL_MIN = 0.1

# Why a record does not count, as the failure messages say it.
FORGED = "forged"  # from a process that is not one of the run's workers


@dataclass
class Evidence:
    """The records of one kernel in one graded call, sorted by whether they count."""

    valid: list[Record] = field(default_factory=list)
    rejected: dict[str, list[Record]] = field(default_factory=dict)  # reason -> records
    caller: Proc | None = None  # the calling process (pool, ipp), None for MPI
    workers: dict[Proc, str] = field(default_factory=dict)  # known workers -> label

    def by_process(self) -> dict[Proc, list[Record]]:
        """The valid records of each process, keyed by (host, pid)."""
        out: dict[Proc, list[Record]] = defaultdict(list)
        for r in self.valid:
            out[r.where].append(r)
        return dict(out)

    def label(self, proc: Proc) -> str:
        if proc == self.caller:
            return f"the calling process ({observe.describe(proc)})"
        return self.workers.get(proc, observe.describe(proc))

    def rejections(self) -> str:
        """One sentence per reason records were not counted ('' if all counted)."""
        parts = []
        for why, records in self.rejected.items():
            procs = sorted({r.where for r in records})
            shown = ", ".join(map(observe.describe, procs[:4])) + (", ..." if len(procs) > 4
                                                                    else "")
            if why == FORGED:
                parts.append(f"{len(records)} trace record(s) come from processes that are "
                             f"not workers of this run ({shown}): the grader counts only "
                             "work done by the kit's kernel in the workers it gave you (the "
                             "comm's ranks, the pool's workers, the view's engines), not in "
                             "processes you started yourself, nor records written by hand")
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
        # no worker known: a user's own cluster, whose pids cannot be checked; a pool or MPI
        # run whose workers the grader never saw has nobody to vouch for its records
        if (evidence.workers or backend in ("pool", "mpi")) and record.where not in known:
            why = FORGED
        else:
            why = unbound(record)
        if why:
            evidence.rejected.setdefault(why, []).append(record)
        else:
            evidence.valid.append(record)
    return evidence


def serial_cpu(function: Callable, *args) -> float:
    """CPU seconds this thread spends on ``function(*args)``: what the work costs serially,
    with one BLAS thread as in the graded processes (``runtime.child_env``)."""
    with threadpool_limits(1):
        start = time.thread_time()
        function(*args)
        return time.thread_time() - start


@dataclass
class CpuTally:
    """Per process, the CPU time the operating system measured against the work its valid
    records claim, over the runs of one graded function.

    A record says which rows a process computed; its CPU time, measured from outside over
    windows without gaps (``parakit.controller.observe``), says whether it did. The work a
    process claims costs ``serial * claimed units / all units`` seconds, the grader's own
    serial measure. Two sums decide, each against the serial CPU of all the runs:

    - **claimed, not computed**: the CPU each process lacks for the work it claims (below
      ``CLAIMED_SHARE`` of its cost): records naming processes that did not do the work;
    - **computed, not claimed**: the CPU each process used beyond what it claims plus an
      allowance for running a call (``OVERHEAD`` seconds a case, ``OVERHEAD_SHARE`` of the
      case's work): a caller or rank 0 doing the others' work, or workers burning CPU without
      rows.

    A run whose workers the grader could not see at all (a pool ended before the grader saw
    it, no rank found) has no evidence, and fails: closed, not open.
    """

    serial: float = 0.0  # serial CPU seconds of the graded work over the counted runs
    missing: float = 0.0  # CPU seconds claimed, not measured
    unclaimed: float = 0.0  # CPU seconds measured, not claimed (beyond the allowance)
    runs: int = 0
    blind: int = 0  # runs whose workers the grader never saw
    worst_missing: tuple[float, str] = (0.0, "")  # (seconds, "who: measured vs claimed")
    worst_unclaimed: tuple[float, str] = (0.0, "")

    def add(self, outcome: Outcome, evidence: Evidence, serial: float, units: float,
            backend: str, reduce: float = 0.0) -> None:
        """Count one run: ``serial`` CPU seconds and ``units`` work units for the whole
        graded work of the run, ``evidence`` its sorted records; ``reduce``: the share of
        ``serial`` that belongs in the calling process or rank 0 (a word count's reduce)."""
        seen = outcome.seen
        if not seen.cpu:
            if backend in ("pool", "mpi"):
                self.blind += 1
            return  # ipyparallel on a user's own cluster: no engine known
        per_unit = serial / units if units > 0 else 0.0
        claims = {proc: per_unit * sum(r.units for r in recs)
                  for proc, recs in evidence.by_process().items()}
        measured = {**seen.other_cpu, **seen.cpu}
        if evidence.caller is not None and seen.caller_cpu is not None:
            measured[evidence.caller] = seen.caller_cpu
        root = evidence.caller if evidence.caller is not None else outcome.pids.get(0)
        for proc in set(measured) | set(claims):
            used, claimed = measured.get(proc, 0.0), claims.get(proc, 0.0)
            allowance = OVERHEAD[backend] + OVERHEAD_SHARE * serial + (
                reduce * serial if proc == root else 0.0)
            who = (f"{evidence.label(proc)}: {used * 1e3:.0f} ms of CPU time, work of "
                   f"{claimed * 1e3:.0f} ms claimed")
            short = max(0.0, CLAIMED_SHARE * claimed - used)
            over = max(0.0, used - claimed - allowance)
            self.missing += short
            self.unclaimed += over
            self.worst_missing = max(self.worst_missing, (short, who))
            self.worst_unclaimed = max(self.worst_unclaimed, (over, who))
        _log_cpu(backend, outcome, measured, claims, serial)
        self.serial += serial
        self.runs += 1

    def verdict(self) -> str:
        """'' or the sentence that says the work did not run where its records say."""
        if self.blind:
            return (f"in {self.blind} run(s) the grader saw none of the workers that should "
                    "have done the work (a pool ended before the call returned, or ranks that "
                    "never started the runner), so no CPU time measured by the operating "
                    "system shows that the work ran in parallel: keep the pool you were given "
                    "open until you return")
        if self.serial < SERIAL_MIN:
            return ""
        seen = (f"over its {self.runs} runs (CPU times measured by the operating system; the "
                f"work takes {self.serial:.2f} s serially)")
        if self.unclaimed > UNCLAIMED_MAX * self.serial:
            return (f"{seen}, {self.unclaimed:.2f} s of CPU time went to processes beyond the "
                    f"work their trace claims, e.g. {self.worst_unclaimed[1]}: the work did not "
                    "run in the workers the trace names (the calling process or rank 0 did "
                    "others' work), or processes burned CPU time without work")
        if self.missing > MISSING_MAX * self.serial:
            return (f"{seen}, processes claimed {self.missing:.2f} s more work than they had "
                    f"CPU time for, e.g. {self.worst_missing[1]}: the work did not run in "
                    "the workers the trace names")
        return ""


# How the CPU rule counts (measured: docs/grading.md). A process must show CLAIMED_SHARE of
# the CPU its claimed work costs serially: with the scheduler's exact count none of the
# reference's falls short at all. CPU beyond its claim counts past an allowance per process
# and run for what running a call costs: loading, messages, results; a pool's start and its
# threads (counted in ticks of 10 ms once they end); an ipyparallel client's and engine's
# handling of tasks. The reference's largest, per process and run: MPI 8.6 ms, pool 30 ms
# (ticks), ipyparallel 39 ms.
CLAIMED_SHARE = 0.5
OVERHEAD = {"mpi": 0.012, "pool": 0.045, "ipp": 0.05, "plain": 0.045}  # seconds
OVERHEAD_SHARE = 0.05  # of the run's serial CPU, per process
UNCLAIMED_MAX = 0.15  # of the serial CPU of all runs
MISSING_MAX = 0.1


def _log_cpu(backend, outcome, measured, claims, serial) -> None:
    """Calibration log (PARAKIT_CPU_LOG): one JSON line per run."""
    path = os.environ.get("PARAKIT_CPU_LOG")
    if not path:
        return
    import json
    with open(path, "a") as f:
        f.write(json.dumps({"backend": backend, "serial": serial,
                            "procs": [[str(p), measured.get(p, 0.0), claims.get(p, 0.0)]
                                      for p in set(measured) | set(claims)]}) + "\n")


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
def _documents(paths: tuple[str, ...]) -> dict[str, tuple[str, str, float]]:
    """Per graded document, by its real path: its path as given, digest and size (each
    document read once per session)."""
    want = {}
    for path in paths:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            continue
        want[os.path.realpath(path)] = (path, digest(data), float(len(data)))
    return want


def graded_document(task: object, paths: list[str]) -> str | None:
    """The graded path a count_file record names, however it was spelled (``dir/./doc``, a
    path through a link, a ``Path``: count_file records ``str(path)``), or None."""
    if not isinstance(task, str):
        return None
    found = _documents(tuple(paths)).get(os.path.realpath(task))
    return found[0] if found else None


def wordcount_binding(paths: list[str]) -> Callable[[Record], str]:
    """count_file records count for the graded documents only, with their content and size."""
    want = _documents(tuple(paths))

    def unbound(record: Record) -> str:
        if graded_document(record.task, paths) is None:
            return "count_file counted files that are not among the graded documents"
        _, content, size = want[os.path.realpath(record.task)]
        binding = record.binding if isinstance(record.binding, dict) else {}
        if binding.get("content") != content or record.units != size:
            return "count_file counted another content than the graded document's"
        return ""
    return unbound
