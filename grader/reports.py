"""Machine-readable score reports for CI: Gradescope's ``results.json`` and GitHub Classroom's
runner result.

Both are built from the same data as the score table (the plugin's :class:`Scoreboard`), so the
points always agree with what the run printed. JUnit XML comes from pytest's own ``--junitxml``.

- Gradescope: https://gradescope-autograders.readthedocs.io/en/latest/specs/ (``score``,
  ``execution_time``, ``tests[]`` with ``name``, ``score``, ``max_score``, ``status``, ``output``,
  ``visibility``).
- GitHub Classroom: the result of an autograding runner (``version: 3``, ``status``,
  ``max_score``, ``tests[]`` with ``name``, ``status``, ``score``, ``message``, ``duration``),
  as the ``classroom-resources/autograding-*`` actions write it.

This module imports nothing of pytest, so the CLI can use it to write a report for a run that
never got as far as pytest (an infrastructure error becomes a visible zero).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

VISIBILITIES = ("hidden", "after_due_date", "after_published", "visible")
MAX_OUTPUT = 4000  # characters of a failure message kept in a report


@dataclass
class TestResult:
    """One graded test as the reports show it."""

    name: str  # the pytest node id, e.g. grader/test_matmul.py::test_matmul[pool-square]
    exercise: str
    score: float
    max_score: float
    passed: bool
    output: str = ""  # the failure message: the grader's verdict, never its traceback
    duration: float = 0.0  # seconds, setup + call + teardown
    hidden: bool = False  # an instructor-only test (shown with the hidden visibility)


class ResultCollector:
    """Failure messages and durations per test, gathered from pytest's reports."""

    def __init__(self) -> None:
        self.messages: dict[str, str] = {}
        self.durations: dict[str, float] = {}

    def add(self, nodeid: str, when: str, outcome: str, duration: float, longrepr) -> None:
        self.durations[nodeid] = self.durations.get(nodeid, 0.0) + float(duration or 0.0)
        if outcome == "failed" and nodeid not in self.messages:
            message = short_message(longrepr)
            self.messages[nodeid] = message if when == "call" else f"error in {when}: {message}"
        elif outcome == "skipped" and nodeid not in self.messages:
            reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else ""
            self.messages[nodeid] = f"skipped: {reason}".rstrip(": ")

    def results(self, outcomes: Mapping[str, tuple[str, float, float]],
                hidden: Iterable[str] = ()) -> list[TestResult]:
        """One result per scored test; ``outcomes`` is ``Scoreboard.outcomes``."""
        hidden = set(hidden)
        out = []
        for nodeid, (exercise, got, points) in outcomes.items():
            passed = got >= points
            out.append(TestResult(nodeid, exercise, got, points, passed,
                                  "" if passed else self.messages.get(nodeid, "not run"),
                                  round(self.durations.get(nodeid, 0.0), 3), nodeid in hidden))
        return out


def short_message(longrepr) -> str:
    """The failure's message without the grader's traceback.

    The grader fails with ``pytest.fail(msg, pytrace=False)``, whose report is the message
    itself; anything else (an error in a fixture, an assertion in a hidden test) is reduced to
    its last line, e.g. ``AssertionError: ...``.
    """
    if longrepr is None:
        return ""
    if isinstance(longrepr, str):
        text = longrepr
    else:
        crash = getattr(longrepr, "reprcrash", None)
        text = crash.message if crash is not None else str(longrepr)
    text = text.strip().removeprefix("Failed: ")  # pytest.fail's prefix says nothing
    if len(text) > MAX_OUTPUT:
        text = text[:MAX_OUTPUT] + "\n[... cut ...]"
    return text


def _total(results: list[TestResult]) -> tuple[float, float]:
    return sum(r.score for r in results), sum(r.max_score for r in results)


def gradescope(results: list[TestResult], execution_time: float,
               hidden_visibility: str = "after_published", output: str = "") -> dict:
    """Gradescope's ``results.json``."""
    score, _ = _total(results)
    data = {
        "score": score,
        "execution_time": round(execution_time, 3),
        "output": output,
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": [{
            "name": r.name,
            "score": r.score,
            "max_score": r.max_score,
            "status": "passed" if r.passed else "failed",
            "output": r.output,
            "tags": [r.exercise] + (["hidden"] if r.hidden else []),
            "visibility": hidden_visibility if r.hidden else "visible",
            "execution_time": r.duration,
        } for r in results],
    }
    return data


def classroom(results: list[TestResult], error: str = "") -> dict:
    """GitHub Classroom's runner result (version 3)."""
    score, possible = _total(results)
    status = "error" if error else ("pass" if results and score >= possible else "fail")
    return {
        "version": 3,
        "status": status,
        "max_score": possible,
        "tests": [{
            "name": r.name,
            "status": "pass" if r.passed else "fail",
            "score": r.score,
            "message": r.output,
            "line_no": 0,
            "duration": int(round(r.duration * 1000)),  # milliseconds, as the runners write it
        } for r in results] + ([{"name": "grading", "status": "error", "score": 0,
                                 "message": error, "line_no": 0, "duration": 0}] if error else []),
    }


def write_json(path: str | os.PathLike, data: dict) -> Path:
    """Write ``data`` atomically (a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def error_reports(message: str, gradescope_path: str | None = None,
                  classroom_path: str | None = None, execution_time: float = 0.0) -> None:
    """Zero-score reports for a run that produced none (pytest crashed, timed out, ...)."""
    if gradescope_path:
        write_json(gradescope_path, {"score": 0, "execution_time": round(execution_time, 3),
                                     "output": message, "tests": []})
    if classroom_path:
        write_json(classroom_path, classroom([], error=message))
