"""The balance verdicts hold on the machines courses grade on: a sample of the stability
benchmark (``benchmarks/stability.py``, docs/benchmarks.md) on every run of the kit's tests.

One run of the rule can be unlucky; a test that failed on one unlucky run would make CI flaky,
and one that retried until it passed would hide a flake that came back. So each test judges a
distribution: ten runs per scheme in each sampled condition (``benchmarks/balance_distributions``
under ``tests/conditions``), and asserts both the verdicts the grader gives (two batches of
``REPEATS`` runs each: every reference batch passes, no cheat's does) and that single runs stay
far from the other side (at least 8 of 10 reference runs balance on their own, at most 2 of 10
of a cheat's). A rule whose single-run pass rate fell from the measured 100% to 80% would show
here long before its batch verdicts flake; the chance that a rule at 97% per run fails this
test is about 0.3% (three or more misses in ten).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests import conditions
from tests.helpers import KIT

SAMPLED = ("idle", "one-cpu", "half-cpu")
REFERENCE = ("reference mpi balanced", "reference pool balanced", "reference ipp balanced")
CHEATS = ("mpi_balanced_jittered_blocks", "pool_barrier_cheat")
RUNS = 10
MOST = 0.8  # share of single runs that must go the right way


@pytest.mark.parametrize("condition", SAMPLED)
def test_balance_verdicts_keep_their_distribution(tmp_path, condition: str):
    why = conditions.unavailable(condition)
    if why:
        pytest.skip(f"{condition}: {why}")
    out = tmp_path / "measures.json"
    done = subprocess.run([
        sys.executable, "benchmarks/balance_distributions.py", "--runs", str(RUNS),
        "--conditions", condition, "--json", str(out), "--only", *REFERENCE, *CHEATS],
        cwd=KIT, capture_output=True, text=True, timeout=900)
    output = done.stdout + done.stderr
    assert done.returncode == 0 and out.exists(), output[-3000:]
    found = json.loads(out.read_text())["conditions"][condition]
    assert set(found) == set(REFERENCE + CHEATS), output[-3000:]
    for name, row in found.items():
        right = row["balances"] if name in REFERENCE else [not b for b in row["balances"]]
        assert len(right) == RUNS, (name, row)
        assert sum(right) >= MOST * RUNS, (f"{condition}, {name}: only {sum(right)} of {RUNS} "
                                           f"runs went the right way\n{output}")
        wanted = row["batches"] if name in REFERENCE else 0
        assert row["passing"] == wanted, f"{condition}, {name}: batch verdicts\n{output}"


@pytest.mark.parametrize(("condition", "cpus"), [("one-cpu", 1.0), ("half-cpu", 0.5)])
def test_the_grader_knows_the_cpus_it_was_given(condition: str, cpus: float):
    """An affinity mask and a CFS quota (cgroups v1 or v2) are both found (docs/grading.md)."""
    why = conditions.unavailable(condition)
    if why:
        pytest.skip(f"{condition}: {why}")
    output, _, _ = conditions.run_under(condition, [
        sys.executable, "-c", "from parakit.controller.processes.cputime import available_cpus; "
                              "print(*available_cpus(), sep='|')"], timeout=60)
    found, why = output.strip().splitlines()[-1].split("|")
    assert float(found) == cpus, output
    assert ("quota" if condition == "half-cpu" else "affinity") in why


WAITS = """
import os, subprocess, sys, time, psutil
from parakit.controller.processes.cputime import times
os.sched_setaffinity(0, {0})
rival = subprocess.Popen([sys.executable, "-c", "while True: pass"])  # shares the one CPU
while times(psutil.Process(rival.pid)).cpu < 0.2:  # started, and spinning
    time.sleep(0.01)
before, t = times(psutil.Process()), time.monotonic()
while time.monotonic() - t < 1.0:
    pass
spent = times(psutil.Process()) - before
rival.kill()
rival.wait()
print(spent.cpu, spent.waited)
"""


def test_a_process_kept_from_its_cpu_shows_it_waited():
    """The run-queue delay the balance rule reads: two busy processes on one CPU each wait
    about half of a second (more on a busy machine: other processes share that CPU too)."""
    done = conditions.run_under("idle", [sys.executable, "-c", WAITS], timeout=60)[0]
    cpu, waited = map(float, done.split())
    assert waited > 0.3 and cpu < 0.7, done
