"""The code that runs in a graded child process: load the target, call it, write results.

Started by the harness as ``python -m grader.child JOBDIR`` (pool, ipyparallel and plain) or
``mpiexec -n P python -m mpi4py -m grader.child JOBDIR`` (MPI, where ``-m mpi4py`` turns an
uncaught exception on one rank into ``MPI_Abort`` instead of a hang). It reads ``JOBDIR/job.pkl``
(written by the grader) and writes, for every case i and rank r, ``JOBDIR/result-{i}-{r}.json``
as data (``grader.wire``: JSON and ``.npy``, never a pickle); a missing file is evidence too
(the harness reports it). It imports only the standard library, numpy, ``grader.wire``,
``problems.trace``, mpi4py or ipyparallel, and the graded package, never pytest or the plugin.

Nothing this runner reports decides a verdict on its own: the graded code runs in this process
and could change it. The harness checks the inputs (array arguments live in files it reads
itself), the processes left behind and the process ids from outside.

On SIGUSR1 every process of the child (each MPI rank, each pool worker) writes its Python stack
to ``JOBDIR/stack-{pid}.txt``, so that a hang can be diagnosed before the harness kills it.
"""

from __future__ import annotations

import faulthandler
import importlib
import os
import pickle
import resource
import signal
import sys
import time
import traceback
from pathlib import Path

import numpy as np

from grader import wire
from problems import trace

# Statuses a result file can carry (the harness adds "crashed" and "timeout").
OK, NOT_IMPLEMENTED, ERROR = "ok", "not_implemented", "error"
MISSING_MODULE, MISSING_FUNCTION = "missing_module", "missing_function"
IMPORT_ERROR = "import_error"
LIMIT, LEAKED = "limit", "leaked"  # a resource limit was hit; processes were left running
RUNNER_ABORT = 86  # the error code of the runner's own MPI_Abort after a failed case
_stack_files: list = []  # keep the faulthandler files open for the life of the process


def watch_stacks(jobdir: str, label: str) -> None:
    """Dump this process's stack to ``stack-{pid}.txt`` when it receives SIGUSR1."""
    path = Path(jobdir, f"stack-{os.getpid()}.txt")
    file = open(path, "w")  # noqa: SIM115  (must stay open: faulthandler writes to its fd)
    file.write(f"{label}\n")
    file.flush()
    _stack_files.append(file)
    faulthandler.register(signal.SIGUSR1, file=file, all_threads=False)


def apply_limits(job: dict) -> None:
    """Memory (address space) and CPU-time limits for this process and all it starts."""
    if job.get("memory_limit"):
        resource.setrlimit(resource.RLIMIT_AS, (job["memory_limit"], job["memory_limit"]))
    if job.get("cpu_limit"):
        # SIGXCPU at the soft limit (reported as such), SIGKILL a little later
        resource.setrlimit(resource.RLIMIT_CPU, (job["cpu_limit"], job["cpu_limit"] + 5))


def _size(nbytes: int) -> str:
    return f"{nbytes / 2**30:g} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:g} MiB"


def _pool_worker_init(jobdir: str, trace_dir: str) -> None:
    watch_stacks(jobdir, f"pool worker {os.getpid()}")
    trace.set_directory(trace_dir)


def _engine_setup(sys_path: list[str], trace_dir: str, modules: list[str], jobdir: str,
                  label: str) -> int:
    """Run on each ipyparallel engine before a case: graded package importable, tracing on.

    Self-contained (imports inside): run as ``python -m grader.child``, this module is
    ``__main__``, and ipyparallel then ships the function by value without its globals.
    """
    import faulthandler as _faulthandler
    import os as _os
    import signal as _signal
    import sys as _sys

    from problems import trace as _trace

    for entry in reversed(sys_path):
        if entry not in _sys.path:
            _sys.path.insert(0, entry)
    for name in modules:  # import the graded module fresh, as it is on disk now
        _sys.modules.pop(name, None)
    _trace.set_directory(trace_dir)
    # Stack dumps on SIGUSR1, as in every graded process (see watch_stacks).
    path = _os.path.join(jobdir, f"stack-{_os.getpid()}.txt")
    if getattr(_sys, "_parakit_stack_path", None) != path:
        file = open(path, "w")  # noqa: SIM115
        file.write(f"{label}\n")
        file.flush()
        _sys._parakit_stack_file = file  # keep it open
        _sys._parakit_stack_path = path
        _faulthandler.register(_signal.SIGUSR1, file=file, all_threads=False)
    return _os.getpid()


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
    """Write one result as data (``grader.wire``): JSON, plus a ``.npy`` for an array value.

    A value with no data form becomes the call's failure ("returned an unsupported type").
    """
    result = {"pid": os.getpid(), "rank": rank, **result}
    if "value" in result:
        try:
            result["value"] = wire.encode(result["value"],
                                          Path(jobdir, f"value-{case}-{rank}.npy"))
        except wire.Unsupported as exc:
            result.pop("value")
            result.update(status=ERROR, message=str(exc), unsupported=True)
    wire.write_json(Path(jobdir, f"result-{case}-{rank}.json"), result)


