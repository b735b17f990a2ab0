"""Run graded code in isolated children and bring back one :class:`Outcome` per case.

A *job* is one graded function with a list of *cases* (argument tuples). The job runs in one
child (``grader.child``) so that the start-up cost (mpiexec, a pool, a cluster connection) is paid
once, yet every case keeps its own verdict: the harness watches the result files appear, gives
each case its own timeout, and when a case hangs or crashes the child, it records that case's
failure, kills the whole process tree, and starts a new child for the cases after it.
"""

from __future__ import annotations

import importlib.util
import os
import pickle
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grader import observe, proctree, wire
from grader.child import (
    ERROR,
    IMPORT_ERROR,
    LEAKED,
    LIMIT,
    MISSING_FUNCTION,
    MISSING_MODULE,
    NOT_IMPLEMENTED,
    OK,
    RUNNER_ABORT,
)
from problems import trace

if TYPE_CHECKING:
    from grader.ipp_cluster import SessionCluster

TIMEOUT, CRASHED = "timeout", "crashed"
# Failures that will repeat identically for every later case: no point restarting for them.
FINAL = {NOT_IMPLEMENTED, MISSING_MODULE, MISSING_FUNCTION, IMPORT_ERROR}
KIT_ROOT = Path(__file__).resolve().parent.parent
_POLL = 0.005  # seconds between looks at a running child


@dataclass(frozen=True)
class Target:
    """The graded package: a directory of modules named like ``student/``."""

    directory: Path
    package: str  # import name: the directory's name
    display: str  # how messages name it, e.g. "student"

    @classmethod
    def resolve(cls, spec: str, root: Path = KIT_ROOT) -> Target:
        """``student``, ``reference`` or a path to a directory; ValueError says what is wrong."""
        path = Path(spec).expanduser()
        if spec in ("student", "reference") and not path.exists():
            path = root / spec
        if not path.is_dir():
            raise ValueError(f"--target {spec}: no such directory (expected student, reference "
                             "or the path of a directory holding hello.py, matmul.py, ...)")
        path = path.resolve()
        if not path.name.isidentifier():
            raise ValueError(f"--target {spec}: the directory name {path.name!r} is not a valid "
                             "Python package name; rename it (e.g. submission_1)")
        if path.name in ("problems", "grader", "tests") or path.name in sys.stdlib_module_names:
            raise ValueError(f"--target {spec}: the directory name {path.name!r} would shadow "
                             "another module; rename it (e.g. submission)")
        clash = _installed_elsewhere(path)
        if clash:
            raise ValueError(f"--target {spec}: the directory name {path.name!r} is also the "
                             f"name of an installed package ({clash}); the graded code would "
                             f"import your folder in its place (or the other way round): "
                             "rename the directory (e.g. submission)")
        display = spec.rstrip("/") if not Path(spec).is_absolute() else str(path)
        return cls(path, path.name, display)


def _installed_elsewhere(path: Path) -> str:
    """Where a module named like the target is installed, if not the target itself ('' if
    none). The kit's own student/ and reference/ may be shadowed: the child never imports them.
    """
    if path.name in ("student", "reference"):
        return ""
    try:
        spec = importlib.util.find_spec(path.name)
    except (ImportError, ValueError):
        return ""
    if spec is None:
        return ""
    where = spec.origin if spec.origin not in (None, "namespace") else \
        next(iter(spec.submodule_search_locations or []), None)
    if where is None or Path(where).resolve().is_relative_to(path):
        return ""
    return str(where)


@dataclass(frozen=True)
class Runtime:
    """What every graded run needs, resolved once per session by the plugin."""

    target: Target
    timeout: float  # seconds per case
    mpiexec: tuple[str, ...]  # launcher and the flags it needs, e.g. ("mpiexec",)
    workdir: Path  # where job directories go
    connect_timeout: float = 60.0
    mpi_error: str = ""  # why MPI cannot run here (no mpiexec), if it cannot
    limits: Limits = field(default_factory=lambda: Limits())
    run_as: tuple[int, int] | None = None  # uid, gid of graded processes (--run-as); None: ours


