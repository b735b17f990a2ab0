"""The grader end to end: full marks for the reference, zero for the stubs, clear option
errors, a user's own ipyparallel cluster, and no process left behind. Broken submissions are in
test_catalogue.py."""

from __future__ import annotations

import re

import pytest

from tests.helpers import run_grader


def _score(output: str) -> tuple[float, float]:
    m = re.search(r"^total\s+([\d.]+) / ([\d.]+)", output, re.M)
    assert m, f"no score table in the output:\n{output[-3000:]}"
    return float(m[1]), float(m[2])


@pytest.mark.long(40)
def test_reference_gets_full_marks(tmp_path):
    run = run_grader(tmp_path, "--target", "reference")
    assert run.returncode == 0, run.output[-5000:]
    assert run.results and not run.failed()
    got, possible = _score(run.output)
    assert got == possible > 0
    assert run.leftovers == []


def test_stubs_fail_with_one_line_and_score_zero(tmp_path):
    run = run_grader(tmp_path)  # --target student is the default
    assert run.returncode == 1
    assert run.results and not run.passed()
    for name, message in run.failed().items():
        first = message.strip().splitlines()[0]
        assert re.search(r"not implemented yet: student/\w+\.py \w+", first), (name, message)
        assert "Traceback" not in message, (name, message)
    assert _score(run.output)[0] == 0
    assert run.leftovers == []


def test_bad_option_names_the_option(tmp_path):
    run = run_grader(tmp_path, "--target", str(tmp_path / "nowhere"))
    assert run.returncode == 4
    assert "--target" in run.output and "no such directory" in run.output
    run = run_grader(tmp_path, "--workers", "zero")
    assert run.returncode == 4 and "--workers='zero': expected a number" in run.output
    run = run_grader(tmp_path, "--workers", "1000")  # 1000 processes per backend: refused
    assert run.returncode == 4 and "--workers=1000: at most" in run.output


@pytest.mark.long(14)
def test_grades_on_a_cluster_the_user_started(tmp_path):
    """--ipp-connect uses `ipcluster start -n X` and leaves that cluster running (grader and
    bench)."""
    import os
    import subprocess
    import sys
    import time

    from parakit.controller.processes import proctree, shm

    began = time.time()
    profile = tmp_path / "profile_user"
    env = {**os.environ, "IPYTHONDIR": str(tmp_path / "ipython")}
    cluster = subprocess.Popen([sys.executable, "-m", "ipyparallel.cluster", "start", "-n", "2",
                                f"--profile-dir={profile}"], env=env, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        connection = profile / "security" / "ipcontroller-client.json"
        deadline = time.monotonic() + 60
        while not connection.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert connection.exists(), "ipcluster did not write its connection file"
        run = run_grader(tmp_path, "--target", "reference", "--workers", "2",
                         "--ipp-connect", str(connection), "-k", "matmul and ipp")
        assert run.returncode == 0, run.output[-3000:]
        assert len(run.passed()) >= 6 and not run.failed()
        assert cluster.poll() is None, "the grader must not stop a cluster it did not start"
        import ipyparallel as ipp

        with ipp.Client(str(connection)) as client:  # and leaves its engines untraced
            dirs = client[:].apply_sync(eval, "__import__('problems.trace').trace.directory()")
        assert dirs == [None, None]
        # The benchmark uses it the same way.
        bench = subprocess.run([sys.executable, "-m", "parakit.bench", "matmul", "--backends",
                                "ipp", "--size", "matmul=32", "--workers", "1,2", "--repeat",
                                "1", "--ipp-connect", str(connection), "--no-contrasts",
                                "--out", str(tmp_path / "bench")], capture_output=True,
                               text=True, timeout=300)
        assert bench.returncode == 0, bench.stdout[-3000:] + bench.stderr[-3000:]
        assert "cluster start" not in bench.stdout and "connect, import" in bench.stdout
        assert cluster.poll() is None, "bench must not stop a cluster it did not start"
    finally:
        import psutil

        procs = [psutil.Process(cluster.pid), *psutil.Process(cluster.pid).children(True)] \
            if psutil.pid_exists(cluster.pid) else []
        proctree.terminate(procs)
        shm.sweep(began)  # killed, its engines (which imported mpi4py) cannot unlink theirs
    assert run.leftovers == []
