"""The grader's pytest plugin: options, collection, and the session's fixtures.

Points, the score table and the CI reports are ``grader.scores``. The options are declared
and resolved once, at configure time, by ``parakit.controller.session.settings`` into a frozen
``Settings``; a bad value stops the run with a message that names the option. The fixtures
hand the grader's tests the session's backends and a ``Grading``
(``parakit.controller.session.grading``) that runs graded calls on them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from grader.scores import Scoreboard, ScoreReporter
from parakit import backends
from parakit.controller.processes import proctree
from parakit.controller.session import reports, source
from parakit.controller.session.grading import Grading
from parakit.controller.session.runtime import HangBudget, Runtime, hand_over
from parakit.controller.session.settings import (
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


_settings_key = pytest.StashKey[Settings]()
_scores_key = pytest.StashKey[Scoreboard]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "points(n): points a grader test is worth (default 1)")
    config.addinivalue_line("markers", "workers(n): a grader test that runs at n processes "
                            "whatever --workers says (the ipyparallel cluster gets n engines)")
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
    config.pluginmanager.register(ScoreReporter(config.stash[_scores_key], settings),
                                  "grader-scores")


def _one_line_per_failure(config: pytest.Config) -> None:
    """In a grading run, ``grader.scores`` lists the failures, one line each (and the details
    of those that have some): pytest's own failures section and short summary would repeat
    them. A student asking for ``--tb`` or ``-r`` gets what they ask for."""
    from _pytest.terminal import _REPORTCHARS_DEFAULT

    terminal = config.pluginmanager.get_plugin("terminalreporter")
    grading = any(Path(str(arg).split("::")[0]).resolve().is_relative_to(GRADER_DIR)
                  for arg in config.args)
    if terminal is None or not grading:
        return
    if config.option.tbstyle == "auto":
        config.option.tbstyle = "no"
        config.pluginmanager.get_plugin("grader-scores").lists_failures = True
    if config.option.reportchars == _REPORTCHARS_DEFAULT:
        terminal.reportchars = terminal.reportchars.replace("f", "")


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
    _one_line_per_failure(session.config)
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


def _backend(item: pytest.Item) -> str | None:
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("backend") if callspec is not None else None


def _runs_ipp_code(items: list[pytest.Item], settings: Settings) -> bool:
    """Whether a selected test runs a function of the target on ipyparallel that is not a
    stub (one with ``_ipp`` in its name, in its exercise's module)."""
    modules = {reports.exercise_of(item.path) for item in items if _backend(item) == "ipp"}
    return any(source.any_implemented(settings.target.directory / f"{module}.py", "_ipp")
               for module in modules)


def _engines(items: list[pytest.Item], settings: Settings) -> int:
    """The cluster's size: --workers, or more if a selected ipyparallel test asks for more."""
    asked = [m.args[0] for item in items if _backend(item) == "ipp"
             for m in item.iter_markers("workers")]
    return max([settings.workers, *asked])


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    """ipyparallel tests last in each module: the cluster started at the session's start comes
    up while the others run (a stable sort: the order is otherwise the file's)."""
    first = {}
    for item in items:
        first.setdefault(item.path, len(first))
    items.sort(key=lambda item: (first[item.path],
                                 is_graded(config, item.path) and _backend(item) == "ipp"))


def pytest_collection_finish(session: pytest.Session) -> None:
    for item in session.items:  # after -k / -m deselection: only what runs counts
        if is_graded(session.config, item.path):
            session.config.stash[_scores_key].add_item(item)


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


@pytest.fixture(scope="session")
def pictures(settings: Settings) -> Path:
    """Where failing tests draw what they saw (e.g. a timeline of an unbalanced run): kept
    after the run, in ``--pictures`` or under the folder pytest runs from."""
    return settings.pictures or Path("grader-results", "pictures").resolve()


@pytest.fixture
def outputs(settings: Settings, workdir: Path) -> Path:
    """A new, empty folder graded code may write to (the ``--run-as`` user's). A file read
    back from it may be a symlink planted by graded code: check ``is_symlink()`` first."""
    path = Path(tempfile.mkdtemp(prefix="outputs-", dir=workdir))
    hand_over(path, settings.run_as)
    return path


def _terminal_line(config: pytest.Config):
    """A function that writes a line on the terminal, also from inside a test (whose output
    pytest captures), or None without a terminal."""
    terminal = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if terminal is None:
        return None

    def write(message: str) -> None:
        # Mid-way through a line of progress dots: the message gets a line of its own, and
        # the next file's results start theirs (pytest keeps no public "column" of its own).
        if terminal._tw.width_of_current_line:
            terminal.line("")
            terminal.currentfspath = None
        terminal.write_line(message)

    def say(message: str) -> None:
        if capture is None:
            write(message)
            return
        with capture.global_and_fixture_disabled():
            write(message)
    return say


@pytest.fixture(scope="session")
def session_backends(request: pytest.FixtureRequest, settings: Settings,
                     workdir: Path) -> Iterator[dict[str, backends.Backend]]:
    """The session's backends (parakit.backends); the ipyparallel cluster starts on first use
    by an ipp test (with a line on the terminal: it takes seconds), and everything is stopped
    at the end."""
    found = backends.session(_engines(request.session.items, settings), workdir,
                             settings.mpiexec or None, settings.ipp_connect or None,
                             settings.run_as, settings.hosts, say=_terminal_line(request.config))
    cluster = found["ipp"].cluster
    if cluster.can_launch_early and _runs_ipp_code(request.session.items, settings):
        try:  # its engines come up while the tests before the first ipyparallel one run
            cluster.launch()
        except backends.BackendError:
            pass  # the first ipyparallel test tries again, and fails with the reason
    yield found
    backends.stop_all(found)


@pytest.fixture(scope="session")
def runtime(settings: Settings, workdir: Path,
            session_backends: dict[str, backends.Backend]) -> Runtime:
    """What the jobs need to run graded code."""
    return Runtime(target=settings.target, timeout=settings.call_timeout, workdir=workdir,
                   backends=session_backends, limits=settings.limits, run_as=settings.run_as,
                   worker_counts=tuple(settings.worker_counts),
                   hangs=HangBudget(settings.hang_budget))


@pytest.fixture(scope="session")
def grading(runtime: Runtime) -> Grading:
    """Runs graded calls on any backend; results are cached for the session. From here on,
    orphans of graded code (double fork, setsid) come back to this process, not to init, and
    graded code cannot reach into this one through /proc."""
    proctree.become_subreaper()
    proctree.keep_private()
    return Grading(runtime)
