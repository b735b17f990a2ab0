"""One benchmark job in a process of its own: one function, one worker count, every size.

Started by ``parakit.bench`` through its backend, as ``python -m parakit.worker.bench JOB.json``
(serial, pool, ipyparallel) or ``mpiexec -n P python -m mpi4py -m parakit.worker.bench JOB.json``
(MPI), with BLAS and OpenMP pinned to one thread by the environment. The function gets what it
gets when graded (``parakit.worker.contexts``). It writes ``JOB.json``'s ``out``:

- ``startup``: seconds spent before the first timed call, and what they were (interpreter,
  imports and ``MPI_Init`` under mpiexec; creating the pool; connecting to the cluster), and
  for ipyparallel ``task_ms``, the round trip of an empty task through the scheduler;
- ``runs``: for every size, the wall seconds of each repetition of the call alone (MPI: between
  two barriers, on rank 0), and whether every result equals the serial one;
- ``workers`` (Mandelbrot, with a trace directory): each worker as [host, pid], in order, after
  one more, traced, run; the parent reads the trace to draw each worker's work.

A function that raises stops the job: the error is recorded for that size (MPI: written to
``out.error-RANK`` before ``MPI_Abort``, since the other ranks may be waiting on this one).
"""

from __future__ import annotations

import importlib
import json
import os
import socket
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from parakit import workloads
from parakit.worker import contexts
from problems import trace


def module_name(job: dict) -> str:
    """The module of the timed function: the target's, or the kit's contrasts."""
    module = job["variant"]["module"]
    return module if module.startswith("reference.") else \
        f"{Path(job['target_dir']).name}.{module}"


def load(job: dict) -> Callable:
    """The timed function: the target's, a contrast of the kit's, or the serial baseline."""
    if job["variant"]["backend"] == "serial":
        return workloads.serial(job["workload"])
    return getattr(importlib.import_module(module_name(job)), job["variant"]["function"])


def describe(exc: BaseException) -> str:
    """One line for the table, the last frames for the JSON."""
    if isinstance(exc, NotImplementedError):
        return "not implemented"
    frames = traceback.format_exception(type(exc), exc, exc.__traceback__)
    return f"{type(exc).__name__}: {exc}\n" + "".join(frames[-3:])


def time_sizes(job: dict, call: Callable, runs: dict, root: bool = True,
               barrier: Callable[[], None] = lambda: None) -> dict:
    """Time ``call(args)`` ``repeat`` times per size into ``runs`` (size -> times and whether
    every result was right, checked on the root process); return it."""
    is_serial = job["variant"]["backend"] == "serial"
    for size in job["sizes"]:
        workload = workloads.WORKLOADS[job["workload"]]
        if root or workload.everywhere:
            args = workloads.inputs(workload.name, size, job["datadir"])
        else:  # MPI: only rank 0 has the inputs
            args = (None,) * workload.nargs
        expected, stored = None, workloads.expected_file(job["expected_dir"], workload.name, size)
        if root and not is_serial:
            expected = workloads.load_expected(stored)
        times, ok = [], True
        for _ in range(job["repeat"]):
            barrier()
            start = time.perf_counter()
            result = call(args)
            barrier()
            times.append(time.perf_counter() - start)
            if root and is_serial and expected is None:
                expected = result
                workloads.store_expected(stored, result)
            elif root:
                ok = ok and workloads.same(job["workload"], result, expected)
        runs[size] = {"times": times, "ok": ok}
    return runs


def _write(job: dict, result: dict) -> None:
    tmp = Path(job["out"] + ".tmp")
    tmp.write_text(json.dumps(result))
    os.replace(tmp, job["out"])


def _failed(size: str, exc: BaseException) -> dict:
    return {size: {"error": describe(exc)}}


def loaded(job: dict) -> tuple[Callable | None, dict | None]:
    """(the function, None), or (None, the runs to report) if it cannot be loaded."""
    try:
        return load(job), None
    except Exception as exc:  # noqa: BLE001  (the job reports it; the bench goes on)
        return None, _failed(job["sizes"][0], exc)


def measure(job: dict, failed: dict | None, call: Callable) -> dict:
    """Time ``call(args)`` for every size; an error is recorded at the size it happened, the
    sizes before it keep their times."""
    if failed is not None:
        return failed
    runs: dict = {}
    try:
        time_sizes(job, call, runs)
    except Exception as exc:  # noqa: BLE001
        runs.update(_failed(next(s for s in job["sizes"] if s not in runs), exc))
    return runs


