"""The grader tests' entry point: graded calls and programs on any backend, cached per session.

Tests that share a run (one test per matrix shape, all shapes run in one child per worker
count) ask for the same key and get the same outcomes. A call that hangs costs its timeout and
nothing else, until the grading's time for hangs is spent (``runtime.HangBudget``); from then
on a function or program that hung is not run again.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from parakit.controller.processes.launch import Child
from parakit.controller.session import source
from parakit.controller.session.jobs import run_job
from parakit.controller.session.outcome import CRASHED, TIMEOUT, Outcome
from parakit.controller.session.runtime import Runtime, child_env, hand_over, read_job_file
from parakit.controller.verdicts import diagnose
from parakit.worker import MISSING_MODULE, NOT_IMPLEMENTED, OK

ONE_CHILD_FOR_ALL_COUNTS = ("pool", "ipp")  # MPI: the launcher fixes the count per child


def run_module(rt: Runtime, module: str, ranks: int) -> Outcome:
    """Run the target's ``module`` as a program under mpiexec; the value is its stdout."""
    if not (rt.target.directory / f"{module}.py").is_file():
        return Outcome(MISSING_MODULE, f"{rt.target.display}/{module}.py does not exist")
    jobdir = Path(tempfile.mkdtemp(prefix=f"run-{module}-", dir=rt.workdir))
    cmd = rt.backends["mpi"].program(f"{rt.target.package}.{module}", ranks)
    env = child_env({"PYTHONPATH": os.pathsep.join([str(rt.target.directory.parent),
                                                    child_env()["PYTHONPATH"]]),
                     "MPIEXEC_TIMEOUT": str(int(rt.call_timeout() + 30))})
    # Unbuffered, print() writes the text and the newline separately and mpiexec may glue
    # lines of different ranks together; buffered, each flushed line is one write.
    env.pop("PYTHONUNBUFFERED")
    hand_over(jobdir, rt.run_as)
    child = Child(cmd, env, cwd=jobdir, outdir=jobdir, output_limit=rt.limits.output,
                           user=rt.run_as)
    timeout = rt.call_timeout()
    code = child.wait(timeout)
    child.stop()
    rt.backends["mpi"].sweep(child)  # what is left of it on other hosts
    stdout = read_job_file(jobdir / "stdout.txt")
    shown = f"mpiexec -n {ranks} python -m {rt.target.package}.{module}"
    if code is None:
        return Outcome(TIMEOUT, f"`{shown}` did not finish within {timeout:g} s",
                       details=child.output("stderr"), seconds=timeout)
    if code != 0:
        err = child.output("stderr")
        stub = diagnose.stub_in_traceback(err, rt.target)
        if stub:
            return Outcome(NOT_IMPLEMENTED, f"not implemented yet: {stub}")
        return Outcome(CRASHED, f"`{shown}` failed with exit code {code}", values={0: stdout},
                       details=err)
    if rt.backends["mpi"].labels_lines:  # which rank printed each line, from the launcher
        return Outcome(OK, values=by_rank(stdout))
    return Outcome(OK, values={0: stdout})


_LABEL = re.compile(r"^\[(\d+)\] ?(.*?)(?:\[\d+\] ?)?$")  # hydra may repeat it at the end


def by_rank(labelled: str) -> dict[int, str]:
    """The lines of a labelled output (``[rank] text``) by rank, in order; a line without a
    label (not the launcher's) goes to rank -1."""
    lines: dict[int, list[str]] = {}
    for line in labelled.splitlines():
        m = _LABEL.match(line)
        rank, text = (int(m[1]), m[2]) if m else (-1, line)
        if text.strip():
            lines.setdefault(rank, []).append(text)
    return {rank: "\n".join(texts) for rank, texts in sorted(lines.items())}


class Grading:
    """Runs jobs on any backend of the session and caches their outcomes."""

    def __init__(self, rt: Runtime):
        self.rt = rt
        self._cache: dict[tuple, list[Outcome]] = {}
        self._hung: set[tuple] = set()  # (backend, module, function) or ("program", module)

    def run(self, backend: str, module: str, function: str,
            cases: list[dict] | Callable[[int], list[dict]], workers: int,
            key: tuple | str | None = None, **extra: Any) -> list[Outcome]:
        """Outcomes of ``function`` on ``cases`` (a list, or the list for a worker count);
        with ``key``, computed once per session.

        Pool and ipyparallel runs with a key do every worker count of the session in one
        child the first time one is asked for: a child costs an interpreter, imports and (for
        ipyparallel) a connection, and each case still gets its own pool or view of its size.
        """
        cases_at = cases if callable(cases) else (lambda n: cases)
        full_key = self._key(backend, module, function, workers, key, extra)
        if key is not None and full_key in self._cache:
            return self._cache[full_key]
        if (backend, module, function) in self._hung and self.rt.hangs.exhausted:
            return [Outcome(TIMEOUT, self.rt.hangs.why_not_run()) for _ in cases_at(workers)]
        known = source.verdict(self.rt.target.directory / f"{module}.py",
                               f"{self.rt.target.display}/{module}.py", function)
        if known:  # missing, unparsable or a stub: nothing to start
            return [Outcome(*known) for _ in cases_at(workers)]
        counts = self.rt.worker_counts
        if key is None or backend not in ONE_CHILD_FOR_ALL_COUNTS or workers not in counts:
            counts = (workers,)
        batches = [[{**case, "workers": n} for case in cases_at(n)] for n in counts]
        outcomes = run_job(self.rt, backend, module, function, sum(batches, []), max(counts),
                           **extra)
        for n, batch in zip(counts, batches, strict=True):
            mine, outcomes = outcomes[:len(batch)], outcomes[len(batch):]
            if any(o.status == TIMEOUT for o in mine):
                self._hung.add((backend, module, function))
            if key is not None:
                self._cache[self._key(backend, module, function, n, key, extra)] = mine
            if n == workers:
                found = mine
        return found

    @staticmethod
    def _key(backend: str, module: str, function: str, workers: int, key, extra: dict) -> tuple:
        return (backend, module, function, workers, key, tuple(sorted(extra.items())))

    def run_module(self, module: str, ranks: int) -> Outcome:
        """The target's module run as a program under mpiexec (cached)."""
        key = ("program", module, ranks)
        if key not in self._cache:
            unavailable = self.rt.backends["mpi"].unavailable
            if unavailable:
                self._cache[key] = [Outcome(CRASHED, unavailable)]
            elif ("program", module) in self._hung and self.rt.hangs.exhausted:
                self._cache[key] = [Outcome(TIMEOUT, self.rt.hangs.why_not_run())]
            else:
                outcome = run_module(self.rt, module, ranks)
                if outcome.status == TIMEOUT:
                    self._hung.add(("program", module))
                    self.rt.hangs.charge(outcome.seconds or 0.0, f"{module}.py with {ranks} "
                                                                 "processes")
                self._cache[key] = [outcome]
        return self._cache[key][0]