def hand_over(jobdir: Path, run_as: tuple[int, int] | None) -> None:
    """Give a new job folder and all in it to the ``--run-as`` user, before any graded process
    starts: graded code works on its arguments and writes its results and traces there, and
    nowhere else of ours."""
    if run_as is not None:
        for path in [jobdir, *jobdir.rglob("*")]:
            os.lchown(path, *run_as)


def read_job_file(path: Path) -> str:
    """A text file of a job folder ('' if there is none that may be read): graded code could
    have replaced it, so never through a link (``grader.wire.read_untrusted``)."""
    try:
        return wire.read_untrusted(path).decode(errors="replace")
    except (OSError, wire.WireError):
        return ""


@dataclass(frozen=True)
class Limits:
    """Resource limits of every graded process (0: no limit)."""

    memory: int = 2 << 30  # bytes of address space per process (RLIMIT_AS)
    cpu: int = 300  # CPU seconds per process (RLIMIT_CPU)
    output: int = 1 << 20  # bytes of stdout and of stderr kept per child


@dataclass
class Outcome:
    """What one case of a graded call produced."""

    status: str  # ok, not_implemented, error, missing_*, import_error, crashed, timeout
    message: str = ""
    values: dict[int, Any] = field(default_factory=dict)  # rank (0 for pool/ipp) -> value
    pids: dict[int, int] = field(default_factory=dict)  # rank -> pid (0: the calling process)
    records: list[trace.Record] = field(default_factory=list)
    details: str = ""  # traceback, stacks, output tail: what a student needs to dig in
    seconds: float = 0.0
    seen: observe.Seen = field(default_factory=lambda: observe.Seen())  # from outside

    @property
    def ok(self) -> bool:
        return self.status == OK

    @property
    def value(self) -> Any:
        return self.values.get(0)


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of every graded child: one BLAS/OpenMP thread, unbuffered, headless."""
    env = dict(os.environ)
    pythonpath = [str(KIT_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env.update({
        "PYTHONPATH": os.pathsep.join(pythonpath),
        "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1", "MPLBACKEND": "Agg",
    })
    env.pop(trace.ENV_VAR, None)
    env.update(extra or {})
    return env


def detect_mpiexec(command: str | None = None) -> tuple[str, ...]:
    """The MPI launcher, with ``--oversubscribe`` for Open MPI (more ranks than cores)."""
    if command:
        return tuple(shlex.split(command))
    exe = shutil.which("mpiexec", path=os.pathsep.join([str(Path(sys.executable).parent),
                                                         os.environ.get("PATH", "")]))
    if exe is None:
        raise RuntimeError("mpiexec not found: install the kit with `pip install -e .` (it brings "
                           "the mpich wheel) or put an MPI's mpiexec on PATH, or pass --mpiexec")
    try:
        version = subprocess.run([exe, "--version"], capture_output=True, text=True,
                                 timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        version = ""
    if "Open MPI" in version or "OpenRTE" in version:
        flags = ["--oversubscribe"] + (["--allow-run-as-root"] if os.getuid() == 0 else [])
        return (exe, *flags)
    return (exe,)


def mpi_command(launcher: Sequence[str], ranks: int, module_args: list[str]) -> list[str]:
    """``mpiexec -n ranks python -m mpi4py <module_args>``: an uncaught exception aborts all."""
    return [*launcher, "-n", str(ranks), sys.executable, "-m", "mpi4py", *module_args]


_FRAME = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+) in (?P<func>\S+)')


def read_stacks(jobdir: Path, target: Target) -> str:
    """One line per process that dumped its stack: where it was, in the graded code if possible.

    faulthandler prints the innermost frame first; we name the first frame inside the graded
    package (with its source line), else the innermost frame.
    """
    lines = []
    for path in sorted(jobdir.glob("stack-*.txt")):
        text = read_job_file(path).splitlines()
        if len(text) < 2:
            continue
        label, frames = text[0], [m for m in map(_FRAME.search, text[1:]) if m]
        if not frames:
            continue
        inside = [m for m in frames if Path(m["file"]).resolve().is_relative_to(target.directory)]
        m = (inside or frames)[0]
        where = f"{_display_path(m['file'], target)}:{m['line']} in {m['func']}"
        # Source lines of the graded package only: a stack file is written by graded code, and
        # could name any file the grader can read (the hidden tests).
        source = _source_line(m["file"], int(m["line"])) if inside else ""
        lines.append(f"  {label}: {where}" + (f": {source}" if source else ""))
    return "\n".join(lines)


def _display_path(file: str, target: Target) -> str:
    path = Path(file).resolve()
    if path.is_relative_to(target.directory):
        return f"{target.display}/{path.relative_to(target.directory)}"
    return file


def _source_line(file: str, line: int) -> str:
    try:
        return Path(file).read_text(errors="replace").splitlines()[line - 1].strip()
    except (OSError, IndexError):
        return ""


class Job:
    """One graded function over a list of cases, run in as few children as possible."""

    def __init__(self, rt: Runtime, backend: str, module: str, function: str,
                 cases: list[dict], workers: int, engines: Sequence[int] = (), **extra: Any):
        self.rt, self.backend, self.workers = rt, backend, workers
        self.engines = tuple(engines)  # pids of the session cluster's engines (ipp)
        self.spec = {"backend": backend, "module": module, "function": function,
                     "workers": workers, "target_dir": str(rt.target.directory),
                     "package": rt.target.package, "display": rt.target.display,
                     "connect_timeout": rt.connect_timeout,
                     "memory_limit": rt.limits.memory, "cpu_limit": rt.limits.cpu, **extra}
        self.cases = cases
        self.ranks = workers if backend == "mpi" else 1

    def command(self, jobdir: Path) -> list[str]:
        runner = ["-m", "grader.child", str(jobdir)]
        if self.backend == "mpi":
            return mpi_command(self.rt.mpiexec, self.workers, runner)
        return [sys.executable, *runner]

    def run(self) -> list[Outcome]:
        if self.backend == "mpi" and self.rt.mpi_error:
            return [Outcome(CRASHED, self.rt.mpi_error) for _ in self.cases]
        outcomes: list[Outcome] = []
        while len(outcomes) < len(self.cases):
            first = len(outcomes)
            outcomes.extend(self._run_child(first))
            last = outcomes[-1]
            rest = len(self.cases) - len(outcomes)
            if last.status in FINAL:  # the same for every case: do not restart
                outcomes.extend(Outcome(last.status, last.message, details=last.details)
                                for _ in range(rest))
            elif last.status == TIMEOUT:  # a hang costs one timeout per job, not one per case
                first_line = last.message.splitlines()[0]
                outcomes.extend(Outcome(TIMEOUT, f"not run: {first_line} on an earlier case "
                                        "of the same run") for _ in range(rest))
        return outcomes

    def _run_child(self, first: int) -> list[Outcome]:
        """Run cases ``first...`` in one child until they finish or one of them fails hard."""
        jobdir = Path(tempfile.mkdtemp(prefix=f"{self.backend}-{self.spec['function']}-",
                                       dir=self.rt.workdir))
        cases = self.cases[first:]
        for i in range(len(cases)):
            (jobdir / f"trace-{i}").mkdir()
        sent = [{**case, "args": wire.store_arguments(tuple(case["args"]), i, jobdir)}
                for i, case in enumerate(cases)]
        (jobdir / "job.pkl").write_bytes(pickle.dumps({**self.spec, "cases": sent}))
        hand_over(jobdir, self.rt.run_as)
        env = child_env({"MPIEXEC_TIMEOUT": str(int(self.rt.timeout * len(cases) + 30))})
        child = proctree.Child(self.command(jobdir), env, cwd=jobdir, outdir=jobdir,
                               output_limit=self.rt.limits.output, user=self.rt.run_as)
        watch = observe.Observer(self.backend, child, jobdir, self.engines,
                                 self.ranks if self.backend == "mpi" else 0)
        outcomes: list[Outcome] = []
        deadline = time.monotonic() + self.rt.timeout
        case_start = time.monotonic()
        while len(outcomes) < len(cases):
            watch.poll(len(outcomes))
            done = self._collect(jobdir, len(outcomes), cases[len(outcomes)], child)
            if done is not None:
                done.seen = watch.finish_case()
                if done.seen.ranks:  # the ranks' pids as the launcher numbered them
                    done.pids = dict(done.seen.ranks)
                done.seconds = time.monotonic() - case_start
                if self.backend == "mpi" and done.status == ERROR:
                    done = self._aborted_elsewhere(child, done)
                outcomes.append(done)
                deadline = time.monotonic() + self.rt.timeout
                case_start = time.monotonic()
                if not done.ok and (done.status in FINAL or self.backend == "mpi"):
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
                child.dump_stacks(also=self.engines)
                outcomes.append(self._timed_out(child, jobdir, len(outcomes)))
                break
            time.sleep(_POLL)
        # Leftovers are judged only after an orderly end: after a hang or a crash the job's
        # own processes (stuck pool workers, aborting ranks) are still being torn down.
        orderly = bool(outcomes) and outcomes[-1].status not in (TIMEOUT, CRASHED) and \
            (self.backend != "mpi" or outcomes[-1].ok)
        left = self._leftovers(child) if orderly else []
        child.stop()  # with every process that appeared below the grader since it started
        if left:
            self._fail_leaked(outcomes, left)
        note = child.note_truncation()
        if note and outcomes:
            outcomes[-1].details = (outcomes[-1].details + "\n" + note).strip()
        return outcomes

    def _collect(self, jobdir: Path, i: int, case: dict, child: proctree.Child) -> Outcome | None:
        """The outcome of case ``i`` once its result files are there (all ranks, or a failure).

        Results are read as data only (``grader.wire``); anything unreadable is the graded
        call's failure. The inputs are checked here, from outside the graded process.
        """
        files = [jobdir / f"result-{i}-{r}.json" for r in range(self.ranks)]
        results = {}
        for r, f in enumerate(files):
            if f.exists():
                try:
                    results[r] = _checked_record(wire.read_json(f), r)
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
            where = f" on rank {bad['rank']}" if self.backend == "mpi" and self.ranks > 1 else ""
            details = str(bad.get("traceback", ""))
            if bad["status"] in FINAL:
                message = str(bad["message"])
            elif bad["status"] == LIMIT or bad.get("unsupported"):
                message = f"{self.spec['function']}{where} {bad['message']}"
            else:
                message = f"{self.spec['function']} raised {bad['message']}{where}"
            return Outcome(bad["status"], message, records=records, details=details)
        changed = self._changed_inputs(case, i, jobdir, results)
        if changed:
            return Outcome(ERROR, f"{self.spec['function']} {changed}", records=records)
        try:
            values = {r: wire.decode(res.get("value"), jobdir) for r, res in results.items()}
        except wire.WireError as exc:
            return Outcome(ERROR, f"{self.spec['function']} returned a value the grader cannot "
                                  f"read: {exc}", records=records)
        if self.backend == "mpi":
            pids = {r: res["pid"] for r, res in results.items()}
        else:  # the process the harness started runs the call: known from outside
            pids = {0: child.popen.pid}
        return Outcome(OK, values=values, pids=pids, records=records)

    def _aborted_elsewhere(self, child: proctree.Child, failed: Outcome) -> Outcome:
        """A rank that raised an MPI error may only be the echo of another rank's MPI_Abort
        (a collective broken by the abort): then the abort is the cause to report."""
        if "MPI" not in failed.message or child.wait(2.0) is None:
            return failed
        child.stop()  # the output capture is complete once the tree is gone
        said = child.output("stdout") + "\n" + child.output("stderr")
        theirs = [m for m in _ABORT.finditer(said) if int(m["code"]) != RUNNER_ABORT]
        if not theirs:  # only the runner's own abort after the error: the error is the cause
            return failed
        message = (f"{self.spec['function']} did not return: rank {theirs[0]['rank']} called "
                   f"MPI_Abort (error code {theirs[0]['code']})")
        return Outcome(CRASHED, message, records=failed.records, details=_output_section(child),
                       seen=failed.seen)

    def _changed_inputs(self, case: dict, i: int, jobdir: Path, results: dict) -> str:
        """What the call changed in its inputs ('' if nothing): array arguments from the files
        the harness reads itself, the others from the digests the runner sends back."""
        args = tuple(case["args"])
        changed = wire.changed_arguments(args, i, jobdir)
        ranks = results if case.get("everywhere") else {0: results.get(0, {})}
        for res in ranks.values():
            digests = res.get("arg_digests") or []
            changed += [j for j, (arg, got) in enumerate(zip(args, digests, strict=False))
                        if got is not None and got != wire.digest(arg)]
        if not changed:
            return ""
        j = min(changed)
        return (f"modified its input argument {j + 1} ({type(args[j]).__name__}) in place; "
                "work on a copy, the caller's data must stay as it was")

    def _leftovers(self, child: proctree.Child) -> list[str]:
        """Processes the graded code started and left running ("pid cmdline"), found from
        outside: the child's tree, new descendants of the grader (orphans come back here, see
        proctree.become_subreaper) and processes carrying its tag, less the child's own."""
        own = child.own_processes(levels=2 if self.backend == "mpi" else 0)
        return [proctree.describe(p) for p in child.tree() if p.pid not in own]

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

    def _crashed(self, child: proctree.Child, jobdir: Path, i: int, code: int) -> Outcome:
        said = child.output("stdout") + "\n" + child.output("stderr")  # mpiexec uses both
        msg = f"{self.spec['function']} did not return: {describe_death(code, said, self)}"
        return Outcome(CRASHED, msg, records=trace.read(jobdir / f"trace-{i}"),
                       details=_output_section(child))

    def _timed_out(self, child: proctree.Child, jobdir: Path, i: int) -> Outcome:
        stacks = read_stacks(jobdir, self.rt.target)
        msg = f"{self.spec['function']} did not finish within {self.rt.timeout:g} s (timeout)"
        if stacks:
            msg += "\nwhere each process was when it was stopped:\n" + stacks
        return Outcome(TIMEOUT, msg, records=trace.read(jobdir / f"trace-{i}"),
                       details=_output_section(child))


