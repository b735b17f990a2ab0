"""The grader's pytest plugin: points, the score table, reports, and the session's fixtures.

The options are declared and resolved once, at configure time, by
``parakit.controller.settings`` into a frozen ``Settings``; a bad value stops the run with a
message that names the option. The fixtures hand the grader's tests the session's backends and
a ``Grading`` (``parakit.controller.grading``) that runs graded calls on them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from parakit import backends
from parakit.controller import proctree, reports
from parakit.controller.grading import Grading
from parakit.controller.runtime import Runtime, hand_over
from parakit.controller.settings import (
    Settings,
    add_options,
    check_run_as,
    option,
    resolve_settings,
)

GRADER_DIR = Path(__file__).resolve().parent


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def is_graded(config: pytest.Config, path) -> bool:
    """A test file of the grader itself or of the instructor's hidden tests."""
    path = Path(str(path))
    hidden = config.stash[_settings_key].hidden_tests
    return path.is_relative_to(GRADER_DIR) or (hidden is not None and path.is_relative_to(hidden))


class Scoreboard:
    """Points per graded test, summed per exercise, printed at the end of the run."""

    def __init__(self) -> None:
        self.outcomes: dict[str, tuple[str, float, float]] = {}  # nodeid -> (exercise, got, max)

    def add_item(self, item: pytest.Item) -> None:
        marker = item.get_closest_marker("points")
        if marker is None or not is_graded(item.config, item.path):
            return
        points = float(marker.args[0]) if marker.args else 1.0
        # test_mandelbrot.py and test_mandelbrot_analysis.py both count towards "mandelbrot"
        exercise = item.path.stem.removeprefix("test_").split("_")[0]
        item.user_properties += [("exercise", exercise), ("points", points)]
        self.outcomes[item.nodeid] = (exercise, 0.0, points)

    def add_report(self, report: pytest.TestReport) -> None:
        if report.nodeid not in self.outcomes:
            return
        exercise, got, points = self.outcomes[report.nodeid]
        if report.when == "call" and report.passed:
            got = points
        elif report.failed or report.skipped:
            got = 0.0
        self.outcomes[report.nodeid] = (exercise, got, points)

    def totals(self) -> dict[str, tuple[float, float]]:
        table: dict[str, tuple[float, float]] = {}
        for exercise, got, points in self.outcomes.values():
            old = table.get(exercise, (0.0, 0.0))
            table[exercise] = (old[0] + got, old[1] + points)
        return table

    def render(self) -> list[str]:
        rows = self.totals()
        rows["total"] = (sum(g for g, _ in rows.values()), sum(p for _, p in rows.values()))
        width = max(len(e) for e in [*rows, "exercise"])
        lines = [f"{'exercise':<{width}}  {'points':>7}"]
        for exercise, (got, points) in rows.items():
            lines.append(f"{exercise:<{width}}  {got:>7g} / {points:g}")
        return lines


_settings_key = pytest.StashKey[Settings]()
_scores_key = pytest.StashKey[Scoreboard]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "points(n): points a grader test is worth (default 1)")
    try:
        settings = resolve_settings(config)
        check_run_as(settings, option(config, "run-as")[1])
    except pytest.UsageError as exc:  # no test will run: the reports asked for say why
        _usage_error_reports(config, str(exc))
        raise
    if settings.run_as is not None:
        proctree.watch_uid(settings.run_as[0])  # its processes are ours to find and end
    config.stash[_settings_key] = settings
    config.stash[_scores_key] = Scoreboard()
    config.pluginmanager.register(_ScoreReporter(config), "grader-scores")


def _usage_error_reports(config: pytest.Config, error: str) -> None:
    paths = [option(config, name)[0] for name in ("grade-json", "classroom-json")]
    if not any(paths):
        return
    message = (f"Grading did not start: {error}. This is not a score for your work; "
               "tell the course staff.")
    try:
        reports.error_reports(message, *(p or None for p in paths))
    except OSError:
        pass


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Where the graded code runs, when it leaves this machine."""
    settings = config.stash.get(_settings_key, None)
    if settings is None or not settings.hosts.several:
        return []
    return [f"grader: MPI ranks and ipyparallel engines on {settings.hosts.describe()}; the "
            "pool on this machine only (multiprocessing does not cross machines); job folders "
            f"in {settings.workdir}"]


def pytest_sessionstart(session: pytest.Session) -> None:
    proctree.sweep_orphans()  # leftovers of an earlier grading run that was killed


def pytest_unconfigure(config: pytest.Config) -> None:
    # Backstop: nothing started by this run outlives it (the fixtures normally stop it all).
    proctree.terminate(proctree.tagged(proctree.OWNER_VAR, str(os.getpid())))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Grader tests that take ``workers`` run at every count of ``Settings.worker_counts``."""
    if "workers" in metafunc.fixturenames and is_graded(metafunc.config,
                                                        metafunc.definition.path):
        counts = metafunc.config.stash[_settings_key].worker_counts
        metafunc.parametrize("workers", counts, ids=[f"P{n}" for n in counts])