def mark(jobdir: str, name: str, wait_for: str = "", timeout: float = 10.0) -> None:
    """Tell the grader where the run is (``grader.observe``); optionally wait for its answer."""
    Path(jobdir, name).touch()
    deadline = time.monotonic() + timeout
    while wait_for and not Path(jobdir, wait_for).exists() and time.monotonic() < deadline:
        time.sleep(0.001)


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
    from mpi4py import MPI

    world = MPI.COMM_WORLD
    rank = world.Get_rank()
    watch_stacks(jobdir, f"rank {rank}")
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


def _run_cases(job: dict, jobdir: str, label: str, call_case) -> None:
    """The loop of the single-process runners: load the function once, then per case turn
    tracing on (work in this process is evidence too), ``call_case(func, i, case, trace_dir)``,
    and write the result."""
    watch_stacks(jobdir, label)
    func, failure = load_function(job)
    for i, case in enumerate(job["cases"]):
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


def run_pool(job: dict, jobdir: str) -> None:
    import multiprocessing

    def call_case(func, i: int, case: dict, trace_dir: str) -> dict:
        # A fresh pool per case; leaving the with-block terminates its workers. The arguments
        # are mapped after the workers are forked: a worker's copy is not the caller's data.
        try:
            with multiprocessing.Pool(job["workers"], _pool_worker_init,
                                      (jobdir, trace_dir)) as pool:
                result = _call(func, _case_args(case, 0, jobdir), pool)
                # The grader looks at the workers (their pids, their CPU time) while they live.
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
    import ipyparallel as ipp

    watch_stacks(jobdir, "client")
    func, failure = load_function(job)
    if failure:
        for i in range(len(job["cases"])):
            write_result(jobdir, i, 0, failure)
        return
    client = ipp.Client(job["connection_file"], timeout=job["connect_timeout"])
    try:
        try:
            client.wait_for_engines(job["workers"], timeout=job["connect_timeout"])
        except TimeoutError:
            message = (f"the ipyparallel cluster has {len(client.ids)} engines, {job['workers']} "
                       "are needed: start more (ipcluster start -n N) or lower --workers")
            for i in range(len(job["cases"])):
                write_result(jobdir, i, 0, {"status": ERROR, "message": message})
            return
        if job.get("clear_engines"):  # the session's cluster: a fresh namespace per job
            client[:].clear(block=True)
        targets = sorted(client.ids)[: job["workers"]]
        modules = [f"{job['package']}.{job['module']}", job["package"]]
        sys_path = [str(Path(job["target_dir"]).parent)]
        for i, case in enumerate(job["cases"]):
            trace_dir = str(Path(jobdir, f"trace-{i}"))
            trace.set_directory(trace_dir)
            for t in targets:
                client[t].apply_sync(_engine_setup, sys_path, trace_dir, modules, jobdir,
                                     f"engine {t}")
            view = (client.load_balanced_view(targets) if job.get("view") == "balanced"
                    else client[targets])
            mark(jobdir, f"ready-{i}")
            try:
                result = _call(func, _case_args(case, 0, jobdir), view)
            except BaseException as exc:  # noqa: BLE001
                result = _failure(job, exc)
            write_result(jobdir, i, 0, result)
        _untrace(client)
    finally:
        client.close()


def _engine_untrace() -> None:
    """Run on each engine: tracing off (self-contained, see ``_engine_setup``)."""
    from problems import trace as _trace

    _trace.set_directory(None)


def _untrace(client) -> None:
    """Turn tracing off on every engine: the trace directories go with the grading session,
    and a user's cluster (--ipp-connect) outlives it. An engine still stuck is left alone."""
    try:
        client[:].apply_async(_engine_untrace).get(timeout=5)
    except Exception:  # noqa: BLE001
        pass


def main(jobdir: str) -> None:
    # The job file is written by the grader (trusted); only results go back, as data.
    job = pickle.loads(Path(jobdir, "job.pkl").read_bytes())
    apply_limits(job)
    runners = {"mpi": run_mpi, "pool": run_pool, "ipp": run_ipp, "plain": run_plain}
    runners[job["backend"]](job, jobdir)


if __name__ == "__main__":
    main(sys.argv[1])
