"""Units of the harness: target loading, result transport, traces, timeouts and tree kills."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import numpy as np
import psutil
import pytest

from parakit import KIT_ROOT, backends, wire
from parakit.controller.processes import proctree
from parakit.controller.processes.launch import Child
from parakit.controller.session.grading import Grading
from parakit.controller.session.jobs import run_job
from parakit.controller.session.runtime import Runtime, Target, child_env
from parakit.worker import grade as child
from problems import trace


def _package(tmp_path: Path, source: str, name: str = "pkg") -> Target:
    pkg = tmp_path / name
    pkg.mkdir()
    (pkg / "mod.py").write_text(textwrap.dedent(source))
    return Target.resolve(str(pkg))


def _runtime(target: Target, tmp_path: Path, timeout: float = 20) -> Runtime:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return Runtime(target=target, timeout=timeout, workdir=work,
                   backends=backends.session(4, work))


def test_target_resolves_names_and_paths(tmp_path):
    assert Target.resolve("reference").directory == KIT_ROOT / "reference"
    assert Target.resolve("student").display == "student"
    with pytest.raises(ValueError, match="no such directory"):
        Target.resolve(str(tmp_path / "missing"))
    (tmp_path / "my-code").mkdir()
    with pytest.raises(ValueError, match="not a valid Python package name"):
        Target.resolve(str(tmp_path / "my-code"))
    (tmp_path / "json").mkdir()
    with pytest.raises(ValueError, match="would shadow"):
        Target.resolve(str(tmp_path / "json"))
    (tmp_path / "numpy").mkdir()  # a correct submission in a folder named like a package
    with pytest.raises(ValueError, match="also the name of an installed package .*numpy"):
        Target.resolve(str(tmp_path / "numpy"))
    (tmp_path / "other" / "student").mkdir(parents=True)  # a clone's student/: fine
    assert Target.resolve(str(tmp_path / "other" / "student")).package == "student"


def test_trace_records_only_when_on(tmp_path):
    trace.set_directory(None)
    with trace.record("k", task=[1], units=5):
        pass
    assert not list(tmp_path.iterdir())
    trace.set_directory(tmp_path)
    try:
        with trace.record("k", task=[1, 2], units=5):
            pass
    finally:
        trace.set_directory(None)
    [rec] = trace.read(tmp_path)
    assert (rec.kernel, rec.task, rec.units, rec.pid) == ("k", [1, 2], 5, os.getpid())
    (tmp_path / f"trace-{os.getpid()}.jsonl").open("a").write('{"torn": ')
    assert len(trace.read(tmp_path)) == 1  # a torn last line is skipped, not fatal


class _Tally(Counter):
    """A Counter subclass defined by a submission: must come back as plain counts."""


class _Exploit:
    """Unpickling this would run code in the grader: it must never be unpickled there."""

    def __reduce__(self):
        return (os.system, ("echo pwned",))


def _roundtrip(tmp_path: Path, value):
    child.write_result(str(tmp_path), 0, 0, {"status": "ok", "value": value})
    res = wire.read_json(tmp_path / "result-0-0.json")
    return res, (wire.decode(res["value"], tmp_path) if "value" in res else None)


def test_results_travel_as_data_and_come_back_plain(tmp_path):
    res, value = _roundtrip(tmp_path, np.arange(6.0).reshape(2, 3))
    assert (res["status"], res["rank"], res["pid"]) == ("ok", 0, os.getpid())
    assert type(value) is np.ndarray and value.tolist() == [[0, 1, 2], [3, 4, 5]]
    _, value = _roundtrip(tmp_path, _Tally({"a": np.int64(2), "b": 1}))
    assert type(value) is dict and value == {"a": 2, "b": 1}
    _, value = _roundtrip(tmp_path, [np.ones(2), np.zeros(2)])  # a list of rows
    assert type(value) is np.ndarray and value.shape == (2, 2)
    assert _roundtrip(tmp_path, np.float32(1.5))[1] == 1.5
    assert _roundtrip(tmp_path, "Hello")[1] == "Hello"
    assert _roundtrip(tmp_path, None)[1] is None


@pytest.mark.parametrize("value, words", [
    (_Exploit(), "returned an unsupported type _Exploit"),
    (lambda: 1, "returned an unsupported type function"),
    ({"a": object()}, "a value of type object"),
    (np.array([object()]), "of object elements"),
])
def test_values_with_no_data_form_fail_the_call(tmp_path, value, words):
    res, _ = _roundtrip(tmp_path, value)
    assert res["status"] == "error" and words in res["message"], res


def test_a_forged_result_is_refused_without_running_it(tmp_path):
    """Files the graded code writes itself: never unpickled, any malformed one is a verdict."""
    import pickle

    (tmp_path / "evil.npy").write_bytes(b"\x93NUMPY" + pickle.dumps(_Exploit()))
    with pytest.raises(wire.WireError, match="cannot be read"):
        wire.decode({"kind": "array", "file": "evil.npy"}, tmp_path)
    np.save(tmp_path / "objects.npy", np.array([_Tally()], dtype=object), allow_pickle=True)
    with pytest.raises(wire.WireError, match="cannot be read"):
        wire.decode({"kind": "array", "file": "objects.npy"}, tmp_path)
    for bad in ({"kind": "pickle"}, {"kind": "mapping", "items": [["a", "b"]]}, []):
        with pytest.raises(wire.WireError):
            wire.decode(bad, tmp_path)
    (tmp_path / "r.json").write_text("{not json")
    with pytest.raises(wire.WireError, match="cannot be read"):
        wire.read_json(tmp_path / "r.json")


def test_pool_job_returns_values_and_traces(tmp_path):
    target = _package(tmp_path, """
        from problems.matmul import multiply
        def f(A, B, pool):
            return pool.apply(multiply, (A, B))
    """)
    A, B = np.eye(3), np.arange(9.0).reshape(3, 3)
    [out] = run_job(_runtime(target, tmp_path), "pool", "mod", "f", [{"args": (A, B)}], 2)
    assert out.ok, out.message + out.details
    assert (out.value == B).all()
    [rec] = out.records
    assert rec.units == 27 and rec.pid != out.pids[0]  # ran in a pool worker, not the client


@pytest.mark.parametrize("source, status, words", [
    ("def g(pool): pass\n", "missing_function", "pkg/mod.py has no function f"),
    ("def f(pool) pass\n", "import_error", "pkg/mod.py has a syntax error at line 1"),
    ("raise RuntimeError('boom')\n", "import_error", "RuntimeError: boom"),
    ("def f(pool): raise NotImplementedError\n", "not_implemented", "pkg/mod.py f"),
    ("def f(pool): return 1 / 0\n", "error", "f raised ZeroDivisionError"),
])
def test_loading_and_errors_give_one_clear_status(tmp_path, source, status, words):
    target = _package(tmp_path, source)
    outs = run_job(_runtime(target, tmp_path), "pool", "mod", "f", [{"args": ()}] * 2, 1)
    assert [o.status for o in outs] == [status] * 2
    assert words in outs[0].message
    if status == "not_implemented":
        assert outs[0].message.startswith("not implemented yet: ")


def test_timeout_dumps_stacks_then_kills_the_whole_tree(tmp_path):
    target = _package(tmp_path, """
        import subprocess, sys, time
        def f(hang, pool):
            if not hang:
                return 42
            # a grandchild in a session of its own, as MPICH ranks are: killpg would miss it
            subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                             start_new_session=True)
            pool.apply(time.sleep, (600,))
    """)
    rt = _runtime(target, tmp_path, timeout=3)
    start = time.monotonic()
    outs = run_job(rt, "pool", "mod", "f", [{"args": (True,)}, {"args": (False,)}], 1)
    elapsed = time.monotonic() - start
    assert [o.status for o in outs] == ["timeout", "ok"], outs
    assert outs[1].value == 42  # a hang costs only itself: the next case ran in a new child
    assert "f on (True) with 1 worker did not finish within 3 s" in outs[0].message
    assert "pkg/mod.py:9 in f: pool.apply(time.sleep, (600,))" in outs[0].message
    assert "pool worker" in outs[0].message  # the worker's stack too
    assert elapsed < 3 + 10
    assert proctree.tagged(proctree.OWNER_VAR, str(os.getpid())) == []


def test_once_the_time_for_hangs_is_spent_a_function_that_hung_is_not_run(tmp_path):
    target = _package(tmp_path, """
        import time
        def f(n):
            if n < 3:
                time.sleep(600)
            return n
        def g():
            time.sleep(600)
    """)
    rt = _runtime(target, tmp_path, timeout=2)
    rt.hangs.seconds = 3.0  # the first hang costs 2 s, the second the rest: at least 5 s
    grading = Grading(rt)
    outs = grading.run("plain", "mod", "f", [{"args": (n,)} for n in (3, 1, 4, 2, 5)], 1)
    assert [o.status for o in outs] == ["ok", "timeout", "ok", "timeout", "timeout"], outs
    assert "f on (1) with 1 worker did not finish within 2 s" in outs[1].message
    assert "within 2 s" in outs[3].message  # never less than HANG_FLOOR... nor the timeout
    assert rt.hangs.exhausted and outs[4].message.startswith(
        "not run: earlier calls used up the grading's time for calls that hang (3 s in all)")
    # names what hung, never as if this case had
    assert "f on (1) with 1 worker did not finish within 2 s; f on (2)" in outs[4].message
    again = grading.run("plain", "mod", "f", [{"args": (7,)}], 1)
    assert again[0].message.startswith("not run:")  # hung before, and no time left
    other = grading.run("plain", "mod", "g", [{"args": ()}], 1)  # never hung: it runs, briefly
    assert other[0].status == "timeout" and "within 2 s" in other[0].message


def test_child_stop_kills_processes_outside_the_session(tmp_path):
    script = ("import subprocess, sys, time\n"
              "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'],"
              " start_new_session=True)\n"
              "time.sleep(600)\n")
    proc = Child([sys.executable, "-c", script], os.environ, tmp_path, tmp_path)
    deadline = time.monotonic() + 10
    while len(proc.tree()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    pids = [p.pid for p in proc.tree()]
    assert len(pids) == 2
    assert proc.wait(0.1) is None
    proc.stop()
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
                   for p in pids)


def test_orphans_of_a_dead_session_are_swept(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                              env={**os.environ, proctree.OWNER_VAR: str(dead.pid)})
    try:
        time.sleep(0.2)
        swept = proctree.sweep_orphans()
        # Another grader starting meanwhile (pytest -n) sweeps it just the same.
        assert orphan.pid in [p.pid for p in swept] or orphan.poll() is not None
        assert orphan.wait(5) is not None
    finally:
        orphan.kill()


def test_trace_records_of_the_wrong_shape_are_skipped_not_fatal(tmp_path):
    """Graded code can write anything into the trace folder: only well-formed records count."""
    good = {"kernel": "k", "task": [1], "units": 1.0, "pid": 5, "host": "h", "start": 0.0,
            "end": 1.0, "cpu": 0.5, "binding": {}}
    bad = [{**good, "start": "soon"}, {**good, "pid": "5"}, {**good, "units": float("nan")},
           {**good, "binding": []}, {**good, "extra": 1}, [1, 2]]
    lines = [json.dumps(r) for r in [good, *bad]]
    (tmp_path / "trace-5.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "trace-6.jsonl").symlink_to(tmp_path / "trace-5.jsonl")  # never followed
    [rec] = trace.read(tmp_path)
    assert (rec.pid, rec.units) == (5, 1.0)


def test_graded_children_start_without_ucx_memory_hooks_unless_the_user_says(monkeypatch):
    """UCX's mmap hooks cost every MPI rank 40 ms at start (docs/benchmarks.md); a user who
    needs them (an RDMA network) keeps them by setting the variable."""
    monkeypatch.delenv("UCX_MEM_EVENTS", raising=False)
    assert child_env()["UCX_MEM_EVENTS"] == "no"
    monkeypatch.setenv("UCX_MEM_EVENTS", "yes")
    assert child_env()["UCX_MEM_EVENTS"] == "yes"


def test_results_beyond_the_gradings_budget_fail_the_call_not_the_grader():
    from parakit.controller.session.runtime import ResultBudget

    budget = ResultBudget(limit=100 << 20)
    assert budget.take(60 << 20) == ""
    said = budget.take(60 << 20)  # one budget for the whole grading, not one per file
    assert "keeps at most 100 MiB of results in all (60 MiB taken so far)" in said
    assert budget.used == 60 << 20 and budget.take(40 << 20) == ""


def test_graded_jobs_wait_cheaply_the_bench_does_not(tmp_path, monkeypatch):
    """A graded job's MPICH sleeps between empty polls, whatever the user's environment says,
    and its temporary files go to the job folder; the bench times MPI as students run it."""
    from parakit.controller.session.runtime import MPICH_IDLE, child_env

    monkeypatch.setenv("MPIR_CVAR_CH4_PROGRESS_THROTTLE", "0")
    target = _package(tmp_path, """
        import os, tempfile

        def f(pool):
            names = ("MPIR_CVAR_CH4_PROGRESS_THROTTLE", "MPIR_CVAR_ENABLE_HEAVY_YIELD")
            return {n: int(os.environ[n]) for n in names} | {"tmp": int(
                tempfile.gettempdir() == os.getcwd())}
        """)
    [out] = run_job(_runtime(target, tmp_path), "pool", "mod", "f", [{"args": ()}], 1)
    assert out.ok, out.message
    assert out.value == {"MPIR_CVAR_CH4_PROGRESS_THROTTLE": 1,
                         "MPIR_CVAR_ENABLE_HEAVY_YIELD": 1, "tmp": 1}
    assert child_env()["MPIR_CVAR_CH4_PROGRESS_THROTTLE"] == "0"  # the bench's environment
    assert set(MPICH_IDLE) >= {"MPIR_CVAR_CH4_PROGRESS_THROTTLE"}


@pytest.mark.skipif(not sys.platform.startswith("linux") or os.geteuid() != 0
                    or shutil.which("unshare") is None, reason="PID namespaces need Linux, root")
def test_orphans_are_swept_only_in_this_pid_namespace():
    """A grading in another PID namespace (a container, a Slurm node's simulated host) tags its
    processes with its own pid, a number that may not exist here: never taken for an orphan."""
    dead = 4_000_000  # above any pid_max: no process has it here
    tag = f"{proctree.OWNER_VAR}={dead}"
    sleep = [sys.executable, "-c", "import time; time.sleep(60)"]
    here = subprocess.Popen(["env", tag, *sleep])
    there = subprocess.Popen(["unshare", "--pid", "--fork", "env", tag, *sleep])
    inner = None
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not psutil.Process(there.pid).children():
            time.sleep(0.05)
        [inner] = psutil.Process(there.pid).children()
        swept = {p.pid for p in proctree.sweep_orphans()}
        assert here.pid in swept  # its owner is gone: an orphan of this namespace
        assert inner.pid not in swept and inner.is_running()
    finally:
        if inner is not None and inner.is_running():
            inner.kill()
        for proc in (here, there):
            proc.kill()
            proc.wait()
