"""The grader end to end: full marks for the reference, zero for the stubs, clear lines for
broken packages, and no process left behind."""

from __future__ import annotations

import re

import pytest

from tests.helpers import leftover_processes, make_submission, run_grader


def _score(output: str) -> tuple[float, float]:
    m = re.search(r"^total\s+([\d.]+) / ([\d.]+)", output, re.M)
    assert m, f"no score table in the output:\n{output[-3000:]}"
    return float(m[1]), float(m[2])


def test_reference_gets_full_marks(tmp_path):
    run = run_grader(tmp_path, "--target", "reference")
    assert run.returncode == 0, run.output[-5000:]
    assert run.results and not run.failed()
    got, possible = _score(run.output)
    assert got == possible > 0
    assert leftover_processes() == []


def test_stubs_fail_with_one_line_and_score_zero(tmp_path):
    run = run_grader(tmp_path)  # --target student is the default
    assert run.returncode == 1
    assert run.results and not run.passed()
    for name, message in run.failed().items():
        first = message.strip().splitlines()[0]
        assert re.search(r"not implemented yet: student/\w+\.py \w+", first), (name, message)
        assert "Traceback" not in message, (name, message)
    assert _score(run.output)[0] == 0
    assert leftover_processes() == []


BROKEN_PACKAGES = {  # defect -> (edits, words the matmul failures must contain)
    "missing module": ({"matmul": None}, "submission/matmul.py does not exist"),
    "missing function": ({"matmul": ("def matmul_pool(", "def matmul_pool_renamed(")},
                         "submission/matmul.py has no function matmul_pool"),
    "syntax error": ({"matmul": ("import os\n", "import os\ndef broken(:\n")},
                     "submission/matmul.py has a syntax error at line"),
    "import error": ({"matmul": ("import os\n", "import os\nimport no_such_module_xyz\n")},
                     "submission/matmul.py failed: ModuleNotFoundError"),
}


@pytest.mark.parametrize("defect", BROKEN_PACKAGES)
def test_broken_package_fails_only_its_exercise(tmp_path, defect):
    edits, words = BROKEN_PACKAGES[defect]
    sub = make_submission(tmp_path, edits)
    run = run_grader(tmp_path, "--target", str(sub), "-k", "hello or (matmul and (pool or mpi))")
    failed = run.failed()
    matmul = {k for k in run.results if k.startswith("test_matmul")}
    hello = {k for k in run.results if k.startswith("test_hello")}
    assert hello and matmul
    assert hello.isdisjoint(failed), "hello must still be graded and pass"
    touched = {k for k in matmul if "pool" in k} if defect == "missing function" else matmul
    assert set(failed) == touched, sorted(failed)
    for name in touched:
        assert words in failed[name].splitlines()[0], (name, failed[name])
    assert leftover_processes() == []


def test_bad_option_names_the_option(tmp_path):
    run = run_grader(tmp_path, "--target", str(tmp_path / "nowhere"))
    assert run.returncode == 4
    assert "--target" in run.output and "no such directory" in run.output
    run = run_grader(tmp_path, "--workers", "zero")
    assert run.returncode == 4 and "--workers='zero': expected a number" in run.output


def test_grades_on_a_cluster_the_user_started(tmp_path):
    """--ipp-connect uses `ipcluster start -n X` and leaves that cluster running."""
    import os
    import subprocess
    import sys
    import time

    from grader import proctree

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
        assert len(run.passed()) == 6
        assert cluster.poll() is None, "the grader must not stop a cluster it did not start"
    finally:
        import psutil

        procs = [psutil.Process(cluster.pid), *psutil.Process(cluster.pid).children(True)] \
            if psutil.pid_exists(cluster.pid) else []
        proctree.terminate(procs)
    assert leftover_processes() == []
