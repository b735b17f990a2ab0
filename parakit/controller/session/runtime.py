"""What every graded run needs, resolved once per session: the target, the limits, the
backends, and the environment of every process the controller starts."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from parakit import KIT_ROOT, wire
from parakit.controller.session.backend import Backend
from problems import trace


@dataclass(frozen=True)
class Target:
    """The graded package: a directory of modules named like ``student/``."""

    directory: Path
    package: str  # import name: the directory's name
    display: str  # how messages name it, e.g. "student"

    @classmethod
    def resolve(cls, spec: str, root: Path = KIT_ROOT) -> Target:
        """``student``, ``reference`` or a path to a directory; ValueError says what is wrong."""
        path = Path(spec).expanduser()
        if spec in ("student", "reference") and not path.exists():
            path = root / spec
        if not path.is_dir():
            raise ValueError(f"--target {spec}: no such directory (expected student, reference "
                             "or the path of a directory holding hello.py, matmul.py, ...)")
        path = path.resolve()
        if not path.name.isidentifier():
            raise ValueError(f"--target {spec}: the directory name {path.name!r} is not a valid "
                             "Python package name; rename it (e.g. submission_1)")
        if path.name in ("problems", "grader", "parakit", "tests") \
                or path.name in sys.stdlib_module_names:
            raise ValueError(f"--target {spec}: the directory name {path.name!r} would shadow "
                             "another module; rename it (e.g. submission)")
        clash = _installed_elsewhere(path)
        if clash:
            raise ValueError(f"--target {spec}: the directory name {path.name!r} is also the "
                             f"name of an installed package ({clash}); the graded code would "
                             f"import your folder in its place (or the other way round): "
                             "rename the directory (e.g. submission)")
        display = spec.rstrip("/") if not Path(spec).is_absolute() else str(path)
        return cls(path, path.name, display)


def _installed_elsewhere(path: Path) -> str:
    """Where a module named like the target is installed, if not the target itself ('' if
    none). The kit's own student/ and reference/ may be shadowed: the child never imports them.
    """
    if path.name in ("student", "reference"):
        return ""
    try:
        spec = importlib.util.find_spec(path.name)
    except (ImportError, ValueError):
        return ""
    if spec is None:
        return ""
    where = spec.origin if spec.origin not in (None, "namespace") else \
        next(iter(spec.submodule_search_locations or []), None)
    if where is None or Path(where).resolve().is_relative_to(path):
        return ""
    return str(where)


@dataclass(frozen=True)
class Runtime:
    """What every graded run needs, resolved once per session by the plugin."""

    target: Target
    timeout: float  # seconds per case
    workdir: Path  # where job directories go
    backends: Mapping[str, Backend]  # by name: mpi, ipp, pool, plain (parakit.backends)
    connect_timeout: float = 60.0
    limits: Limits = field(default_factory=lambda: Limits())
    run_as: tuple[int, int] | None = None  # uid, gid of graded processes (--run-as); None: ours
    worker_counts: tuple[int, ...] = ()  # every count the session grades at (one child each
    #                                      for MPI; one child for them all for pool and ipp)
    results: ResultBudget = field(default_factory=lambda: ResultBudget())
    hangs: HangBudget = field(default_factory=lambda: HangBudget())

    def call_timeout(self) -> float:
        """The next call's timeout (``HangBudget.timeout``)."""
        return self.hangs.timeout(self.timeout)


HANG_BUDGET = 150.0  # seconds one grading may lose to calls that hang (--hang-budget)
HANG_FLOOR = 5.0  # seconds a call may always take, also once that time is spent


@dataclass
class HangBudget:
    """The wall time one grading (one submission) may lose to graded calls that hang, all
    together. While it lasts, a call that hangs costs its timeout and only itself: the cases
    after it run in a fresh child, other worker counts and functions as usual. Once it is
    spent, a function that hung is not run again, and every other call is stopped after
    ``HANG_FLOOR`` seconds, so that a submission that hangs everywhere costs at most about
    ``seconds + HANG_FLOOR`` per function, plus its normal run (docs/robustness.md)."""

    seconds: float = HANG_BUDGET
    spent: float = 0.0
    hung: list[str] = field(default_factory=list)  # what hung, in order, and for how long

    def timeout(self, call_timeout: float) -> float:
        """The call timeout while the budget lasts, then what is left of it, never less than
        ``HANG_FLOOR`` (nor more than the call timeout)."""
        return min(call_timeout, max(self.seconds - self.spent, HANG_FLOOR))

    def charge(self, seconds: float, what: str) -> None:
        """A call hung for ``seconds``: ``what`` (the function, its case, its worker count)."""
        self.spent += seconds
        self.hung.append(f"{what} did not finish within {seconds:g} s")

    @property
    def exhausted(self) -> bool:
        return self.spent >= self.seconds

    def why_not_run(self) -> str:
        """Why a case is not run once the budget is spent, naming what hung."""
        shown = "; ".join(self.hung[:3]) + (f"; and {len(self.hung) - 3} more"
                                            if len(self.hung) > 3 else "")
        return (f"not run: earlier calls used up the grading's time for calls that hang "
                f"({self.seconds:g} s in all): {shown}")


