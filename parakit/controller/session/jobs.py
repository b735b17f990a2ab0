"""Run graded code in isolated children and bring back one :class:`Outcome` per case.

A *job* is one graded function with a list of *cases* (argument tuples). The job runs in one
child (``parakit.worker.grade``), launched by its backend, so that the start-up cost (mpiexec,
a pool, a cluster connection) is paid once, yet every case keeps its own verdict: the job
watches the result files appear, gives each case its own timeout, and when a case hangs or
crashes the child, it records that case's failure, kills the whole process tree, and starts a
new child for the cases after it (after a hang, while the grading's time for hangs lasts:
``runtime.HangBudget``).
"""

from __future__ import annotations

import pickle
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from parakit import wire
from parakit.controller.processes import observe, proctree
from parakit.controller.processes.launch import Child
from parakit.controller.session.backend import Backend, BackendError
from parakit.controller.session.outcome import CRASHED, FINAL, TIMEOUT, Outcome
from parakit.controller.session.runtime import (
    MPICH_IDLE,
    Runtime,
    child_env,
    describe_args,
    hand_over,
)
from parakit.controller.verdicts import diagnose
from parakit.worker import ERROR, LEAKED, LIMIT, OK, RUNNER_ABORT
from problems import trace

PASSING = 0.5  # seconds a process found after a job may take to end on its own

RUNNER = "parakit.worker.grade"
_POLL = 0.005  # seconds between looks at a running child