def _checked_record(data: dict, rank: int) -> dict:
    """A result record with the fields the harness relies on, of the right types."""
    status = data.get("status")
    if not isinstance(status, str):
        raise wire.WireError("the result has no status")
    record = {"status": status, "rank": rank,
              "message": str(data.get("message", ""))[:20000],
              "traceback": str(data.get("traceback", ""))[:20000],
              "unsupported": bool(data.get("unsupported", False)),
              "value": data.get("value"),
              "pid": data.get("pid") if isinstance(data.get("pid"), int) else -1}
    digests = data.get("arg_digests")
    record["arg_digests"] = [d if isinstance(d, str) else None for d in digests] \
        if isinstance(digests, list) else []
    return record


def _output_section(child: proctree.Child) -> str:
    parts = []
    for name in ("stdout", "stderr"):
        text = child.output(name).strip()
        if text:
            parts.append(f"--- {name} of the graded run (last lines) ---\n{text}")
    return "\n".join(parts)


_SIGNALS = {signal.SIGSEGV: "a segmentation fault", signal.SIGKILL: "SIGKILL",
            signal.SIGXCPU: "the CPU time limit", signal.SIGABRT: "an abort (SIGABRT)",
            signal.SIGBUS: "a bus error"}
_ABORT = re.compile(r"rank (?P<rank>\d+) in comm \d+\): application called MPI_Abort\(\S+, "
                    r"(?P<code>-?\d+)\)")
