"""The grader's pytest plugin: options, the session's runtime, points and the score table.

All options live here. Each has one help text shared by the command line and the ini file, and
they are resolved once, at configure time, into a frozen :class:`Settings` object; a bad value
stops the run with a message that names the option.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from grader import proctree, reports
from grader.harness import Grading, Limits, Runtime, Target, detect_mpiexec
from grader.ipp_cluster import SessionCluster

GRADER_DIR = Path(__file__).resolve().parent
OPTIONS = {  # name: (default, help); the ini key is "grader_" + name with dashes as underscores
    "target": ("student", "package to grade: student, reference, or the path of a directory "
                          "with the same modules as student/ (default: student)"),
    "workers": ("4", "largest process count for the parallel runs (default: 4)"),
    "call-timeout": ("30", "seconds a graded call may run before it is stopped (default: 30)"),
    "mpiexec": ("", "MPI launch command, e.g. 'mpirun --oversubscribe' (default: the mpiexec "
                    "next to python or on PATH, with the flags its MPI needs)"),
    "ipp-connect": ("", "client connection file of a running ipyparallel cluster (from "
                        "`ipcluster start -n X`) to use instead of starting one"),
    "grade-json": ("", "write Gradescope's results.json (score per test) to this path"),
    "classroom-json": ("", "write GitHub Classroom's runner result (version 3) to this path"),
    "hidden-tests": ("hidden", "directory of instructor-only grader tests, added to every run of "
                               "the whole grader when it exists; relative paths are relative to "
                               "the kit; 'none' leaves them out (default: hidden)"),
    "hidden-visibility": ("after_published", "Gradescope visibility of the hidden tests: "
                          + ", ".join(reports.VISIBILITIES) + " (default: after_published)"),
    "memory-limit": ("2GiB", "address space per graded process, e.g. 512MiB, 4GiB; 0: no limit "
                             "(default: 2GiB)"),
    "cpu-limit": ("300", "CPU seconds per graded process; 0: no limit (default: 300)"),
    "output-limit": ("1MiB", "stdout and stderr kept per graded run; the rest is counted and "
                             "dropped (default: 1MiB)"),
}
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mb": 1 << 20,
          "mib": 1 << 20, "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30}


@dataclass(frozen=True)
class Settings:
    """The grader's options, validated."""

    target: Target
    workers: int
    call_timeout: float
    mpiexec: str
    ipp_connect: str
    limits: Limits
    grade_json: str = ""  # Gradescope results.json to write
    classroom_json: str = ""  # GitHub Classroom runner result to write
    hidden_tests: Path | None = None  # instructor-only tests, if there are any
    hidden_visibility: str = "after_published"

    @property
    def worker_counts(self) -> list[int]:
        """Process counts every parallel exercise is graded at: 1, 2, 3 and --workers."""
        return sorted({n for n in (1, 2, 3, self.workers) if n <= self.workers})


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("grader", "parallel-python exercise grader")
    for name, (default, help_text) in OPTIONS.items():
        ini = "grader_" + name.replace("-", "_")
        group.addoption(f"--{name}", dest=ini, default=None, help=help_text)
        parser.addini(ini, help_text, default=default)


def _option(config: pytest.Config, name: str) -> tuple[str, str]:
    """The value of an option and where it came from (for error messages)."""
    ini = "grader_" + name.replace("-", "_")
    value = config.getoption(ini)
    if value is not None:
        return value, f"--{name}"
    return config.getini(ini), f"ini option {ini}"


def _number(config: pytest.Config, name: str, kind: type, minimum: float) -> float:
    value, source = _option(config, name)
    try:
        number = kind(value)
    except ValueError:
        raise pytest.UsageError(f"{source}={value!r}: expected a number") from None
    if number < minimum:
        raise pytest.UsageError(f"{source}={value!r}: must be at least {minimum}")
    return number