class Job:
    """One graded function over a list of cases, run in as few children as possible."""

    def __init__(self, rt: Runtime, backend: Backend, module: str, function: str,
                 cases: list[dict], workers: int, **extra: Any):
        self.rt, self.backend, self.workers = rt, backend, workers
        self.mpi = backend.name == "mpi"  # ranks that abort together; MPICH's clues
        self.spec = {"backend": backend.name, "module": module, "function": function,
                     "workers": workers, "target_dir": str(rt.target.directory),
                     "package": rt.target.package, "display": rt.target.display,
                     "connect_timeout": rt.connect_timeout,
                     "memory_limit": rt.limits.memory, "cpu_limit": rt.limits.cpu, **extra}
        self.cases = cases
        self.ranks = backend.result_ranks(workers)

    def run(self) -> list[Outcome]:
        """One outcome per case: a case that fails hard ends its child, the next starts anew."""
        outcomes: list[Outcome] = []
        while len(outcomes) < len(self.cases):
            first = len(outcomes)
            outcomes.extend(self._run_child(first))
            last = outcomes[-1]
            rest = len(self.cases) - len(outcomes)
            if last.status in FINAL:  # the same for every case: do not restart
                outcomes.extend(Outcome(last.status, last.message, details=last.details)
                                for _ in range(rest))
            elif last.status == TIMEOUT:  # a hang costs itself: the rest runs in a new child
                self.rt.hangs.charge(last.seconds or 0.0, self.describe(len(outcomes) - 1))
                if self.rt.hangs.exhausted:  # ... while the grading's time for hangs lasts
                    outcomes.extend(Outcome(TIMEOUT, self.rt.hangs.why_not_run())
                                    for _ in range(rest))
        return outcomes

    def describe(self, i: int) -> str:
        """Case ``i`` in words: ``f on (a 3x5 array, a 5x2 array) with 2 workers``."""
        case = self.cases[i]
        n = case.get("workers", self.workers)
        return (f"{self.spec['function']} on ({describe_args(case['args'])}) with {n} "
                f"worker{'s' if n != 1 else ''}")

    def _run_child(self, first: int) -> list[Outcome]:
        """Run cases ``first...`` in one child until they finish or one of them fails hard."""
        jobdir = Path(tempfile.mkdtemp(prefix=f"{self.backend.name}-{self.spec['function']}-",
                                       dir=self.rt.workdir))
        cases = self.cases[first:]
        for i in range(len(cases)):
            (jobdir / f"trace-{i}").mkdir()
        sent = [{**case, "args": wire.store_arguments(tuple(case["args"]), i, jobdir)}
                for i, case in enumerate(cases)]
        (jobdir / "job.pkl").write_bytes(pickle.dumps({**self.spec, "cases": sent}))
        hand_over(jobdir, self.rt.run_as)
        # TMPDIR: the graded code's temporary files go with the job folder
        env = child_env({"MPIEXEC_TIMEOUT": str(int(self.rt.timeout * len(cases) + 30)),
                         "TMPDIR": str(jobdir), **MPICH_IDLE},  # waiting ranks sleep
                        scheduler=self.backend.schedules)
        command = self.backend.command(["-m", RUNNER, str(jobdir)], self.workers)
        child = Child(command, env, cwd=jobdir, outdir=jobdir,
                               output_limit=self.rt.limits.output, user=self.rt.run_as)
        watch = self.backend.observer(child, jobdir, self.workers)
        outcomes: list[Outcome] = []
        timeout = self.rt.call_timeout()
        deadline = time.monotonic() + timeout
        case_start = time.monotonic()
        while len(outcomes) < len(cases):
            watch.poll(len(outcomes))
            done = self._collect(jobdir, len(outcomes), cases[len(outcomes)], child)
            if done is not None:
                done.seen = watch.finish_case()
                if done.seen.ranks:  # the ranks' pids as the launcher numbered them
                    done.pids = dict(done.seen.ranks)
                done.seconds = time.monotonic() - case_start
                if self.mpi and done.status == ERROR:
                    done = self._aborted_elsewhere(child, done)
                outcomes.append(done)
                timeout = self.rt.call_timeout()
                deadline = time.monotonic() + timeout
                case_start = time.monotonic()
                if not done.ok and (done.status in FINAL or self.mpi):
                    break  # an MPI job aborts after a failed case; a final failure repeats
                continue
            code = child.popen.poll()
            if code is not None:
                child.stop()  # let the output capture finish before reading it
                done = self._collect(jobdir, len(outcomes), cases[len(outcomes)], child) or \
                    self._crashed(child, jobdir, len(outcomes), code)
                outcomes.append(done)
                break
            if time.monotonic() > deadline:
                # other hosts first: the local dump then waits for every process's stack
                self.backend.dump_stacks(child)
                child.dump_stacks(also=self.backend.engines)
                outcomes.append(self._timed_out(child, jobdir, len(outcomes), timeout,
                                                first + len(outcomes)))
                break
            time.sleep(_POLL)
        observe.answer(jobdir / "released")  # MPI ranks wait for it after their last result
        # Leftovers are judged only after an orderly end: after a hang or a crash the job's
        # own processes (stuck pool workers, aborting ranks) are still being torn down.
        orderly = bool(outcomes) and outcomes[-1].status not in (TIMEOUT, CRASHED) and \
            (not self.mpi or outcomes[-1].ok)
        left = self._leftovers(child, outcomes[-1].seen) if orderly else []
        child.stop()  # with every process that appeared below the grader since it started
        self.backend.sweep(child)  # and what is left of it on other hosts
        if left:
            self._fail_leaked(outcomes, left)
        note = child.note_truncation()
        if note and outcomes:
            outcomes[-1].details = (outcomes[-1].details + "\n" + note).strip()
        # Everything is read: the arguments and results of a large case would stay in the
        # session's folder (memory, where /tmp is a tmpfs, as in the sandbox) until its end.
        shutil.rmtree(jobdir, ignore_errors=True)
        return outcomes

    def _collect(self, jobdir: Path, i: int, case: dict, child: Child) -> Outcome | None:
        """The outcome of case ``i`` once its result files are there (all ranks, or a failure).

        Results are read as data only (``parakit.wire``); anything unreadable is the graded
        call's failure. The inputs are checked here, from outside the graded process.
        """
        files = [jobdir / f"result-{i}-{r}.json" for r in range(self.ranks)]
        results = {}
        for r, f in enumerate(files):
            if f.exists():
                try:
                    limit = wire.MAX_RESULT_BYTES if r == 0 else wire.MAX_SIDE_RESULT_BYTES
                    results[r] = wire.checked_record(wire.read_json(f, limit), r,
                                                       observe.HOST)
                except wire.WireError as exc:
                    return Outcome(ERROR, f"{self.spec['function']}: the grader cannot read "
                                          f"its result: {exc}")
        # A failed rank aborts the whole MPI job, so its result alone settles the case.
        failed = [res for res in results.values() if res["status"] != OK]
        if len(results) < self.ranks and not failed:
            return None
        records = trace.read(jobdir / f"trace-{i}")
        if failed:
            bad = min(failed, key=lambda res: res["rank"])
            where = f" on rank {bad['rank']}" if self.ranks > 1 else ""
            details = str(bad.get("traceback", ""))
            if bad["status"] in FINAL:
                message = str(bad["message"])
            elif bad["status"] == LIMIT or bad.get("unsupported"):
                message = f"{self.spec['function']}{where} {bad['message']}"
            else:
                message = f"{self.spec['function']} raised {bad['message']}{where}"
            return Outcome(bad["status"], message, records=records, details=details)
        changed = wire.changed_inputs(case, i, jobdir, results)
        if changed:
            return Outcome(ERROR, f"{self.spec['function']} {changed}", records=records)
        over = self.rt.results.take(wire.result_bytes(jobdir, i))  # once per case: it ends here
        if over:
            return Outcome(ERROR, f"{self.spec['function']}: {over}", records=records)
        try:  # an array from a rank but 0 is never graded: not read (64 MiB a rank adds up)
            values = {r: wire.decode(res.get("value"), jobdir) for r, res in results.items()
                      if r == 0 or not _is_array(res.get("value"))}
        except wire.WireError as exc:
            return Outcome(ERROR, f"{self.spec['function']} returned a value the grader cannot "
                                  f"read: {exc}", records=records)
        if self.mpi:  # as the ranks say, until the observer has seen them (_run_child)
            pids = {r: (res["host"], res["pid"]) for r, res in results.items()}
        else:  # the process the job started runs the call: known from outside
            pids = {0: observe.here(child.popen.pid)}
        return Outcome(OK, values=values, pids=pids, records=records)

    def _aborted_elsewhere(self, child: Child, failed: Outcome) -> Outcome:
        """A rank that raised an MPI error may only be the echo of another rank's MPI_Abort
        (a collective broken by the abort): then the abort is the cause to report."""
        if "MPI" not in failed.message or child.wait(2.0) is None:
            return failed
        child.stop()  # the output capture is complete once the tree is gone
        said = child.output("stdout") + "\n" + child.output("stderr")
        theirs = [m for m in diagnose.ABORT.finditer(said) if int(m["code"]) != RUNNER_ABORT]
        if not theirs:  # only the runner's own abort after the error: the error is the cause
            return failed
        message = (f"{self.spec['function']} did not return: rank {theirs[0]['rank']} called "
                   f"MPI_Abort (error code {theirs[0]['code']})")
        return Outcome(CRASHED, message, records=failed.records,
                       details=diagnose.output_section(child), seen=failed.seen)

    def _leftovers(self, child: Child, seen: observe.Seen) -> list[str]:
        """Processes the graded code started and left running ("pid cmdline"), found from
        outside: the child's tree, new descendants of the grader (orphans come back here, see
        proctree.become_subreaper) and processes carrying its tag, less the child's own; and
        on other hosts, what the backend finds there."""
        own = child.own_processes(levels=self.backend.launcher_levels)
        found = [p for p in child.tree() if p.pid not in own]
        if found:  # "left running" means still there a moment later, not passing through (an
            time.sleep(PASSING)  # engine's own `uname -p`): look again at the whole tree, so
            found = [p for p in child.tree() if p.pid not in own]  # a copy under a new pid counts
        return [proctree.describe(p) for p in found] + self.backend.leftovers(child, seen)

    def _fail_leaked(self, outcomes: list[Outcome], left: list[str]) -> None:
        """Every case of the run that returned fails: a process of the graded code outlived it
        (which case started it cannot be told from outside)."""
        shown = "; ".join(left[:3])
        message = (f"{self.spec['function']} left {len(left)} process(es) running after it "
                   f"returned ({shown}): join or terminate every process you start")
        for i, outcome in enumerate(outcomes):
            if outcome.ok:
                outcomes[i] = Outcome(LEAKED, message, records=outcome.records,
                                      seconds=outcome.seconds)

    def _crashed(self, child: Child, jobdir: Path, i: int, code: int) -> Outcome:
        said = child.output("stdout") + "\n" + child.output("stderr")  # mpiexec uses both
        why = diagnose.describe_death(code, said, self.rt.target, self.rt.limits.cpu, self.mpi)
        msg = f"{self.spec['function']} did not return: {why}"
        return Outcome(CRASHED, msg, records=trace.read(jobdir / f"trace-{i}"),
                       details=diagnose.output_section(child))

    def _timed_out(self, child: Child, jobdir: Path, i: int, timeout: float,
                   case: int) -> Outcome:
        stacks = diagnose.read_stacks(jobdir, self.rt.target)
        msg = f"{self.describe(case)} did not finish within {timeout:g} s (timeout)"
        if stacks:
            msg += "\nwhere each process was when it was stopped:\n" + stacks
        return Outcome(TIMEOUT, msg, records=trace.read(jobdir / f"trace-{i}"),
                       details=diagnose.output_section(child), seconds=timeout)


def _is_array(value: object) -> bool:
    return isinstance(value, dict) and value.get("kind") == "array"


def run_job(rt: Runtime, backend: str, module: str, function: str, cases: list[dict],
            workers: int, **extra: Any) -> list[Outcome]:
    """Run ``function`` of the target's ``module`` on every case with ``workers`` workers of
    ``backend`` (a name of ``rt.backends``); one Outcome per case. The backend is started
    first; if it cannot be, every case fails with the reason."""
    chosen = rt.backends[backend]
    try:
        extra = {**chosen.start(), **extra}
    except BackendError as exc:
        return [Outcome(CRASHED, str(exc)) for _ in cases]
    outcomes = Job(rt, chosen, module, function, cases, workers, **extra).run()
    if any(o.status in (TIMEOUT, CRASHED) for o in outcomes):
        chosen.failed()
    return outcomes
