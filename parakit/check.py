"""Grading from a notebook: ``from grader import check; check("mandelbrot")``.

The course's material is notebooks, and ipyparallel is notebook-first. ``check`` runs the same
grading as ``pytest grader`` in a subprocess (graded code never runs in the notebook's kernel,
and a hang there cannot freeze it), then shows the score per exercise and one line per failed
test. It returns a :class:`Checked` with the numbers, for a notebook that wants them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from parakit import KIT_ROOT


@dataclass
class Checked:
    """What one ``check`` found."""

    target: str
    exercises: dict[str, tuple[float, float]] = field(default_factory=dict)  # got, possible
    failures: dict[str, str] = field(default_factory=dict)  # test -> its message
    error: str = ""  # why there is no score (the grading itself did not run)

    @property
    def score(self) -> float:
        return sum(got for got, _ in self.exercises.values())

    @property
    def possible(self) -> float:
        return sum(possible for _, possible in self.exercises.values())

    def __str__(self) -> str:
        if self.error:
            return f"no score for {self.target}: {self.error}"
        width = max(len(e) for e in [*self.exercises, "total"])
        lines = [f"{e:<{width}}  {got:>5g} / {possible:g}"
                 for e, (got, possible) in self.exercises.items()]
        lines.append(f"{'total':<{width}}  {self.score:>5g} / {self.possible:g}")
        for test, message in self.failures.items():
            lines.append(f"FAILED {test}: {message.splitlines()[0] if message else ''}")
        return "\n".join(lines)


def check(exercise: str | None = None, target: str = "student", workers: int | None = None,
          show: bool = True, timeout: float = 1800) -> Checked:
    """Grade ``target`` (``student``, ``reference`` or a folder) on one exercise (``hello``,
    ``matmul``, ``mandelbrot``, ``wordcount``; None: all) in a subprocess; print the result
    unless ``show`` is False, and return it. ``workers``: the largest process count."""
    if target not in ("student", "reference"):
        target = str(Path(target).expanduser().resolve())  # the notebook's folder, not the kit's
    with tempfile.TemporaryDirectory(prefix="parakit-check-") as tmp:
        report = Path(tmp, "results.json")
        cmd = [sys.executable, "-m", "pytest", "grader", "-p", "no:cacheprovider", "-q",
               "--target", target, f"--grade-json={report}"]
        cmd += ["-k", exercise] if exercise else []
        cmd += ["--workers", str(workers)] if workers else []
        try:
            done = subprocess.run(cmd, cwd=KIT_ROOT, capture_output=True, text=True,
                                  timeout=timeout, stdin=subprocess.DEVNULL)
            output = done.stdout + done.stderr
        except subprocess.TimeoutExpired:
            output = f"grading took longer than {timeout:g} s"
        checked = _read(target, report, output)
    if show:
        print(checked)
    return checked


def _read(target: str, report: Path, output: str) -> Checked:
    checked = Checked(target)
    try:
        data = json.loads(report.read_text())
    except (OSError, ValueError):
        lines = [line for line in output.strip().splitlines() if line.strip()]
        checked.error = lines[-1] if lines else "the grader wrote no report"
        return checked
    for test in data.get("tests", []):
        exercise = (test.get("tags") or ["?"])[0]
        got, possible = checked.exercises.get(exercise, (0.0, 0.0))
        checked.exercises[exercise] = (got + test["score"], possible + test["max_score"])
        if test["status"] != "passed":
            # "matmul: test_matmul[pool-square]": the test's own name is enough here
            checked.failures[test["name"].rpartition(": ")[2]] = test.get("output", "")
    if not checked.exercises:
        checked.error = data.get("output") or "no graded test ran"
    return checked