def _trace_args(job: dict) -> tuple:
    """The arguments of the one traced run (the largest size)."""
    return workloads.inputs(job["workload"], job["trace"]["size"], job["datadir"])


def _worked(runs: dict) -> bool:
    return not any("error" in run for run in runs.values())


# -- one runner per backend --------------------------------------------------------------------

def run_serial(job: dict) -> None:
    func, failed = loaded(job)
    runs = measure(job, failed, lambda args: func(*args))
    _write(job, {"startup": None, "runs": runs})


def run_pool(job: dict) -> None:
    func, failed = loaded(job)  # before the pool: its workers inherit the imports
    begin = time.perf_counter()
    with contexts.pool(job["workers"]) as pool:
        pool.map(abs, range(job["workers"]))  # the workers are up and answering
        startup = {"seconds": time.perf_counter() - begin, "what": "pool creation"}
        runs = measure(job, failed, lambda args: func(*args, pool))
    result = {"startup": startup, "runs": runs}
    if job.get("trace") and _worked(runs):
        # One more run on a pool that traces, to see which worker did which rows.
        with contexts.pool(job["workers"], trace.set_directory, (job["trace"]["dir"],)) as pool:
            func(*_trace_args(job), pool)
            result["workers"] = [[socket.gethostname(), p.pid] for p in pool._pool]
    _write(job, result)


def run_ipp(job: dict) -> None:
    begin = time.perf_counter()
    with contexts.ipp_engines(job["connection_file"], job["workers"], 60) as (client, targets):
        package = Path(job["target_dir"]).name
        paths = [job["kit"], str(Path(job["target_dir"]).parent)]
        func, failed = loaded(job)
        # The target freshly imported on the engines, so that the first timed call does not pay
        # for it; tracing off (a cluster of the user's may have been used by a grading session).
        pids = client[targets].apply_sync(contexts.engine_setup, paths,
                                          [module_name(job), package], None, None,
                                          None if failed else module_name(job))
        view = contexts.ipp_view(client, targets, job["variant"]["view"] == "balanced")
        startup = {"seconds": time.perf_counter() - begin, "what": "connect, import",
                   "task_ms": task_cost(client.load_balanced_view(targets))}
        runs = measure(job, failed, lambda args: func(*args, view))
        result = {"startup": startup, "runs": runs}
        if job.get("trace") and _worked(runs):
            client[targets].apply_sync(trace.set_directory, job["trace"]["dir"])
            func(*_trace_args(job), view)
            client[targets].apply_sync(trace.set_directory, None)
            result["workers"] = pids
        _write(job, result)


def task_cost(view, repeat: int = 20) -> float:
    """Milliseconds an empty task takes from the client to an engine and back through the
    scheduler (median of ``repeat``): what the work of one task must outweigh."""
    seconds = []
    for _ in range(repeat):
        start = time.perf_counter()
        view.apply_sync(abs, 0)
        seconds.append(time.perf_counter() - start)
    return 1000 * sorted(seconds)[len(seconds) // 2]


def run_mpi(job: dict) -> None:
    comm = contexts.mpi_world()
    comm.Barrier()
    rank = comm.Get_rank()
    # From starting mpiexec to here: interpreters, imports, MPI_Init, the first barrier.
    startup = {"seconds": time.time() - job["launched"], "what": "mpiexec launch"}
    try:
        func = load(job)
        runs = time_sizes(job, lambda args: func(*args, comm), {}, root=rank == 0,
                          barrier=comm.Barrier)
        workers = None
        if job.get("trace"):  # Mandelbrot: its spec is given on every rank
            trace.set_directory(job["trace"]["dir"])
            func(*_trace_args(job), comm)
            trace.set_directory(None)
            workers = comm.gather([socket.gethostname(), os.getpid()], root=0)
    except Exception as exc:  # noqa: BLE001
        # Say what went wrong before aborting: the other ranks may wait forever otherwise.
        Path(f"{job['out']}.error-{rank}").write_text(describe(exc))
        sys.stdout.flush()
        comm.Abort(1)
    if rank == 0:
        _write(job, {"startup": startup, "runs": runs, "workers": workers})


def main(path: str) -> None:
    job = json.loads(Path(path).read_text())
    # The target importable here and in every process started from here (pool workers are
    # forked before the function is loaded, and unpickle its tasks by module name).
    sys.path.insert(0, str(Path(job["target_dir"]).parent))
    runners = {"serial": run_serial, "pool": run_pool, "ipp": run_ipp, "mpi": run_mpi}
    runners[job["variant"]["backend"]](job)


if __name__ == "__main__":
    main(sys.argv[1])