_EXIT_STRING = re.compile(r"EXIT STRING: (?P<what>.+?) \(signal (?P<signal>\d+)\)")


def describe_death(code: int, output: str, job: Job) -> str:
    """Why a child ended without results, in a student's words (MPICH's and POSIX's clues)."""
    cpu = job.rt.limits.cpu
    where = _crash_site(output, job.rt.target)
    if m := _ABORT.search(output):
        return f"rank {m['rank']} called MPI_Abort (error code {m['code']}){where}"
    if m := _EXIT_STRING.search(output):
        sig = int(m["signal"])
        if sig == signal.SIGXCPU:
            return f"a rank exceeded the CPU time limit of {cpu} s{where}"
        if sig == signal.SIGKILL:  # mpiexec kills the other ranks when one exits early
            return ("a rank ended without returning (sys.exit, os._exit, or killed with SIGKILL, "
                    "e.g. out of memory); the other ranks were stopped")
        return f"a rank was killed by {_SIGNALS.get(sig, m['what'])} (signal {sig}){where}"
    if code < 0 and -code == signal.SIGXCPU:
        return f"the process exceeded the CPU time limit of {cpu} s{where}"
    if code < 0:
        return f"the process was killed by {_SIGNALS.get(-code, f'signal {-code}')}{where}"
    if job.backend == "mpi":
        return (f"a rank exited with status {code} without returning (sys.exit, os._exit "
                "or a crash?); the other ranks were stopped")
    return f"the process running it exited with status {code} before sending back a result"


