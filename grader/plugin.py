"""The grader's pytest plugin: options, the session's runtime, points and the score table.

All options live here. Each has one help text shared by the command line and the ini file, and
they are resolved once, at configure time, into a frozen :class:`Settings` object; a bad value
stops the run with a message that names the option.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from grader import proctree, reports
from grader.harness import Grading, Limits, Runtime, Target, child_env, detect_mpiexec, hand_over
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
    "run-as": ("", "run the graded code as this unprivileged user (name or uid), which must not "
                   "be able to read the hidden tests or write the reports; needs the grader to "
                   "run as root, e.g. on Gradescope (default: the grader's own user)"),
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
    run_as: tuple[int, int] | None = None  # uid and gid the graded code runs as (--run-as)

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


WORKERS_PER_CORE = 4  # --workers at most this many per core (and never less than 8 in all)


def max_workers() -> int:
    """The largest --workers this machine can hold: every backend starts that many processes
    at once, each with its own Python and numpy."""
    return max(8, WORKERS_PER_CORE * (os.cpu_count() or 1))


def _workers(config: pytest.Config) -> int:
    workers = int(_number(config, "workers", int, 1))
    if workers > max_workers():
        _, source = _option(config, "workers")
        raise pytest.UsageError(
            f"{source}={workers}: at most {max_workers()} on this machine ({os.cpu_count()} "
            f"cores, {WORKERS_PER_CORE} processes per core): every backend starts that many "
            "processes at once")
    return workers


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
                    workers=_workers(config),
                    call_timeout=_number(config, "call-timeout", float, 1),
                    mpiexec=_option(config, "mpiexec")[0],
                    ipp_connect=_option(config, "ipp-connect")[0],
                    limits=Limits(memory=_size(config, "memory-limit"),
                                  cpu=int(_number(config, "cpu-limit", int, 0)),
                                  output=_size(config, "output-limit")),
                    run_as=_run_as(config))


def _run_as(config: pytest.Config) -> tuple[int, int] | None:
    """The uid and gid of ``--run-as``: an existing user other than root, and we are root."""
    value, source = _option(config, "run-as")
    value = value.strip()
    if not value:
        return None
    try:
        user = pwd.getpwuid(int(value)) if value.isdigit() else pwd.getpwnam(value)
    except KeyError:
        raise pytest.UsageError(f"{source}={value!r}: no such user (create one, e.g. `useradd "
                                "--system --no-create-home parakit-student`)") from None
    if user.pw_uid == 0 or user.pw_gid == 0:
        raise pytest.UsageError(f"{source}={value!r}: graded code must not run as root or with "
                                "root's group; name an unprivileged user")
    if os.geteuid() != 0:
        raise pytest.UsageError(f"{source}={value!r}: running graded code as another user needs "
                                f"the grader to run as root (it runs as uid {os.geteuid()}); "
                                "leave the option out to run it as yourself")
    return user.pw_uid, user.pw_gid


# Run as the --run-as user: can it run the kit, and is it kept from what graded code must not touch?
_PROBE = """
import json, os, sys
import grader.child, problems.trace  # the kit and its dependencies, as graded children load them
target, hidden, reports = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
os.listdir(target)
readable = []
for path in hidden:
    try:
        open(path, "rb").close()
        readable.append(path)
    except OSError:
        pass
writable = [p for p in reports if os.access(p, os.W_OK)
            or os.access(os.path.dirname(p) or ".", os.W_OK)]
