"""``parakit``: the instructor's commands.

- ``parakit release DEST``: the student distribution (no reference solutions, no hidden or kit
  tests), installable with ``pip install -e DEST``.
- ``parakit validate``: checks the grader itself: the reference gets full marks, the stubs get
  zero, every graded test fails for at least one broken submission of ``tests/catalogue.py``.
- ``parakit bench [PROBLEM...]``: times the serial baseline and every backend over worker
  counts and sizes; tables, JSON and plots (``grader.bench``).
- ``parakit grade SUBMISSION...``: grades many submissions, a few at once, each in its own
  ``pytest`` process with a time limit, and writes a gradebook (CSV) plus each one's reports.

Each grading is a separate ``pytest grader --target ...`` run in a new session; a run that
crashes or overruns its limit has its whole process tree killed and becomes a visible zero with
its output kept, so one broken or hanging submission never stops the batch.
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

from grader import bench, bundle, proctree, reports

KIT = Path(__file__).resolve().parent.parent
RELEASED = ["problems", "student", "grader", "docs", "conftest.py", "pyproject.toml",
            "README.md", ".gitignore"]
WORKFLOW = KIT / "ci" / "github-classroom.yml"
NOT_IMPLEMENTED = "not implemented yet"


# -- grading one submission -------------------------------------------------------------------

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
              timeout: float = 1800) -> Graded:
    """Grade one submission in a ``pytest`` subprocess; reports go to ``outdir``."""
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
        if any(arg.startswith("--run-as") for arg in pytest_args):
            work.chmod(0o755)  # the --run-as user reads the staged copy (never writes it)
        cmd = [sys.executable, "-m", "pytest", str(KIT / "grader"), "-p", "no:cacheprovider",
               "-q", "--target", str(staged), f"--grade-json={gradescope}",
               f"--classroom-json={classroom}", f"--junitxml={outdir / 'junit.xml'}",
               *pytest_args]
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
               progress: Callable[[str], None] | None = None) -> list[Graded]:
    """Grade every ``(name, path)``; ``jobs`` at once. Results in the order given."""
    progress = progress or (lambda line: print(line, file=sys.stderr, flush=True))
    done: dict[str, Graded] = {}
    lock = threading.Lock()
    width = max((len(n) for n, _ in submissions), default=4)
    start = time.monotonic()

    def one(name: str, path: Path) -> Graded:
        return grade_one(name, path, outdir / name, pytest_args, timeout)

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


def _names(paths: Sequence[Path]) -> list[tuple[str, Path]]:
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


def _jobs(requested: int) -> int:
    cores = os.cpu_count() or 1
    if requested > cores:
        print(f"--jobs {requested}: this machine has {cores} cores; using {cores}",
              file=sys.stderr)
    return max(1, min(requested, cores))


def _pytest_args(args: argparse.Namespace, keyword: str | None = None) -> list[str]:
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
        try:
            return command(args)
        finally:
            proctree.end_all(str(os.getpid()))
    return contained


@gradings_contained
def cmd_grade(args: argparse.Namespace) -> int:
    missing = [p for p in args.submissions if not Path(p).is_dir()]
    for p in missing:
        print(f"{p}: no such directory (graded as zero)", file=sys.stderr)
    graded = grade_many(_names(args.submissions), Path(args.out), _pytest_args(args),
                        _jobs(args.jobs), args.timeout)
    book = write_gradebook(Path(args.out) / "gradebook.csv", graded)
    print(book.read_text(), end="")
    print(f"gradebook: {book}", file=sys.stderr)
    return 0


# -- release ----------------------------------------------------------------------------------

def release(dest: Path, force: bool = False, kit_repo: str = "", kit_ref: str = "") -> Path:
    """Copy the student distribution to ``dest``; return it."""
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        if not force:
            raise FileExistsError(f"{dest} exists and is not empty (use --force to replace it)")
        shutil.rmtree(dest)
    dest.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in RELEASED:
        src = KIT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=ignore)
        elif src.exists():
            shutil.copy2(src, dest / name)
    (dest / "grader" / "cli.py").unlink(missing_ok=True)  # instructor commands stay home
    bundle.prune_pyproject(dest)  # only the packages it has, no instructor script
    if WORKFLOW.exists():
        text = WORKFLOW.read_text()
        if kit_repo:
            text = text.replace("INSTRUCTOR/parakit-instructor", kit_repo)
        if kit_ref:
            text = re.sub(r"(KIT_REF: ).*", rf"\g<1>{kit_ref}", text, count=1)
        workflow = dest / ".github" / "workflows" / "classroom.yml"
        workflow.parent.mkdir(parents=True, exist_ok=True)
        workflow.write_text(text)
    return dest


def cmd_release(args: argparse.Namespace) -> int:
    try:
        dest = release(Path(args.dest), args.force, args.kit_repo, args.kit_ref)
    except (FileExistsError, RuntimeError) as exc:
        print(f"parakit release: {exc}", file=sys.stderr)
        return 2
    files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    print(f"released {len(files)} files to {dest}")
    return 0


# -- validate ---------------------------------------------------------------------------------

def _catalogue():
    sys.path.insert(0, str(KIT))
    try:
        from tests.catalogue import CATALOGUE
    except ImportError as exc:
        raise SystemExit(f"parakit validate: no catalogue of broken submissions ({exc}); "
                         "validate runs in the instructor's kit, not in a release") from None
    return CATALOGUE


def validate(outdir: Path, args: argparse.Namespace, entries=None,
             say: Callable[[str], None] = print) -> list[str]:
    """Every problem found with the grader (empty: it is sound)."""
    entries = _catalogue() if entries is None else entries
    if args.quick:
        entries = [e for e in entries if not e.slow]
    if args.only:
        entries = [e for e in entries if e.name in args.only]
    base = _pytest_args(args)
    jobs = _jobs(args.jobs)
    graded: dict[str, Graded] = {}
    lock = threading.Lock()

    def one(name: str, path: Path, pytest_args: list[str]) -> None:
        g = grade_one(name, path, outdir / name, pytest_args, args.timeout)
        with lock:
            graded[name] = g
            error = f"  ERROR: {g.errors}" if g.errors else ""
            say(f"[{len(graded)}] {name}: {g.total:g} / {g.possible:g} "
                f"({len(g.failed())} failed, {g.seconds:.1f} s){error}")

    def run_all(runs: list) -> None:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            for f in [pool.submit(one, *run) for run in runs]:
                f.result()

    run_all([("reference", KIT / "reference", base), ("stubs", KIT / "student", base)])
    # Only entries whose exercise this run grades (-k may leave some out).
    names = [t["name"] for t in graded["reference"].tests]
    entries = [e for e in entries if any(f"test_{e.exercise}" in n for n in names)]
    with tempfile.TemporaryDirectory(prefix="parakit-validate-") as tmp:
        runs = []
        for entry in entries:
            extra = ["--call-timeout", "10"] if entry.slow and not args.call_timeout else []
            runs.append((entry.name, entry.build(Path(tmp)),
                         _pytest_args(args, getattr(entry, "keyword", entry.exercise))
                         + extra))
        run_all(runs)

    problems = []
    ref, stubs = graded["reference"], graded["stubs"]
    if ref.errors or not ref.tests or ref.total != ref.possible:
        problems.append(f"reference: {ref.total:g} / {ref.possible:g}, expected full marks; "
                        f"failed: {sorted(ref.failed())} {ref.errors}")
    if stubs.errors or stubs.total != 0:
        problems.append(f"stubs: {stubs.total:g} / {stubs.possible:g}, expected 0 {stubs.errors}")
    for name, message in stubs.failed().items():
        if not message.startswith(NOT_IMPLEMENTED):
            problems.append(f"stubs: {name} fails with {message.splitlines()[0]!r}, expected "
                            f"'{NOT_IMPLEMENTED}: ...'")
    caught: set[str] = set()
    for entry in entries:
        g = graded[entry.name]
        failed = g.failed()
        caught |= set(failed)
        if g.errors:
            problems.append(f"{entry.name}: grading failed: {g.errors}")
        expected = [t["name"] for t in g.tests if any(s in t["name"] for s in entry.fails)]
        for name in expected:
            if name not in failed:
                problems.append(f"{entry.name}: {name} passed, expected it to fail")
            elif entry.words not in failed[name].splitlines()[0]:
                problems.append(f"{entry.name}: {name} fails with "
                                f"{failed[name].splitlines()[0]!r}, expected {entry.words!r}")
    graded_tests = [t["name"] for t in ref.tests]
    uncaught = [name for name in graded_tests if name not in caught]
    if uncaught:
        problems.append(f"{len(uncaught)} graded test(s) fail for no broken submission of the "
                        "catalogue: " + ", ".join(uncaught))
    return problems


@gradings_contained
def cmd_validate(args: argparse.Namespace) -> int:
    outdir = Path(args.out)
    problems = validate(outdir, args)
    if problems:
        print("\nthe grader has problems:", *(f"  - {p}" for p in problems), sep="\n")
        return 1
    print(f"\nthe grader is sound: reference full marks, stubs zero, every graded test caught "
          f"by the catalogue (reports in {outdir})")
    return 0


# -- command line -----------------------------------------------------------------------------

def _grading_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-k", metavar="EXPR", help="grade only the tests matching EXPR (pytest -k)")
    p.add_argument("--workers", type=int, help="largest process count (grader --workers)")
    p.add_argument("--call-timeout", type=float, help="seconds per graded call")
    p.add_argument("--jobs", "-j", type=int, default=1,
                   help="submissions graded at once (at most the machine's cores; default 1)")
    p.add_argument("--timeout", type=float, default=1800,
                   help="seconds one whole grading may take before it is stopped (default 1800)")
    p.add_argument("--pytest-arg", action="append", metavar="ARG",
                   help="extra argument for pytest, e.g. --pytest-arg=--hidden-tests=none")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="parakit", description=__doc__.split("\n\n")[0])
    sub = top.add_subparsers(dest="command", required=True)
    p = sub.add_parser("release", help="build the student distribution in DEST")
    p.add_argument("dest")
    p.add_argument("--force", action="store_true", help="replace DEST if it is not empty")
    p.add_argument("--kit-repo", default="",
                   help="owner/name of the instructor's kit repository, written into the "
                        "release's GitHub Classroom workflow")
    p.add_argument("--kit-ref", default="",
                   help="tag or commit of the kit the workflow grades with")
    p.set_defaults(func=cmd_release)
    p = sub.add_parser("validate", help="check the grader: reference, stubs, broken submissions")
    _grading_options(p)
    p.add_argument("--out", default="grader-results/validate", help="where reports go")
    p.add_argument("--quick", action="store_true", help="leave out the hanging submissions")
    p.add_argument("--only", nargs="+", metavar="NAME", help="only these catalogue entries")
    p.set_defaults(func=cmd_validate)
    p = sub.add_parser("grade", help="grade submission directories, write a gradebook")
    p.add_argument("submissions", nargs="+", type=Path,
                   help="directories: a copy of student/, or a repository holding student/")
    _grading_options(p)
    p.add_argument("--out", default="grader-results", help="gradebook and reports (default: "
                                                           "grader-results)")
    p.set_defaults(func=cmd_grade)
    p = sub.add_parser("bench", help="time serial and parallel versions: speedup, scaling, "
                       "plots", description=bench.__doc__.split("\n\n")[0])
    bench.add_arguments(p)
    p.set_defaults(func=bench.main)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
