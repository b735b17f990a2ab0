"""``parakit grade``: many submissions graded a few at once, each in a ``pytest`` process of its
own with a time limit; a gradebook (CSV) and each one's reports.

A run that crashes or overruns its limit has its whole process tree killed and becomes a
visible zero with its output kept, so one broken or hanging submission never stops the batch.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from parakit import KIT_ROOT as KIT
from parakit import sandbox
from parakit.controller import proctree, reports

NOT_IMPLEMENTED = "not implemented yet"
PICTURES = KIT / "grader-results" / "pictures"  # where pytest grader puts its pictures


@dataclass
class Graded:
    """The outcome of grading one submission."""

    name: str
    exercises: dict[str, tuple[float, float]] = field(default_factory=dict)  # got, possible
    tests: list[dict] = field(default_factory=list)  # Gradescope's tests[]
    seconds: float = 0.0
    errors: str = ""  # why grading itself went wrong (empty when the run completed)
    reportdir: Path | None = None

    @property
    def total(self) -> float:
        return sum(got for got, _ in self.exercises.values())

    @property
    def possible(self) -> float:
        return sum(p for _, p in self.exercises.values())

    def failed(self) -> dict[str, str]:
        """Test name -> failure message."""
        return {t["name"]: t.get("output", "") for t in self.tests if t["status"] != "passed"}


def package_of(submission: Path) -> Path:
    """The graded package of a submission: ``SUB/student`` for a whole repository, else SUB."""
    if (submission / "student").is_dir():
        return submission / "student"
    return submission


def _kill_tree(pid: int) -> None:
    """The pytest run and everything it started (ranks sit in sessions of their own)."""
    procs = []
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        pass
    procs += proctree.tagged(proctree.OWNER_VAR, str(pid))
    proctree.terminate({p.pid: p for p in procs}.values())


def grade_one(name: str, submission: Path, outdir: Path, pytest_args: Sequence[str] = (),
              timeout: float = 1800, sandboxed: bool = False,
              others: Sequence[Path] = ()) -> Graded:
    """Grade one submission in a ``pytest`` subprocess; reports go to ``outdir``.
    ``sandboxed``: in a sandbox of its own (``parakit.sandbox``), which does not see
    ``others`` (the report folders of the other gradings of the batch)."""
    outdir.mkdir(parents=True, exist_ok=True)
    result = Graded(name, reportdir=outdir)
    gradescope, classroom = outdir / "results.json", outdir / "classroom.json"
    for stale in (gradescope, classroom):
        stale.unlink(missing_ok=True)
    source = package_of(Path(submission))
    start = time.monotonic()
    # The package is graded under a fixed, valid name, whatever the submission's folder is called.
    work = Path(tempfile.mkdtemp(prefix="parakit-grade-"))
    try:
        if not source.is_dir():
            raise FileNotFoundError(f"{submission}: no such directory")
        staged = work / "submission"
        shutil.copytree(source, staged, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        run_as = any(arg.startswith("--run-as") for arg in pytest_args)
        if run_as:
            work.chmod(0o755)  # the --run-as user reads the staged copy (never writes it)
        cmd = [sys.executable, "-m", "pytest", str(KIT / "grader"), "-p", "no:cacheprovider",
               "-q", "--target", str(staged), f"--grade-json={gradescope}",
               f"--classroom-json={classroom}", f"--junitxml={outdir / 'junit.xml'}",
               *pytest_args]
        if sandboxed:  # its pictures go with its reports, not to the kit's shared folder
            (outdir / "pictures").mkdir(exist_ok=True)
            cmd = sandbox.wrap(cmd, write=[outdir, (outdir / "pictures", PICTURES)],
                               read=[work], hide=others, privileged=run_as)
        with open(outdir / "output.txt", "wb") as log:
            proc = subprocess.Popen(cmd, cwd=KIT, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True,
                                    env={**os.environ, "PYTEST_ADDOPTS": ""})
            try:
                code = proc.wait(timeout)
            except subprocess.TimeoutExpired:
                _kill_tree(proc.pid)
                proc.wait()
                code = None
        left = proctree.tagged(proctree.OWNER_VAR, str(proc.pid))
        if left:  # the grader's own cleanup missed them: never let them outlive the batch
            proctree.terminate(left)
        if code is None:
            result.errors = f"grading took longer than {timeout:g} s and was stopped"
        elif code not in (0, 1):
            last = reports.short_message(reports_tail(outdir / "output.txt"))
            result.errors = f"pytest exited with code {code}: {last}"
    except OSError as exc:
        result.errors = f"could not grade: {exc}"
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result.seconds = time.monotonic() - start
    if result.errors or not gradescope.exists():
        result.errors = result.errors or "the grader wrote no report"
        reports.error_reports(result.errors, gradescope, classroom, result.seconds)
    data = json.loads(gradescope.read_text())
    result.tests = data.get("tests", [])
    for test in result.tests:
        exercise = (test.get("tags") or ["?"])[0]
        got, possible = result.exercises.get(exercise, (0.0, 0.0))
        result.exercises[exercise] = (got + test["score"], possible + test["max_score"])
    return result


def reports_tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


def grade_many(submissions: Sequence[tuple[str, Path]], outdir: Path,
               pytest_args: Sequence[str] = (), jobs: int = 1, timeout: float = 1800,
               progress: Callable[[str], None] | None = None,
               sandboxed: bool = True) -> list[Graded]:
    """Grade every ``(name, path)``; ``jobs`` at once. Results in the order given.
    ``sandboxed``: each grading in a sandbox of its own where the machine allows it."""
    progress = progress or (lambda line: print(line, file=sys.stderr, flush=True))
    why = sandbox.unavailable() if sandboxed else ""
    if why:
        progress(f"{why}: gradings run side by side can see each other (docs/robustness.md)")
    sandboxed = sandboxed and not why
    if sandboxed:
        PICTURES.mkdir(parents=True, exist_ok=True)
        for name, _ in submissions:  # each grading hides the others' report folders
            (outdir / name).mkdir(parents=True, exist_ok=True)
    done: dict[str, Graded] = {}
    lock = threading.Lock()
    width = max((len(n) for n, _ in submissions), default=4)
    start = time.monotonic()

    def one(name: str, path: Path) -> Graded:
        others = [outdir / n for n, _ in submissions if n != name] if sandboxed else []
        return grade_one(name, path, outdir / name, pytest_args, timeout, sandboxed, others)

    progress(f"grading {len(submissions)} submission(s), {jobs} at a time; reports in {outdir}")
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(one, name, path): name for name, path in submissions}
        for future in as_completed(futures):
            graded = future.result()
            with lock:
                done[graded.name] = graded
                note = f"  ERROR: {graded.errors}" if graded.errors else ""
                progress(f"[{len(done):>{len(str(len(submissions)))}}/{len(submissions)}] "
                         f"{graded.name:<{width}}  {graded.total:>6g} / {graded.possible:<6g} "
                         f"{graded.seconds:6.1f} s  (elapsed {time.monotonic() - start:.0f} s)"
                         f"{note}")
    return [done[name] for name, _ in submissions]


def write_gradebook(path: Path, graded: Sequence[Graded]) -> Path:
    """CSV: submission, points per exercise, total, possible, failed tests, seconds, errors."""
    exercises: list[str] = []
    for g in graded:
        exercises += [e for e in g.exercises if e not in exercises]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["submission", *exercises, "total", "possible", "failed", "seconds",
                      "errors"])
        for g in graded:
            out.writerow([g.name, *(f"{g.exercises.get(e, (0, 0))[0]:g}" for e in exercises),
                          f"{g.total:g}", f"{g.possible:g}", len(g.failed()),
                          f"{g.seconds:.1f}", g.errors])
    return path


def names(paths: Sequence[Path]) -> list[tuple[str, Path]]:
    """A unique, file-system-safe name per submission (its folder's name)."""
    named, seen = [], set()
    for path in paths:
        base = re.sub(r"[^\w.-]", "_", Path(path).resolve().name) or "submission"
        name, i = base, 2
        while name in seen:
            name, i = f"{base}-{i}", i + 1
        seen.add(name)
        named.append((name, Path(path)))
    return named


def jobs_count(requested: int) -> int:
    cores = os.cpu_count() or 1
    if requested > cores:
        print(f"--jobs {requested}: this machine has {cores} cores; using {cores}",
              file=sys.stderr)
    return max(1, min(requested, cores))


def pytest_args(args: argparse.Namespace, keyword: str | None = None) -> list[str]:
    out = []
    expr = " and ".join(f"({k})" for k in (args.k, keyword) if k)
    if expr:
        out += ["-k", expr]
    if args.workers:
        out += ["--workers", str(args.workers)]
    if args.call_timeout:
        out += ["--call-timeout", str(args.call_timeout)]
    return out + list(args.pytest_arg or [])


def gradings_contained(command: Callable[[argparse.Namespace], int]):
    """Run a command that starts gradings as a child subreaper: graded code that escaped a
    ``pytest`` which was killed (its time limit) comes back here, not to init, and whatever is
    left when the command ends is ended with it."""

    def contained(args: argparse.Namespace) -> int:
        proctree.become_subreaper()
        began = time.time()
        try:
            return command(args)
        finally:
            proctree.end_all(str(os.getpid()), since=began)
    return contained


