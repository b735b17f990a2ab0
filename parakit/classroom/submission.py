"""One submission graded in a ``pytest`` process of its own (in a sandbox of its own where the
machine allows it) with a time limit; its reports and pictures in a folder of its own.

A run that crashes or overruns its limit has its whole process tree killed and becomes a
visible zero with its output kept, so one broken or hanging submission never stops a class.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from parakit import KIT_ROOT as KIT
from parakit import sandbox
from parakit.classroom import exports
from parakit.controller.processes import proctree
from parakit.controller.session import reports

NOT_IMPLEMENTED = "not implemented yet"
RECORDS = ".records"  # OUT/.records/NAME.json: what each grading got (OUT/NAME: its reports)


# What a grading never needs of the kit, hidden from it: the answer key (reference solutions,
# the catalogue's broken copies of them, the history that holds both). The grader reads only
# grader/, hidden/, problems/ and parakit/.
NOT_FOR_GRADINGS = ("reference", "tests", "benchmarks", ".git")


def hidden_from_grading(others: Sequence[Path], keep: Sequence[Path]) -> list[Path]:
    """The folders a sandboxed grading is not to see: the kit's answer key, and ``others``
    (the other gradings' report folders, their submissions as given), each that exists and
    holds none of ``keep`` (the grading's own folders, the kit)."""
    keep = [Path(k).resolve() for k in keep]
    found = []
    for folder in [*(KIT / name for name in NOT_FOR_GRADINGS), *_installed_reference(), *others]:
        folder = Path(folder).resolve()
        if folder.is_dir() and not any(k.is_relative_to(folder) for k in keep):
            found.append(folder)
    return found


def _installed_reference() -> list[Path]:
    """Where ``import reference`` finds the reference solutions, if not in the kit: a kit
    installed without ``-e`` has a copy of them among the installed packages."""
    try:
        spec = importlib.util.find_spec("reference")
    except (ImportError, ValueError):
        return []
    return [Path(p) for p in (spec.submodule_search_locations or [])] if spec else []


def record_path(reportdir: Path) -> Path:
    """Where the record of the grading reported in ``reportdir`` is kept: beside the report
    folders, not in one, because graded code can write its own report folder (the sandbox's
    only writable place) and a record there could be forged for a task that Slurm ends."""
    reportdir = Path(reportdir)
    return reportdir.parent / RECORDS / f"{reportdir.name}.json"


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

    def save(self) -> None:
        """Kept beside the report folders: a class graded elsewhere (a Slurm node) is read
        back, and resumed, from these."""
        path = record_path(self.reportdir)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({**asdict(self), "reportdir": str(self.reportdir)}))
        tmp.replace(path)

    @classmethod
    def load(cls, reportdir: Path) -> Graded | None:
        """The record of the grading reported in ``reportdir``, or None (none, unreadable)."""
        try:
            data = json.loads(record_path(reportdir).read_text())
            data["exercises"] = {k: tuple(v) for k, v in data["exercises"].items()}
            data["reportdir"] = Path(reportdir)
            return cls(**data)
        except (OSError, ValueError, TypeError, KeyError):
            return None

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
    ``others`` (the report folders and submissions of the other gradings of the batch) nor
    the kit's reference solutions: the submission is graded from a copy of its own."""
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
        # its pictures go with its reports, never to a folder another submission writes to
        cmd = [sys.executable, "-m", "pytest", str(KIT / "grader"), "-p", "no:cacheprovider",
               "-q", "--target", str(staged), f"--grade-json={gradescope}",
               f"--classroom-json={classroom}", f"--junitxml={outdir / 'junit.xml'}",
               f"--pictures={outdir / 'pictures'}", f"--target-name={name}", *pytest_args]
        if sandboxed:
            records = record_path(outdir).parent  # the class's records: not its to read
            records.mkdir(exist_ok=True)
            # nor the class's unpacked archives and commits (parakit.classroom.exports): its
            # own is the staged copy
            staged_class = [d for d in (outdir.parent / exports.UNPACKED,
                                        outdir.parent / exports.COMMITS) if d.is_dir()]
            hide = hidden_from_grading([*others, records, *staged_class],
                                       keep=[outdir, work, KIT / "grader"])
            cmd = sandbox.wrap(cmd, write=[outdir], read=[work], hide=hide, privileged=run_as)
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
