"""Grading from a notebook: ``from grader import check; check("mandelbrot")``.

The course's material is notebooks, and ipyparallel is notebook-first. ``check`` runs the same
grading as ``pytest grader`` in a subprocess (graded code never runs in the notebook's kernel,
and a hang there cannot freeze it), then shows the score per exercise and one line per failed
test. It returns a :class:`Checked` with the numbers, for a notebook that wants them.
"""

from __future__ import annotations

import json
import select
import subprocess
import sys
import tempfile
import time
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
        if show:
            print(f"checking {target} on {exercise or 'every exercise'}: the grading of "
                  "`pytest grader` in a process of its own (a dot per test passed, F failed; "
                  "the first ipyparallel test starts a cluster, a few seconds)", flush=True)
        output = _run(cmd, timeout, show)
        checked = _read(target, report, output)
    if show:
        print(checked)
    return checked


def _run(cmd: list[str], timeout: float, show: bool) -> str:
    """``cmd``'s output; with ``show``, its progress echoed as it comes (up to pytest's first
    section, the score and failures, which ``check`` prints itself)."""
    proc = subprocess.Popen(cmd, cwd=KIT_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline, chunks, shown = time.monotonic() + timeout, [], 0 if show else None
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            proc.kill()
            proc.wait()
            return f"grading took longer than {timeout:g} s"
        if select.select([proc.stdout], [], [], min(left, 1.0))[0]:
            chunk = proc.stdout.read1(1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
            if shown is not None:
                text = b"".join(chunks).decode(errors="replace")
                end = text.find("\n=")  # pytest's first ==== section: check shows the rest
                print(text[shown:] if end < 0 else text[shown:end + 1], end="", flush=True)
                shown = len(text) if end < 0 else None
    proc.wait()
    return b"".join(chunks).decode(errors="replace")


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
