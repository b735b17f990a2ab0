"""Units of the harness: target loading, result transport, traces, timeouts and tree kills."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from grader import child, proctree
from grader.harness import KIT_ROOT, Runtime, Target, run_job
from problems import trace


def _package(tmp_path: Path, source: str, name: str = "pkg") -> Target:
    pkg = tmp_path / name
    pkg.mkdir()
    (pkg / "mod.py").write_text(textwrap.dedent(source))
    return Target.resolve(str(pkg))


def _runtime(target: Target, tmp_path: Path, timeout: float = 20) -> Runtime:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return Runtime(target=target, timeout=timeout, mpiexec=("mpiexec",), workdir=work)


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


def test_result_transport_roundtrip_and_unpicklable_value(tmp_path):
    child.write_result(str(tmp_path), 0, 2, {"status": "ok", "value": [1, 2]})
    res = pickle.loads((tmp_path / "result-0-2.pkl").read_bytes())
    assert (res["status"], res["value"], res["rank"], res["pid"]) == ("ok", [1, 2], 2, os.getpid())
    child.write_result(str(tmp_path), 1, 0, {"status": "ok", "value": lambda: 1})
    res = pickle.loads((tmp_path / "result-1-0.pkl").read_bytes())
    assert res["status"] == "error" and "cannot be sent back" in res["message"]


def test_pool_job_returns_values_and_traces(tmp_path):
    target = _package(tmp_path, """
        from problems.matmul import multiply
        def f(A, B, pool):
            return pool.apply(multiply, (A, B))
    """)
    import numpy as np
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
        def f(pool):
            # a grandchild in a session of its own, as MPICH ranks are: killpg would miss it
            subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                             start_new_session=True)
            pool.apply(time.sleep, (600,))
    """)
    rt = _runtime(target, tmp_path, timeout=3)
    start = time.monotonic()
    outs = run_job(rt, "pool", "mod", "f", [{"args": ()}, {"args": ()}], 1)
    elapsed = time.monotonic() - start
    assert [o.status for o in outs] == ["timeout", "timeout"]
    assert "did not finish within 3 s" in outs[0].message
    assert "pkg/mod.py:7 in f: pool.apply(time.sleep, (600,))" in outs[0].message
    assert "pool worker" in outs[0].message  # the worker's stack too
    assert "not run" in outs[1].message  # a hang costs one timeout, not one per case
    assert elapsed < 3 + 10
    assert proctree.tagged(proctree.OWNER_VAR, str(os.getpid())) == []


def test_child_stop_kills_processes_outside_the_session(tmp_path):
    script = ("import subprocess, sys, time\n"
              "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'],"
              " start_new_session=True)\n"
              "time.sleep(600)\n")
    proc = proctree.Child([sys.executable, "-c", script], os.environ, tmp_path, tmp_path)
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
        assert orphan.pid in [p.pid for p in swept]
        assert orphan.wait(5) is not None
    finally:
        orphan.kill()
