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
never got as far as pytest (an infrastructure error becomes a visible zero). The CI wrappers
(``ci/gradescope/run_autograder``, ``ci/github-classroom.yml``) call
``python -m parakit.controller.session.reports --pytest-exit N ...`` after pytest: a run that
did not end with exit code 0 or 1 (killed, an internal or usage error, no test collected) has its
reports replaced by a zero that says why, whatever file was found in their place (graded code
may have written one).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from parakit.controller.session.pictures import PICTURE_BYTES, with_pictures

HIDDEN_POINTS = "hidden_points.json"  # in a release's grader/: points graded by hidden tests


def exercise_of(test_file: Path) -> str:
    """The exercise a graded test module counts towards: ``test_mandelbrot_analysis.py`` ->
    ``mandelbrot``."""
    return Path(test_file).stem.removeprefix("test_").split("_")[0]


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


def short_message(longrepr, limit: int | None = MAX_OUTPUT) -> str:
    """The failure's message without the grader's traceback.

    The grader fails with ``pytest.fail(msg, pytrace=False)``, whose report is the message
    itself; anything else (an error in a fixture, an assertion in a hidden test) is reduced to
    its last line, e.g. ``AssertionError: ...``. At most ``limit`` characters (None: all).
    """
    if longrepr is None:
        return ""
    if isinstance(longrepr, str):
        text = longrepr
    else:
        crash = getattr(longrepr, "reprcrash", None)
        text = crash.message if crash is not None else str(longrepr)
    text = text.strip().removeprefix("Failed: ")  # pytest.fail's prefix says nothing
    return text if limit is None else cut(text, limit)


def cut(text: str, limit: int = MAX_OUTPUT) -> str:
    """``text``, or its first ``limit`` characters and a mark that the rest was cut."""
    return text if len(text) <= limit else text[:limit] + "\n[... cut ...]"


def _total(results: list[TestResult]) -> tuple[float, float]:
    return sum(r.score for r in results), sum(r.max_score for r in results)


EXERCISES = ("hello", "matmul", "mandelbrot", "wordcount")  # the sheet's order


def readable(results: list[TestResult]) -> list[tuple[str, str]]:
    """(number, name) of each result as the reports show it: ``2.5``, ``matmul:
    test_matmul[pool-square]`` (the course's hidden tests say so), numbered in the sheet's
    order of exercises."""
    counters: dict[str, int] = {}
    out = []
    for r in results:
        counters[r.exercise] = counters.get(r.exercise, 0) + 1
        major = EXERCISES.index(r.exercise) + 1 if r.exercise in EXERCISES else 9
        test = r.name.rpartition("::")[2]
        label = f"{r.exercise} (course test)" if r.hidden else r.exercise
        out.append((f"{major}.{counters[r.exercise]}", f"{label}: {test}"))
    return out


def gradescope(results: list[TestResult], execution_time: float,
               hidden_visibility: str = "after_published", output: str = "",
               pictures: Path | None = None) -> dict:
    """Gradescope's ``results.json``; the failures that name pictures in ``pictures`` show
    them (``output_format`` html)."""
    score, _ = _total(results)
    budget = [PICTURE_BYTES]  # what is left to embed, shared by the tests
    data = {
        "score": score,
        "execution_time": round(execution_time, 3),
        "output": output,
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": [{
            "name": name,
            "number": number,
            "score": r.score,
            "max_score": r.max_score,
            "status": "passed" if r.passed else "failed",
            "output": r.output,
            "tags": [r.exercise] + (["hidden"] if r.hidden else []),
            "visibility": hidden_visibility if r.hidden else "visible",
            "execution_time": r.duration,
        } for r, (number, name) in zip(results, readable(results), strict=True)],
    }
    for test in data["tests"]:
        shown = with_pictures(test["output"], pictures, budget) if test["output"] else None
        if shown is not None:
            test["output"], test["output_format"] = shown, "html"
    return data


# GitHub Classroom's reporter reads the result from an environment variable, base64-encoded;
# Linux caps one variable at 128 KiB (MAX_ARG_STRLEN), so the JSON stays under 3/4 of it.
CLASSROOM_BYTES = 96_000


