"""The grading runner: load the target, call the graded function on each case, write results.

Started by the controller (``parakit.controller.session.jobs``) through its backend as
``python -m parakit.worker.grade JOBDIR`` (pool, ipyparallel, plain) or
``mpiexec -n P python -m mpi4py -m parakit.worker.grade JOBDIR`` (MPI, where ``-m mpi4py``
turns an uncaught exception on one rank into ``MPI_Abort`` instead of a hang). It reads
``JOBDIR/job.pkl`` (written by the controller) and writes, for every case i and rank r,
``JOBDIR/result-{i}-{r}.json`` as data (``parakit.wire``: JSON and ``.npy``, never a pickle); a
missing file is evidence too.

Nothing this runner reports decides a verdict on its own: the graded code runs in this process
and could change it. The controller checks the inputs (array arguments live in files it reads
itself), the processes left behind and the process ids from outside.
"""

from __future__ import annotations

import importlib
import os
import pickle
import socket
import sys
import traceback
from pathlib import Path

import numpy as np

from parakit import wire
from parakit.worker import (
    ERROR,
    IMPORT_ERROR,
    LIMIT,
    MISSING_FUNCTION,
    MISSING_MODULE,
    NOT_IMPLEMENTED,
    OK,
    RUNNER_ABORT,
    apply_limits,
    contexts,
    idle_cheaply,
    mark,
    watch_stacks,
)
from problems import trace

COUNTED_WAIT = 3.0  # seconds a rank waits for the controller to note its CPU time


def _size(nbytes: int) -> str:
    return f"{nbytes / 2**30:g} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:g} MiB"


def _pool_worker_init(jobdir: str, trace_dir: str) -> None:
    watch_stacks(jobdir, f"pool worker {os.getpid()}")
    trace.set_directory(trace_dir)


def _where(job: dict) -> str:
    return f"{job['display']}/{job['module']}.py"


def load_function(job: dict):
    """Import the graded function; return (function, None) or (None, failure dict)."""
    where = _where(job)
    if not Path(job["target_dir"], job["module"] + ".py").is_file():
        return None, {"status": MISSING_MODULE, "message": f"{where} does not exist"}
    sys.path.insert(0, str(Path(job["target_dir"]).parent))
    try:
        module = importlib.import_module(f"{job['package']}.{job['module']}")
    except SyntaxError as exc:
        msg = f"{where} has a syntax error at line {exc.lineno}: {exc.msg}"
        return None, {"status": IMPORT_ERROR, "message": msg}
    except BaseException as exc:  # noqa: BLE001  (anything at import time is the submission's)
        msg = f"importing {where} failed: {type(exc).__name__}: {exc}"
        return None, {"status": IMPORT_ERROR, "message": msg, "traceback": _tb(exc)}
    func = getattr(module, job["function"], None)
    if not callable(func):
        message = f"{where} has no function {job['function']}"
        return None, {"status": MISSING_FUNCTION, "message": message}
    return func, None


