"""Evidence of parallel work: trace records bound to the graded call, from processes the grader
knows, weighed against the CPU time the operating system measured.

A trace record is written inside the graded processes, so on its own it proves little. It
counts here only if

- it comes from a process the grader saw in the run (``Outcome.seen.workers``: the ranks of
  its mpiexec, the workers of the pool it created, the engines it started) or from the calling
  process; a record from any other pid is a **forgery**;
- it is bound to the graded data (``Record.binding``): the graded spec or operands, the values
  of exactly the rows or documents it claims, and work units that agree with them.

Whether the processes did the work their records claim is the CPU rule's to say
(``parakit.controller.verdicts.cpurule``), from the CPU time the operating system measured.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from parakit.controller.processes import observe
from parakit.controller.processes.observe import Proc
from parakit.controller.session.outcome import Outcome
from problems.mandelbrot import Spec, row_work, serial_image, spec_digest
from problems.mandelbrot import row_digests as mandelbrot_rows
from problems.matmul import matrix_digest
from problems.matmul import row_digests as matmul_rows
from problems.trace import Record, digest

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