def _size(config: pytest.Config, name: str) -> int:
    value, source = _option(config, name)
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*([A-Za-z]*)\s*", value)
    if not m or m[2].lower() not in _UNITS:
        raise pytest.UsageError(f"{source}={value!r}: expected a size such as 512MiB or 2GiB")
    return int(float(m[1]) * _UNITS[m[2].lower()])


def resolve_settings(config: pytest.Config) -> Settings:
    target, source = _option(config, "target")
    try:
        resolved = Target.resolve(target)
    except ValueError as exc:
        raise pytest.UsageError(str(exc).replace("--target", source, 1)) from None
    return Settings(**_report_settings(config), target=resolved,
                    workers=int(_number(config, "workers", int, 1)),
                    call_timeout=_number(config, "call-timeout", float, 1),
                    mpiexec=_option(config, "mpiexec")[0],
                    ipp_connect=_option(config, "ipp-connect")[0],
                    limits=Limits(memory=_size(config, "memory-limit"),
                                  cpu=int(_number(config, "cpu-limit", int, 0)),
                                  output=_size(config, "output-limit")))


def _report_settings(config: pytest.Config) -> dict:
    """Report paths and hidden tests: the options that CI and the instructor's tools use."""
    hidden, _ = _option(config, "hidden-tests")
    hidden_dir = None
    if hidden and hidden.lower() != "none":
        path = Path(hidden).expanduser()
        path = path if path.is_absolute() else GRADER_DIR.parent / path
        hidden_dir = path.resolve() if path.is_dir() else None
    visibility, source = _option(config, "hidden-visibility")
    if visibility not in reports.VISIBILITIES:
        raise pytest.UsageError(f"{source}={visibility!r}: expected one of "
                                + ", ".join(reports.VISIBILITIES))
    return {"grade_json": _option(config, "grade-json")[0],
            "classroom_json": _option(config, "classroom-json")[0],
            "hidden_tests": hidden_dir, "hidden_visibility": visibility}


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
        exercise = item.path.stem.removeprefix("test_")
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
    config.stash[_settings_key] = resolve_settings(config)
    config.stash[_scores_key] = Scoreboard()
    config.pluginmanager.register(_ScoreReporter(config), "grader-scores")


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

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """Write the CI reports asked for, from the same scores as the table."""
        if not (self.settings.grade_json or self.settings.classroom_json):
            return
        results = self.results.results(self.scores.outcomes, self.hidden)
        if self.settings.grade_json:
            reports.write_json(self.settings.grade_json, reports.gradescope(
                results, time.monotonic() - self.start, self.settings.hidden_visibility))
        if self.settings.classroom_json:
            reports.write_json(self.settings.classroom_json, reports.classroom(results))

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
def workdir() -> Iterator[Path]:
    """Job directories of this session (removed at the end)."""
    path = Path(tempfile.mkdtemp(prefix="parakit-grading-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def runtime(settings: Settings, workdir: Path) -> Runtime:
    """What the harness needs to run graded code (the MPI launcher is found lazily)."""
    try:
        mpiexec, mpi_error = detect_mpiexec(settings.mpiexec or None), ""
    except RuntimeError as exc:  # MPI tests then fail with this message; the others still run
        mpiexec, mpi_error = (), str(exc)
    return Runtime(target=settings.target, timeout=settings.call_timeout, mpiexec=mpiexec,
                   workdir=workdir, mpi_error=mpi_error, limits=settings.limits)


@pytest.fixture(scope="session")
def ipp_cluster(settings: Settings, workdir: Path) -> Iterator[SessionCluster]:
    """The session's ipyparallel cluster, started on first use by an ipp test."""
    cluster = SessionCluster(settings.workers, workdir, settings.ipp_connect or None)
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def grading(runtime: Runtime, ipp_cluster: SessionCluster) -> Grading:
    """Runs graded calls on any backend; results are cached for the session."""
    return Grading(runtime, ipp_cluster)