print(json.dumps({"readable": readable, "writable": writable}))
"""


def check_run_as(settings: Settings, source: str = "--run-as") -> None:
    """Start a process as the ``--run-as`` user: it must run the kit's Python, import the kit
    and list the target, and it must neither read a hidden test nor be able to write a report.
    A UsageError says what is wrong otherwise."""
    if settings.run_as is None:
        return
    uid, gid = settings.run_as
    name = pwd.getpwuid(uid).pw_name
    hidden = sorted(str(p) for p in settings.hidden_tests.rglob("*")
                    if p.is_file()) if settings.hidden_tests else []
    reports_ = [str(Path(p).resolve()) for p in (settings.grade_json, settings.classroom_json) if p]
    try:
        probe = subprocess.run([sys.executable, "-c", _PROBE, str(settings.target.directory),
                                json.dumps(hidden), json.dumps(reports_)],
                               user=uid, group=gid, extra_groups=[], env=child_env(), cwd="/",
                               capture_output=True, text=True, timeout=120)
        found = json.loads(probe.stdout) if probe.returncode == 0 else None
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        probe, found = None, None
        why = str(exc)
    if found is None:
        if probe is not None:
            lines = (probe.stderr or probe.stdout).strip().splitlines()
            why = lines[-1] if lines else f"exit code {probe.returncode}"
        raise pytest.UsageError(
            f"{source}={name!r}: the user cannot run the grader ({why}). It needs to read and "
            f"run {sys.executable} and its libraries, the kit ({Path(__file__).parent.parent}) "
            f"and the target ({settings.target.directory}), and to search every folder above "
            "them (chmod -R a+rX, and o+x on parent folders)")
    if found["readable"]:
        raise pytest.UsageError(
            f"{source}={name!r}: the user can read the hidden tests ({found['readable'][0]}); "
            f"make {settings.hidden_tests} readable by the grader only, e.g. "
            f"`chown -R root: {settings.hidden_tests} && chmod 700 {settings.hidden_tests}`")
    if found["writable"]:
        raise pytest.UsageError(
            f"{source}={name!r}: the user could write the report {found['writable'][0]}; put "
            "reports in a folder only the grader can write (e.g. chmod 700)")


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
    try:
        settings = resolve_settings(config)
        check_run_as(settings, _option(config, "run-as")[1])
    except pytest.UsageError as exc:  # no test will run: the reports asked for say why
        _usage_error_reports(config, str(exc))
        raise
    if settings.run_as is not None:
        proctree.watch_uid(settings.run_as[0])  # its processes are ours to find and end
    config.stash[_settings_key] = settings
    config.stash[_scores_key] = Scoreboard()
    config.pluginmanager.register(_ScoreReporter(config), "grader-scores")


def _usage_error_reports(config: pytest.Config, error: str) -> None:
    paths = [_option(config, name)[0] for name in ("grade-json", "classroom-json")]
    if not any(paths):
        return
    message = (f"Grading did not start: {error}. This is not a score for your work; "
               "tell the course staff.")
    try:
        reports.error_reports(message, *(p or None for p in paths))
    except OSError:
        pass


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
    path = Path(tempfile.mkdtemp(prefix="parakit-grading-"))
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
def runtime(settings: Settings, workdir: Path) -> Runtime:
    """What the harness needs to run graded code (the MPI launcher is found lazily)."""
    try:
        mpiexec, mpi_error = detect_mpiexec(settings.mpiexec or None), ""
    except RuntimeError as exc:  # MPI tests then fail with this message; the others still run
        mpiexec, mpi_error = (), str(exc)
    return Runtime(target=settings.target, timeout=settings.call_timeout, mpiexec=mpiexec,
                   workdir=workdir, mpi_error=mpi_error, limits=settings.limits,
                   run_as=settings.run_as)


@pytest.fixture(scope="session")
def ipp_cluster(settings: Settings, workdir: Path) -> Iterator[SessionCluster]:
    """The session's ipyparallel cluster, started on first use by an ipp test."""
    cluster = SessionCluster(settings.workers, workdir, settings.ipp_connect or None,
                             run_as=settings.run_as)
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def grading(runtime: Runtime, ipp_cluster: SessionCluster) -> Grading:
    """Runs graded calls on any backend; results are cached for the session. From here on,
    orphans of graded code (double fork, setsid) come back to this process, not to init."""
    proctree.become_subreaper()
    return Grading(runtime, ipp_cluster)