def _tb(exc: BaseException) -> str:
    """The traceback without the runner's own frames."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename != __file__]
    text = "".join(traceback.format_list(frames))
    return text + "".join(traceback.format_exception_only(type(exc), exc))


def _failure(job: dict, exc: BaseException) -> dict:
    if isinstance(exc, NotImplementedError):
        message = f"not implemented yet: {_where(job)} {job['function']}"
        return {"status": NOT_IMPLEMENTED, "message": message}
    if isinstance(exc, MemoryError) and job.get("memory_limit"):
        return {"status": LIMIT, "message": f"exceeded the memory limit of "
                f"{_size(job['memory_limit'])} per process ({type(exc).__name__}: {exc})",
                "traceback": _tb(exc)}
    return {"status": ERROR, "message": f"{type(exc).__name__}: {exc}", "traceback": _tb(exc)}


def write_result(jobdir: str, case: int, rank: int, result: dict) -> None:
    """Write one result as data (``parakit.wire``): JSON, plus a ``.npy`` for an array value.

    A value with no data form becomes the call's failure ("returned an unsupported type").
    """
    result = {"pid": os.getpid(), "host": socket.gethostname(), "rank": rank, **result}
    if "value" in result:
        try:
            result["value"] = wire.encode(result["value"],
                                          Path(jobdir, f"value-{case}-{rank}.npy"))
        except wire.Unsupported as exc:
            result.pop("value")
            result.update(status=ERROR, message=str(exc), unsupported=True)
    wire.write_json(Path(jobdir, f"result-{case}-{rank}.json"), result)


def _case_args(case: dict, rank: int, jobdir: str) -> tuple:
    """The arguments of a case on this rank; array arguments mapped from their files."""
    if rank == 0 or case.get("everywhere", False):
        return tuple(wire.load_argument(arg, jobdir) for arg in case["args"])
    return (None,) * len(case["args"])


def _call(func, args: tuple, ctx) -> dict:
    """Call the graded function. The grader checks its inputs from outside: array arguments
    in the files it reads itself, the others by the digests sent back here."""
    value = func(*args) if ctx is None else func(*args, ctx)
    digests = [None if isinstance(a, np.ndarray) else wire.digest(a) for a in args]
    return {"status": OK, "value": value, "arg_digests": digests}


def run_mpi(job: dict, jobdir: str) -> None:
    world = contexts.mpi_world()
    rank = world.Get_rank()
    watch_stacks(jobdir, f"rank {rank}")
    # the CPU time the controller counts starts here, before any graded code has run
    mark(jobdir, f"loading-{rank}", wait_for=f"counted-{rank}", timeout=COUNTED_WAIT)
    func, failure = load_function(job)
    for i, case in enumerate(job["cases"]):
        if failure:  # every rank failed to load the same way: report and stop, no abort needed
            write_result(jobdir, i, rank, failure)
            continue
        trace.set_directory(Path(jobdir, f"trace-{i}"))
        comm = world.Dup()  # a fresh communicator: a broken case cannot leak messages into the next
        try:
            result = _call(func, _case_args(case, rank, jobdir), comm)
        except BaseException as exc:  # noqa: BLE001
            result = _failure(job, exc)
        write_result(jobdir, i, rank, result)
        if result["status"] != OK:
            # The other ranks may be blocked waiting for this one: end the whole job now.
            sys.stdout.flush()
            sys.stderr.flush()
            world.Abort(RUNNER_ABORT)
        comm.Free()
    # The controller reads every rank's CPU time when the last results are in: stay until then.
    mark(jobdir, f"done-{rank}", wait_for="released", timeout=COUNTED_WAIT)


def _reimport_function(job: dict) -> tuple:
    """The graded function imported afresh, its package's modules forgotten first: one child
    serves every worker count of a pool or ipyparallel function, and nothing the graded code
    kept in its modules from the calls at one count may answer for the next."""
    package = job["package"]
    for name in [n for n in sys.modules if n == package or n.startswith(package + ".")]:
        del sys.modules[name]
    return load_function(job)


def _count_changes(cases: list[dict], i: int) -> bool:
    """Whether case ``i`` starts another worker count than the case before it."""
    return i > 0 and cases[i].get("workers") != cases[i - 1].get("workers")


def _run_cases(job: dict, jobdir: str, label: str, call_case) -> None:
    """The loop of the single-process runners: load the function (again at each worker
    count), then per case turn tracing on (work in this process is evidence too),
    ``call_case(func, i, case, trace_dir)``, and write the result."""
    watch_stacks(jobdir, label)
    mark(jobdir, "loading")  # the CPU time the controller counts starts here
    func, failure = load_function(job)
    for i, case in enumerate(job["cases"]):
        if _count_changes(job["cases"], i):
            func, failure = _reimport_function(job)
        if failure:
            write_result(jobdir, i, 0, failure)
            continue
        trace_dir = str(Path(jobdir, f"trace-{i}"))
        trace.set_directory(trace_dir)
        mark(jobdir, f"ready-{i}")
        try:
            result = call_case(func, i, case, trace_dir)
        except BaseException as exc:  # noqa: BLE001
            result = _failure(job, exc)
        write_result(jobdir, i, 0, result)
    # The controller reads this process's CPU time when the last result is in: stay until then
    # (the interpreter's shutdown is not the call's).
    mark(jobdir, "done", wait_for="released", timeout=COUNTED_WAIT)


def run_pool(job: dict, jobdir: str) -> None:
    def call_case(func, i: int, case: dict, trace_dir: str) -> dict:
        # A fresh pool per case. The arguments are mapped after the workers are forked: a
        # worker's copy is not the caller's data.
        try:
            with contexts.pool(case.get("workers", job["workers"]), _pool_worker_init,
                               (jobdir, trace_dir)) as pool, contexts.kept_open(pool):
                # the controller notes the pool's workers before the graded code runs
                mark(jobdir, f"pool-{i}", wait_for=f"seen-{i}")
                result = _call(func, _case_args(case, 0, jobdir), pool)
                # The controller looks at the workers (their pids, their CPU time) while they live.
                mark(jobdir, f"alive-{i}", wait_for=f"ack-{i}")
                return result
        except BaseException as exc:  # noqa: BLE001
            return _failure(job, exc)

    _run_cases(job, jobdir, "client (the process that owns the pool)", call_case)


def run_plain(job: dict, jobdir: str) -> None:
    """Call the function with its arguments only (no comm, pool or view): serial exercises."""
    _run_cases(job, jobdir, "the process running it",
               lambda func, i, case, trace_dir: _call(func, _case_args(case, 0, jobdir), None))


def run_ipp(job: dict, jobdir: str) -> None:
    watch_stacks(jobdir, "client")
    failure = None
    try:  # connected first: the client's CPU time that the controller counts is the call's
        with contexts.ipp_engines(job["connection_file"], job["workers"],
                                  job["connect_timeout"]) as (client, targets):
            mark(jobdir, "loading")  # the CPU time the controller counts starts here
            func, failure = load_function(job)
            if failure is None:
                _ipp_cases(job, jobdir, func, client, targets)
    except contexts.NotEnoughEngines as exc:
        failure = {"status": ERROR, "message": str(exc)}
    if failure:
        for i in range(len(job["cases"])):
            write_result(jobdir, i, 0, failure)


def _ipp_cases(job: dict, jobdir: str, func, client, targets: list) -> None:
    if job.get("clear_engines"):  # the session's cluster: a fresh namespace per job
        client[:].clear(block=True)
    fresh = [f"{job['package']}.{job['module']}", job["package"]]
    sys_path = [str(Path(job["target_dir"]).parent)]
    for i, case in enumerate(job["cases"]):
        if _count_changes(job["cases"], i):  # as new for each worker count, engines included
            func, failure = _reimport_function(job)
            if job.get("clear_engines"):
                client[:].clear(block=True)
            if failure:
                write_result(jobdir, i, 0, failure)
                continue
        trace_dir = str(Path(jobdir, f"trace-{i}"))
        trace.set_directory(trace_dir)
        mine = targets[:case.get("workers", len(targets))]  # a job may serve several counts
        setups = [client[t].apply_async(contexts.engine_setup, sys_path, fresh, trace_dir,
                                        (jobdir, f"engine {t}")) for t in mine]
        for setup in setups:  # sent to every engine at once: one round trip, not P
            setup.get()
        view = contexts.ipp_view(client, mine, job.get("view") == "balanced")
        # The controller reads the engines' CPU time before the call (through the remote
        # shell on other hosts, which takes longer than a small case): wait for its answer.
        mark(jobdir, f"ready-{i}", wait_for=f"go-{i}")
        try:
            result = _call(func, _case_args(case, 0, jobdir), view)
        except BaseException as exc:  # noqa: BLE001
            result = _failure(job, exc)
        write_result(jobdir, i, 0, result)
    # Tracing off on every engine: the trace folders go with the grading session, and a
    # user's cluster (--ipp-connect) outlives it. An engine still stuck is left alone.
    try:
        client[:].apply_async(contexts.engine_untrace).get(timeout=5)
    except Exception:  # noqa: BLE001
        pass


def main(jobdir: str) -> None:
    # The job file is written by the controller (trusted); only results go back, as data.
    job = pickle.loads(Path(jobdir, "job.pkl").read_bytes())
    idle_cheaply()
    apply_limits(job.get("memory_limit", 0), job.get("cpu_limit", 0))
    runners = {"mpi": run_mpi, "pool": run_pool, "ipp": run_ipp, "plain": run_plain}
    runners[job["backend"]](job, jobdir)


if __name__ == "__main__":
    main(sys.argv[1])