def _crash_site(output: str, target: Target) -> str:
    """' at student/x.py:12 in f' from the stack Python prints on a fatal error, or ''."""
    if "Fatal Python error" not in output:
        return ""
    for m in map(_FRAME.search, output[output.index("Fatal Python error"):].splitlines()):
        if m and Path(m["file"]).resolve().is_relative_to(target.directory):
            return f" at {_display_path(m['file'], target)}:{m['line']} in {m['func']}"
    return ""


def run_job(rt: Runtime, backend: str, module: str, function: str, cases: list[dict],
            workers: int, engines: Sequence[int] = (), **extra: Any) -> list[Outcome]:
    """Run ``function`` of the target's ``module`` on every case; one Outcome per case."""
    return Job(rt, backend, module, function, cases, workers, engines, **extra).run()


def run_module(rt: Runtime, module: str, ranks: int) -> Outcome:
    """Run the target's ``module`` as a program under mpiexec; the value is its stdout."""
    if not (rt.target.directory / f"{module}.py").is_file():
        return Outcome(MISSING_MODULE, f"{rt.target.display}/{module}.py does not exist")
    jobdir = Path(tempfile.mkdtemp(prefix=f"run-{module}-", dir=rt.workdir))
    cmd = mpi_command(rt.mpiexec, ranks, ["-m", f"{rt.target.package}.{module}"])
    env = child_env({"PYTHONPATH": os.pathsep.join([str(rt.target.directory.parent),
                                                    child_env()["PYTHONPATH"]]),
                     "MPIEXEC_TIMEOUT": str(int(rt.timeout + 30))})
    # Unbuffered, print() writes the text and the newline separately and mpiexec may glue
    # lines of different ranks together; buffered, each flushed line is one write.
    env.pop("PYTHONUNBUFFERED")
    hand_over(jobdir, rt.run_as)
    child = proctree.Child(cmd, env, cwd=jobdir, outdir=jobdir, output_limit=rt.limits.output,
                           user=rt.run_as)
    code = child.wait(rt.timeout)
    child.stop()
    stdout = read_job_file(jobdir / "stdout.txt")
    shown = f"mpiexec -n {ranks} python -m {rt.target.package}.{module}"
    if code is None:
        return Outcome(TIMEOUT, f"`{shown}` did not finish within {rt.timeout:g} s",
                       details=child.output("stderr"))
    if code != 0:
        err = child.output("stderr")
        stub = _stub_in_traceback(err, rt.target)
        if stub:
            return Outcome(NOT_IMPLEMENTED, f"not implemented yet: {stub}")
        return Outcome(CRASHED, f"`{shown}` failed with exit code {code}", values={0: stdout},
                       details=err)
    return Outcome(OK, values={0: stdout})