@pytest.hookimpl(tryfirst=True)
def pytest_collection(session: pytest.Session) -> None:
    """A run of the whole grader also collects the hidden tests, when there are any."""
    config = session.config
    hidden = config.stash[_settings_key].hidden_tests
    if hidden is None:
        return
    dirs = {Path(arg.split("::")[0]).resolve() for arg in config.args}
    if GRADER_DIR in dirs and hidden not in dirs:
        config.args.append(str(hidden))


def pytest_collection_finish(session: pytest.Session) -> None:
    for item in session.items:  # after -k / -m deselection: only what runs counts
        session.config.stash[_scores_key].add_item(item)


class _ScoreReporter:
    def __init__(self, config: pytest.Config) -> None:
        self.scores = config.stash[_scores_key]
        self.settings = config.stash[_settings_key]
        self.results = reports.ResultCollector()
        self.hidden: set[str] = set()
        self.start = time.monotonic()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.scores.add_report(report)
        self.results.add(report.nodeid, report.when, report.outcome, report.duration,
                         report.longrepr)

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        hidden = self.settings.hidden_tests
        self.hidden = {item.nodeid for item in items
                       if hidden is not None and Path(str(item.path)).is_relative_to(hidden)}

    @pytest.hookimpl(trylast=True)  # after the fixtures' teardown (the cluster is stopped)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        """End every process the run started, then write the CI reports asked for, from the
        same scores as the table: nothing the graded code left can write after them."""
        proctree.end_all(str(os.getpid()))
        if not (self.settings.grade_json or self.settings.classroom_json):
            return
        why = self._no_score(session.config, int(exitstatus))
        if why:  # a zero that says why, not an empty report
            reports.error_reports(why, self.settings.grade_json or None,
                                  self.settings.classroom_json or None,
                                  time.monotonic() - self.start)
            return
        results = self.results.results(self.scores.outcomes, self.hidden)
        if self.settings.grade_json:
            reports.write_json(self.settings.grade_json, reports.gradescope(
                results, time.monotonic() - self.start, self.settings.hidden_visibility))
        if self.settings.classroom_json:
            reports.write_json(self.settings.classroom_json, reports.classroom(results))

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
        if not self.scores.outcomes:
            return
        terminalreporter.section(f"score: {self.settings.target.display}")
        for line in self.scores.render():
            terminalreporter.write_line(line)


# -- fixtures used by the grader's tests ------------------------------------------------------

@pytest.fixture(scope="session")
def settings(request: pytest.FixtureRequest) -> Settings:
    return request.config.stash[_settings_key]


@pytest.fixture(scope="session")
def workdir(settings: Settings) -> Iterator[Path]:
    """Job directories of this session (removed at the end)."""
    path = Path(tempfile.mkdtemp(prefix="parakit-grading-", dir=settings.workdir))
    if settings.run_as is not None:  # --run-as: it may enter the folder (its job folders are
        path.chmod(0o711)            # its own), not list it nor add to it
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def inputs(workdir: Path) -> Path:
    """A folder for files the grader writes for graded code to read (readable by the
    ``--run-as`` user, not writable)."""
    path = workdir / "inputs"
    path.mkdir()
    path.chmod(0o755)
    return path


@pytest.fixture
def outputs(settings: Settings, workdir: Path) -> Path:
    """A new, empty folder graded code may write to (the ``--run-as`` user's). A file read
    back from it may be a symlink planted by graded code: check ``is_symlink()`` first."""
    path = Path(tempfile.mkdtemp(prefix="outputs-", dir=workdir))
    hand_over(path, settings.run_as)
    return path


@pytest.fixture(scope="session")
def session_backends(settings: Settings, workdir: Path) -> Iterator[dict[str, backends.Backend]]:
    """The session's backends (parakit.backends); the ipyparallel cluster starts on first use
    by an ipp test, and everything is stopped at the end."""
    found = backends.session(settings.workers, workdir, settings.mpiexec or None,
                             settings.ipp_connect or None, settings.run_as, settings.hosts)
    yield found
    backends.stop_all(found)


@pytest.fixture(scope="session")
def runtime(settings: Settings, workdir: Path,
            session_backends: dict[str, backends.Backend]) -> Runtime:
    """What the jobs need to run graded code."""
    return Runtime(target=settings.target, timeout=settings.call_timeout, workdir=workdir,
                   backends=session_backends, limits=settings.limits, run_as=settings.run_as)


@pytest.fixture(scope="session")
def grading(runtime: Runtime) -> Grading:
    """Runs graded calls on any backend; results are cached for the session. From here on,
    orphans of graded code (double fork, setsid) come back to this process, not to init."""
    proctree.become_subreaper()
    return Grading(runtime)
