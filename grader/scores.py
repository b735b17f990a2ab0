"""Points and scores: the table at the end of a grading run and the CI reports.

``Scoreboard`` counts each graded test's points per exercise; ``ResultCollector`` keeps each
test's message and duration; ``ScoreReporter`` is the plugin object (registered by
``grader.plugin``) that prints the table and writes the Gradescope and GitHub Classroom
reports (``parakit.controller.session.reports``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

from parakit.controller.processes import proctree
from parakit.controller.session import reports
from parakit.controller.session.settings import Settings

GRADER_DIR = Path(__file__).resolve().parent


class Scoreboard:
    """Points per graded test, summed per exercise, printed at the end of the run."""

    def __init__(self) -> None:
        self.outcomes: dict[str, tuple[str, float, float]] = {}  # nodeid -> (exercise, got, max)
        self.ran: set[str] = set()  # graded tests that reported (-x may stop before the rest)

    def add_item(self, item: pytest.Item) -> None:
        """Count a graded test (one with a ``points`` marker) at 0 until it passes."""
        marker = item.get_closest_marker("points")
        if marker is None:
            return
        points = float(marker.args[0]) if marker.args else 1.0
        exercise = reports.exercise_of(item.path)
        item.user_properties += [("exercise", exercise), ("points", points)]
        self.outcomes[item.nodeid] = (exercise, 0.0, points)

    def add_report(self, report: pytest.TestReport) -> None:
        if report.nodeid not in self.outcomes:
            return
        self.ran.add(report.nodeid)
        exercise, got, points = self.outcomes[report.nodeid]
        if report.when == "call" and report.passed:
            got = points
        elif report.failed or report.skipped:
            got = 0.0
        self.outcomes[report.nodeid] = (exercise, got, points)

    def totals(self) -> dict[str, tuple[float, float]]:
        """Per exercise, points got and possible over the tests that ran."""
        table: dict[str, tuple[float, float]] = {}
        for nodeid, (exercise, got, points) in self.outcomes.items():
            if nodeid in self.ran:
                old = table.get(exercise, (0.0, 0.0))
                table[exercise] = (old[0] + got, old[1] + points)
        return table

    def render(self) -> list[tuple[str, dict]]:
        """The table's lines, each with its terminal markup: green for full marks, yellow
        for some, red for none; the total in bold."""
        rows = self.totals()
        rows["total"] = (sum(g for g, _ in rows.values()), sum(p for _, p in rows.values()))
        width = max(len(e) for e in [*rows, "exercise"])
        lines = [(f"{'exercise':<{width}}  {'points':>7}", {})]
        for exercise, (got, points) in rows.items():
            colour = "green" if got == points else "red" if got == 0 else "yellow"
            lines.append((f"{exercise:<{width}}  {got:>7g} / {points:g}",
                          {colour: True, "bold": exercise == "total"}))
        return lines


class ResultCollector:
    """Failure messages (whole: the terminal shows them all, the reports cut them) and
    durations per test, gathered from pytest's reports."""

    def __init__(self) -> None:
        self.messages: dict[str, str] = {}
        self.failed: list[str] = []  # in the order they failed
        self.durations: dict[str, float] = {}

    def add(self, nodeid: str, when: str, outcome: str, duration: float, longrepr) -> None:
        self.durations[nodeid] = self.durations.get(nodeid, 0.0) + float(duration or 0.0)
        if outcome == "failed" and nodeid not in self.messages:
            message = reports.short_message(longrepr, None)
            self.messages[nodeid] = message if when == "call" else f"error in {when}: {message}"
            self.failed.append(nodeid)
        elif outcome == "skipped" and nodeid not in self.messages:
            reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else ""
            self.messages[nodeid] = f"skipped: {reason}".rstrip(": ")

    def results(self, outcomes: Mapping[str, tuple[str, float, float]],
                hidden: Iterable[str] = ()) -> list[reports.TestResult]:
        """One result per scored test; ``outcomes`` is ``Scoreboard.outcomes``."""
        hidden = set(hidden)
        out = []
        for nodeid, (exercise, got, points) in outcomes.items():
            passed = got >= points
            message = "" if passed else reports.cut(self.messages.get(nodeid, "not run"))
            out.append(reports.TestResult(nodeid, exercise, got, points, passed, message,
                                          round(self.durations.get(nodeid, 0.0), 3),
                                          nodeid in hidden))
        return out


