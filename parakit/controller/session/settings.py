"""The grader's options, resolved once per session into a frozen :class:`Settings`.

Each option has one help text shared by the command line and the ini file (``grader_<name>``);
a bad value stops the run with a message that names the option and where it was set.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import subprocess
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from parakit import KIT_ROOT
from parakit.controller.processes.hosts import Hosts, HostsError
from parakit.controller.session import reports
from parakit.controller.session.runtime import Limits, Target, child_env

OPTIONS = {  # name: (default, help); the ini key is "grader_" + name with dashes as underscores
    "target": ("student", "package to grade: student, reference, or the path of a directory "
                          "with the same modules as student/ (default: student)"),
    "target-name": ("", "how messages and the score table name the graded package, e.g. the "
                        "submission's name where it is graded from a copy (default: the "
                        "--target given)"),
    "workers": ("4", "largest process count for the parallel runs (default: 4)"),
    "call-timeout": ("30", "seconds a graded call may run before it is stopped (default: 30)"),
    "hang-budget": ("150", "seconds one grading may lose to calls that hang, in all: a hang "
                           "costs only itself until they are spent; then a function that hung "
                           "is not run again and other calls stop after 5 s (default: 150)"),
    "mpiexec": ("", "MPI launch command, e.g. 'mpirun --oversubscribe' (default: the mpiexec "
                    "next to python or on PATH, with the flags its MPI needs)"),
    "ipp-connect": ("", "client connection file of a running ipyparallel cluster (from "
                        "`ipcluster start -n X`) to use instead of starting one"),
    "hosts": ("", "run MPI ranks and ipyparallel engines on these hosts, e.g. node1:2,node2:2 "
                  "(HOST:SLOTS; reached with --remote-shell; needs --workdir), or 'slurm': the "
                  "nodes of the allocation this runs in, reached with srun; the pool stays "
                  "on this machine (default: this machine only)"),
    "hostfile": ("", "the hosts in a file, one HOST[:SLOTS] per line (MPICH's format)"),
    "remote-shell": ("ssh", "how to run a command on a host: PROGRAM HOST COMMAND "
                            "(default: ssh)"),
    "remote-copy": ("scp", "how ipyparallel copies engine logs back from a host (default: scp)"),
    "workdir": ("", "folder for the job folders (results, traces); with --hosts one that every "
                    "host sees at the same path, e.g. in a shared home or scratch (default: "
                    "the system's temporary folder)"),
    "grade-json": ("", "write Gradescope's results.json (score per test) to this path"),
    "classroom-json": ("", "write GitHub Classroom's runner result (version 3) to this path"),
    "pictures": ("", "folder for the pictures failures draw (timelines, mismatches); Gradescope's "
                     "results.json embeds those its failures name (default: "
                     "grader-results/pictures under the folder pytest runs from)"),
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
    hang_budget: float
    mpiexec: str
    ipp_connect: str
    limits: Limits
    grade_json: str = ""  # Gradescope results.json to write
    classroom_json: str = ""  # GitHub Classroom runner result to write
    pictures: Path | None = None  # where failures draw (None: grader-results/pictures)
    hidden_tests: Path | None = None  # instructor-only tests, if there are any
    hidden_visibility: str = "after_published"
    run_as: tuple[int, int] | None = None  # uid and gid the graded code runs as (--run-as)
    hosts: Hosts = field(default_factory=Hosts)  # where ranks and engines run
    workdir: Path | None = None  # where job folders go (None: the system's temporary folder)

    @property
    def worker_counts(self) -> list[int]:
        """Process counts every parallel exercise is graded at: 1, 2, 3 and --workers."""
        return sorted({n for n in (1, 2, 3, self.workers) if n <= self.workers})


def add_options(parser: pytest.Parser) -> None:
    """Every option on the command line (``--name``) and in the ini file (``grader_name``)."""
    group = parser.getgroup("grader", "parallel-python exercise grader")
    for name, (default, help_text) in OPTIONS.items():
        ini = "grader_" + name.replace("-", "_")
        group.addoption(f"--{name}", dest=ini, default=None, help=help_text)
        parser.addini(ini, help_text, default=default)


def option(config: pytest.Config, name: str) -> tuple[str, str]:
    """The value of an option and where it came from (for error messages)."""
    ini = "grader_" + name.replace("-", "_")
    value = config.getoption(ini)
    if value is not None:
        return value, f"--{name}"
    return config.getini(ini), f"ini option {ini}"


def _number(config: pytest.Config, name: str, kind: type, minimum: float) -> float:
    value, source = option(config, name)
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
        _, source = option(config, "workers")
        raise pytest.UsageError(
            f"{source}={workers}: at most {max_workers()} on this machine ({os.cpu_count()} "
            f"cores, {WORKERS_PER_CORE} processes per core): every backend starts that many "
            "processes at once")
    return workers


def _size(config: pytest.Config, name: str) -> int:
    value, source = option(config, name)
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*([A-Za-z]*)\s*", value)
    if not m or m[2].lower() not in _UNITS:
        raise pytest.UsageError(f"{source}={value!r}: expected a size such as 512MiB or 2GiB")
    return int(float(m[1]) * _UNITS[m[2].lower()])


def resolve_settings(config: pytest.Config) -> Settings:
    target, source = option(config, "target")
    try:
        resolved = Target.resolve(target)
    except ValueError as exc:
        raise pytest.UsageError(str(exc).replace("--target", source, 1)) from None
    name = option(config, "target-name")[0].strip()
    if name:
        resolved = replace(resolved, display=name)
    return Settings(**_report_settings(config), target=resolved,
                    workers=_workers(config),
                    call_timeout=_number(config, "call-timeout", float, 1),
                    hang_budget=_number(config, "hang-budget", float, 0),
                    mpiexec=option(config, "mpiexec")[0],
                    ipp_connect=option(config, "ipp-connect")[0],
                    limits=Limits(memory=_size(config, "memory-limit"),
                                  cpu=int(_number(config, "cpu-limit", int, 0)),
                                  output=_size(config, "output-limit")),
                    run_as=_run_as(config), **_placement(config))


def _placement(config: pytest.Config) -> dict:
    """--hosts / --hostfile, how to reach them, and the work folder they share."""
    try:
        hosts = Hosts.parse(option(config, "hosts")[0], option(config, "hostfile")[0],
                            option(config, "remote-shell")[0], option(config, "remote-copy")[0])
    except HostsError as exc:
        raise pytest.UsageError(str(exc)) from None
    value, source = option(config, "workdir")
    workdir = Path(value).expanduser().resolve() if value else None
    if workdir is not None and not workdir.is_dir():
        raise pytest.UsageError(f"{source}={value!r}: no such folder")
    if hosts.several and workdir is None:
        raise pytest.UsageError(
            "--hosts/--hostfile: give --workdir, a folder every host sees at the same path "
            "(results and traces come back through it), e.g. in a shared home or scratch")
    if hosts.several and option(config, "run-as")[0].strip():
        raise pytest.UsageError("--run-as is for a single grading machine; it cannot be "
                                "combined with --hosts")
    return {"hosts": hosts, "workdir": workdir}


def _run_as(config: pytest.Config) -> tuple[int, int] | None:
    """The uid and gid of ``--run-as``: an existing user other than root, and we are root."""
    value, source = option(config, "run-as")
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
import parakit.worker.grade, problems.trace  # the kit, as graded children load it
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
            f"run {sys.executable} and its libraries, the kit ({KIT_ROOT}) "
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
    hidden, _ = option(config, "hidden-tests")
    hidden_dir = None
    if hidden and hidden.lower() != "none":
        path = Path(hidden).expanduser()
        path = path if path.is_absolute() else KIT_ROOT / path
        hidden_dir = path.resolve() if path.is_dir() else None
    visibility, source = option(config, "hidden-visibility")
    if visibility not in reports.VISIBILITIES:
        raise pytest.UsageError(f"{source}={visibility!r}: expected one of "
                                + ", ".join(reports.VISIBILITIES))
    pictures = option(config, "pictures")[0]
    return {"grade_json": option(config, "grade-json")[0],
            "classroom_json": option(config, "classroom-json")[0],
            "pictures": Path(pictures).expanduser().resolve() if pictures
            else Path(config.rootpath, "grader-results", "pictures"),
            "hidden_tests": hidden_dir, "hidden_visibility": visibility}