def describe_args(args: tuple) -> str:
    """A call's arguments in a few words, for messages: arrays by shape, specs by size."""
    parts = []
    for a in args:
        if hasattr(a, "shape"):
            parts.append("a " + "x".join(map(str, a.shape)) + " array")
        elif hasattr(a, "w") and hasattr(a, "h"):
            parts.append(f"a {a.w}x{a.h} {type(a).__name__}")
        elif isinstance(a, (str, bytes, list, tuple, dict)):
            parts.append(f"a {type(a).__name__} of length {len(a)}")
        elif isinstance(a, (int, float)):
            parts.append(repr(a))
        else:
            parts.append(type(a).__name__)
    return ", ".join(parts)


RESULTS_BUDGET = 1 << 30  # the reference's results: under 10 MiB in a whole grading


@dataclass
class ResultBudget:
    """How many bytes of graded results one grading reads and keeps, all results together:
    a submission that returns huge values fails its calls, it does not exhaust the grader."""

    limit: int = RESULTS_BUDGET
    used: int = 0

    def take(self, nbytes: int) -> str:
        """'' if ``nbytes`` more fit (and count them), else why not."""
        if self.used + nbytes > self.limit:
            return (f"its results take {nbytes / 2**20:.0f} MiB, and the grading keeps at "
                    f"most {self.limit >> 20} MiB of results in all ({self.used >> 20} MiB "
                    "taken so far): return only what the call asks for")
        self.used += nbytes
        return ""



def hand_over(jobdir: Path, run_as: tuple[int, int] | None) -> None:
    """Give a new job folder and all in it to the ``--run-as`` user, before any graded process
    starts: graded code works on its arguments and writes its results and traces there, and
    nowhere else of ours."""
    if run_as is not None:
        for path in [jobdir, *jobdir.rglob("*")]:
            os.lchown(path, *run_as)


def read_job_file(path: Path) -> str:
    """A text file of a job folder ('' if there is none that may be read): graded code could
    have replaced it, so never through a link (``parakit.wire.read_untrusted``)."""
    try:
        return wire.read_untrusted(path).decode(errors="replace")
    except (OSError, wire.WireError):
        return ""


@dataclass(frozen=True)
class Limits:
    """Resource limits of every graded process (0: no limit)."""

    memory: int = 2 << 30  # bytes of address space per process (RLIMIT_AS)
    cpu: int = 300  # CPU seconds per process (RLIMIT_CPU)
    output: int = 1 << 20  # bytes of stdout and of stderr kept per child


# A waiting MPICH rank polls without end, so its CPU time would say nothing about where the
# work ran: in graded jobs (``controller.jobs``) it sleeps after each empty poll instead, for a
# timer slack the runner sets (``parakit.worker.idle_cheaply``); the grader's setting wins,
# verdicts rest on it. Not for the bench, which times MPI as students run it.
MPICH_IDLE = {"MPIR_CVAR_CH4_PROGRESS_THROTTLE": "1",
              "MPIR_CVAR_CH4_PROGRESS_THROTTLE_NO_PROGRESS_COUNT": "1",
              "MPIR_CVAR_ENABLE_HEAVY_YIELD": "1"}


SCHEDULER_VARS = ("SLURM_", "SLURMD_", "PMI_", "PMIX_")  # a batch system's, for its launchers


def child_env(extra: dict[str, str] | None = None, scheduler: bool = False) -> dict[str, str]:
    """The environment of every graded child: one BLAS/OpenMP thread, unbuffered, headless;
    a batch system's variables only with ``scheduler`` (its own launcher starts the ranks)."""
    # Inside a Slurm job (a class graded as an array, salloc), MPICH's mpiexec would start the
    # ranks through srun, as steps outside the grader's process tree where neither the CPU
    # rule nor the leftover check can see them: the graded child does not know it is in one.
    # Other nodes of an allocation are used through --hosts (--hosts slurm: parakit-srun-shell,
    # which finds the job in PARAKIT_SLURM_JOB_ID), as any others. SLURM_CONF says where the
    # cluster's settings are, not that this is a job: kept.
    env = {k: v for k, v in os.environ.items()
           if scheduler or k == "SLURM_CONF" or not k.startswith(SCHEDULER_VARS)}
    if not scheduler and os.environ.get("SLURM_JOB_ID"):
        env["PARAKIT_SLURM_JOB_ID"] = os.environ["SLURM_JOB_ID"]
    pythonpath = [str(KIT_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env.update({
        "PYTHONPATH": os.pathsep.join(pythonpath),
        "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1", "MPLBACKEND": "Agg",
    })
    env.pop(trace.ENV_VAR, None)
    # The mpich wheel's UCX patches the C library's mmap when libmpi is loaded, so that it
    # hears of memory being unmapped (for its cache of RDMA registrations): 40 ms in every
    # rank, a quarter of its start, for networks these machines do not have. A user's own
    # setting wins.
    env.setdefault("UCX_MEM_EVENTS", "no")
    env.update(extra or {})
    return env