def classroom(results: list[TestResult], error: str = "", limit: int = CLASSROOM_BYTES) -> dict:
    """GitHub Classroom's runner result (version 3), at most ``limit`` bytes as JSON: failure
    messages are shortened (each says so) until it fits; scores are never cut."""
    score, possible = _total(results)
    status = "error" if error else ("pass" if results and score >= possible else "fail")
    cap = MAX_OUTPUT
    while True:
        report = {
            "version": 3,
            "status": status,
            "max_score": possible,
            "tests": [{
                "name": f"{number} {name}",
                "status": "pass" if r.passed else "fail",
                "score": r.score,
                "message": _shortened(r.output, cap),
                "line_no": 0,
                "duration": int(round(r.duration * 1000)),  # milliseconds, as runners write it
            } for r, (number, name) in zip(results, readable(results), strict=True)]
            + ([{"name": "grading", "status": "error", "score": 0,
                 "message": _shortened(error, cap), "line_no": 0, "duration": 0}]
               if error else []),
        }
        if len(json.dumps(report)) <= limit or cap == 0:
            return report
        cap //= 2


def _shortened(text: str, cap: int) -> str:
    if len(text) <= cap:
        return text
    return text[:cap] + " [... shortened: the whole report must fit GitHub's limit]"


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


# -- runs that did not complete ----------------------------------------------------------------

PYTEST_EXITS = {  # pytest's exit codes other than 0 (all passed) and 1 (some failed)
    2: "the run was interrupted (a test file could not be collected, or the run was stopped)",
    3: "pytest stopped with an internal error",
    4: "the grader was started with a wrong option or path (a usage error)",
    5: "no test ran: none was collected, or the selection (-k / -m) matched none",
}
TAIL_LINES = 20  # lines of pytest's output quoted in an infrastructure-failure report


def describe_exit(code: int) -> str:
    """What a pytest exit code other than 0 or 1 means, in words (shell style: 128+N = signal N)."""
    if code in PYTEST_EXITS:
        return PYTEST_EXITS[code]
    number = -code if code < 0 else code - 128
    if 0 < number < 65 and (code < 0 or code > 128):
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        return f"pytest was killed by {name} (signal {number}) before it finished"
    return f"pytest ended with the unexpected exit code {code}"


def output_tail(text: str, lines: int = TAIL_LINES, width: int = 300) -> str:
    """The last non-empty lines of pytest's output, each cut to ``width`` characters. Lines that
    name the hidden tests' folder are left out (a report must not show hidden tests)."""
    kept = [line.rstrip()[:width] for line in text.splitlines()
            if line.strip() and "hidden/" not in line]
    return "\n".join(kept[-lines:])


def infrastructure_failure(code: int, output: str = "") -> str:
    """The message of a report replacing a run that did not complete."""
    message = (f"Grading did not complete: {describe_exit(code)} (pytest exit code {code}). "
               "This is not a score for your work: no result of this run was kept. If it "
               "happens again, tell the course staff.")
    tail = output_tail(output)
    if tail:
        message += "\n\nThe last lines of the grader's output:\n" + tail
    return message


def settle(pytest_exit: int, output: str = "", gradescope_path: str | None = None,
           classroom_path: str | None = None) -> str:
    """After a CI run of pytest: keep its reports only if it ended normally (exit 0 or 1) and
    wrote them; otherwise write zero-score reports that say why. Returns that reason ('' when
    the reports were kept)."""
    paths = [p for p in (gradescope_path, classroom_path) if p]
    if pytest_exit in (0, 1):
        if all(Path(p).is_file() for p in paths):
            return ""
        reason = (f"Grading did not complete: pytest ended (exit code {pytest_exit}) without "
                  "writing its report. No result of this run was kept; tell the course staff.")
    else:
        reason = infrastructure_failure(pytest_exit, output)
    for path in paths:  # never keep a file that graded code may have written
        Path(path).unlink(missing_ok=True)
    error_reports(reason, gradescope_path, classroom_path)
    return reason


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m parakit.controller.session.reports",
        description="After a CI run of `pytest grader`: keep its reports if pytest ended "
                    "normally (exit code 0 or 1), else replace them by a zero-score report that "
                    "says why (the exit code and the end of pytest's output).")
    p.add_argument("--pytest-exit", type=int, required=True, help="pytest's exit code")
    p.add_argument("--output-file", help="pytest's output (its end is quoted in the report)")
    p.add_argument("--grade-json", help="Gradescope results.json of the run")
    p.add_argument("--classroom-json", help="GitHub Classroom runner result of the run")
    args = p.parse_args(argv)
    if not (args.grade_json or args.classroom_json):
        p.error("give --grade-json and/or --classroom-json")
    output = ""
    if args.output_file:
        try:
            output = Path(args.output_file).read_text(errors="replace")
        except OSError:
            pass
    reason = settle(args.pytest_exit, output, args.grade_json, args.classroom_json)
    if reason:
        print(f"parakit: reports replaced by a zero: {reason.splitlines()[0]}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