class Grading:
    """The grader tests' entry point: runs jobs on any backend and caches their outcomes.

    Tests that share a run (e.g. one test per matrix shape, all shapes run in one child per
    worker count) ask for the same key and get the cached outcomes.
    """

    def __init__(self, rt: Runtime, cluster: SessionCluster):
        self.rt, self.cluster = rt, cluster
        self._cache: dict[tuple, list[Outcome]] = {}
        self._hung: dict[tuple, str] = {}  # (backend, module, function) -> what hung

    def run(self, backend: str, module: str, function: str, cases: list[dict], workers: int,
            key: tuple | None = None, **extra: Any) -> list[Outcome]:
        """Outcomes of ``function`` on ``cases``; with ``key``, computed once per session."""
        full_key = (backend, module, function, workers, key, tuple(sorted(extra.items())))
        if key is not None and full_key in self._cache:
            return self._cache[full_key]
        hung = self._hung.get((backend, module, function))
        if hung:  # one hang per function per session: the next would most likely hang too
            return [Outcome(TIMEOUT, f"not run: {hung}") for _ in cases]
        if backend == "ipp":
            try:
                extra["connection_file"] = self.cluster.connection_file()
            except RuntimeError as exc:
                return [Outcome(CRASHED, str(exc)) for _ in cases]
            extra["clear_engines"] = self.cluster.owned  # the child clears them, not us
            self.cluster.reset()
        engines = self.cluster.engines if backend == "ipp" else ()
        outcomes = run_job(self.rt, backend, module, function, cases, workers, engines, **extra)
        if backend == "ipp" and any(o.status in (TIMEOUT, CRASHED) for o in outcomes):
            self.cluster.needs_restart = True  # an engine may still be busy with the stuck task
        timeouts = [o for o in outcomes if o.status == TIMEOUT and not o.message.startswith("not")]
        if timeouts:
            self._hung[(backend, module, function)] = (
                f"{function} hung with {workers} workers earlier in this run "
                f"({timeouts[0].message.splitlines()[0]})")
        if key is not None:
            self._cache[full_key] = outcomes
        return outcomes

    def run_module(self, module: str, ranks: int) -> Outcome:
        """The target's module run as a program under mpiexec (cached)."""
        key = ("program", module, ranks)
        if key not in self._cache:
            hung = self._hung.get(("program", module))
            if self.rt.mpi_error:
                self._cache[key] = [Outcome(CRASHED, self.rt.mpi_error)]
            elif hung:  # as for functions: one hang per program and session
                self._cache[key] = [Outcome(TIMEOUT, f"not run: {hung}")]
            else:
                outcome = run_module(self.rt, module, ranks)
                if outcome.status == TIMEOUT:
                    self._hung[("program", module)] = (f"it hung with {ranks} processes earlier "
                                                       f"in this run ({outcome.message})")
                self._cache[key] = [outcome]
        return self._cache[key][0]


def _stub_in_traceback(stderr: str, target: Target) -> str:
    """``"student/hello.py greeting"`` when a program died of the stub's NotImplementedError."""
    if "NotImplementedError" not in stderr:
        return ""
    frames = [m for m in map(_TB_FRAME.search, stderr.splitlines()) if m
              and Path(m["file"]).resolve().is_relative_to(target.directory)]
    if not frames:
        return ""
    # Several ranks' tracebacks may interleave on stderr: the innermost frame of a function,
    # not a module's top level, names the stub.
    inner = [m for m in frames if m["func"] != "<module>"] or frames
    return f"{_display_path(inner[-1]['file'], target)} {inner[-1]['func']}"


_TB_FRAME = re.compile(r'File "(?P<file>[^"]+)", line \d+, in (?P<func>\S+)')