class ScoreReporter:
    """The plugin's reporting half: the score table at the end of the run, and the CI reports
    (written as tests finish, and finally after every process of the run has ended)."""

    def __init__(self, scores: Scoreboard, settings: Settings) -> None:
        self.scores = scores
        self.settings = settings
        self.lists_failures = False  # set by the plugin when pytest's own listing is off
        self.results = ResultCollector()
        self.hidden: set[str] = set()
        self.start = time.monotonic()
        self.began = time.time()  # the wall clock, as files' times are (shared memory left)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.scores.add_report(report)
        self.results.add(report.nodeid, report.when, report.outcome, report.duration,
                         report.longrepr)
        if report.when == "teardown" and report.nodeid in self.scores.outcomes:
            self._write_reports(partial=True)  # a run killed later still leaves what it had

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        hidden = self.settings.hidden_tests
        self.hidden = {item.nodeid for item in items
                       if hidden is not None and Path(str(item.path)).is_relative_to(hidden)}

    @pytest.hookimpl(trylast=True)  # after the fixtures' teardown (the cluster is stopped)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        """End every process the run started, then write the CI reports asked for, from the
        same scores as the table: nothing the graded code left can write after them."""
        proctree.end_all(str(os.getpid()), since=self.began)
        if not (self.settings.grade_json or self.settings.classroom_json):
            return
        why = self._no_score(session.config, int(exitstatus))
        if why:  # a zero that says why, not an empty report
            reports.error_reports(why, self.settings.grade_json or None,
                                  self.settings.classroom_json or None,
                                  time.monotonic() - self.start)
            return
        self._write_reports(partial=False)

    def _write_reports(self, partial: bool) -> None:
        """The CI reports asked for: final, or (``partial``) the tests that ran so far, marked
        as an unfinished run (the CI wrappers replace them if the run is killed)."""
        if not (self.settings.grade_json or self.settings.classroom_json):
            return
        outcomes = {k: v for k, v in self.scores.outcomes.items()
                    if not partial or k in self.scores.ran}
        results = self.results.results(outcomes, self.hidden)
        note = (f"Partial: {len(outcomes)} of {len(self.scores.outcomes)} graded tests so far; "
                "the run has not finished.") if partial else ""
        if self.settings.grade_json:
            reports.write_json(self.settings.grade_json, reports.gradescope(
                results, time.monotonic() - self.start, self.settings.hidden_visibility,
                output=note, pictures=self.settings.pictures))
        if self.settings.classroom_json:
            reports.write_json(self.settings.classroom_json,
                               reports.classroom(results, error=note))

    def _hidden_later(self) -> str:
        """'+N hidden points ... graded later' where the hidden tests are not here (a student's
        release records their points, ``parakit release``), for the exercises that ran."""
        path = GRADER_DIR / reports.HIDDEN_POINTS
        if self.settings.hidden_tests is not None or not path.is_file():
            return ""
        try:
            points = {str(k): float(v) for k, v in json.loads(path.read_text()).items()}
        except (OSError, ValueError, AttributeError):
            return ""
        ran = set(self.scores.totals())
        points = {e: p for e, p in points.items() if e in ran and p}
        if not points:
            return ""
        parts = ", ".join(f"{p:g} in {e}" for e, p in points.items())
        return (f"+{sum(points.values()):g} hidden points ({parts}) are graded later, by tests "
                "that are not in your copy")

    def _no_score(self, config: pytest.Config, exitstatus: int) -> str:
        """Why the run has no score to report ('' when it has one)."""
        selection = " and ".join(f"{flag} {value!r}" for flag, value in (
            ("-k", config.option.keyword), ("-m", config.option.markexpr)) if value)
        if exitstatus in (0, 1):
            if self.scores.outcomes:
                return ""
            return (f"No graded test ran{' (selection: ' + selection + ')' if selection else ''}"
                    ", so there is no score.")
        why = reports.infrastructure_failure(exitstatus)
        return why + (f" The selection was {selection}." if exitstatus == 5 and selection else "")

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if not self.scores.ran:  # nothing graded ran (--collect-only, a usage error, -k ...)
            return
        terminalreporter.ensure_newline()  # after the progress line, not after the heading
        failed = [n for n in self.results.failed if n in self.scores.outcomes]  # graded ones
        if self.lists_failures and failed:
            terminalreporter.section("failures", red=True)
            for nodeid in failed:
                first, *rest = self.results.messages[nodeid].splitlines() or [""]
                terminalreporter.write(f"{nodeid.rpartition('::')[2]}: ", red=True)
                terminalreporter.write_line(first)
                for line in rest:
                    terminalreporter.write_line("    " + line)
        terminalreporter.section(f"score: {self.settings.target.display}")
        for line, markup in self.scores.render():
            terminalreporter.write_line(line, **markup)
        later = self._hidden_later()
        if later:
            terminalreporter.write_line(later, cyan=True)
        unrun = len(self.scores.outcomes) - len(self.scores.ran)
        if unrun:
            terminalreporter.write_line(f"({unrun} graded test(s) did not run and are not "
                                        "counted above)", yellow=True)
