"""Grading and benchmarking across machine boundaries, on a simulated cluster of two hosts
(``tests/simcluster.py``: namespaces with their own hostname, /tmp and process table, sharing
this machine's files and loopback network). Run alone with ``pytest -m multihost tests``.

The whole reference gets full marks with its MPI ranks and ipyparallel engines on the two
hosts; a hang, processes left behind on a host, and forged traces are caught there as they are
on one machine; nothing is left running on any host; hello says how many processes each host
got; the bench records the host of every worker.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests import simcluster
from tests.catalogue import CATALOGUE, MANDELBROT, TRUST
from tests.helpers import KIT, run_grader

pytestmark = [pytest.mark.multihost,
              pytest.mark.skipif(bool(simcluster.unavailable()),
                                 reason=simcluster.unavailable() or "namespaces available")]
HOSTS = ("node1", "node2")
ENTRIES = {e.name: e for e in CATALOGUE + TRUST + MANDELBROT}
ACROSS = ["matmul_mpi_deadlock", "mpi_rank_escapes", "mpi_rank_escapes_as_proxy",
          "ipp_engine_escapes", "ipp_engine_forges_probe_answers",
          "mpi_balanced_forged_trace", "ipp_balanced_forged_trace"]


@pytest.fixture(scope="module")
def cluster():
    """Two simulated hosts; their shared folder is outside /tmp (each host has its own)."""
    root = Path(tempfile.mkdtemp(prefix="parakit-sim-", dir="/var/tmp"))
    try:
        with simcluster.SimCluster(list(HOSTS), root) as sim:
            yield sim
    finally:
        shutil.rmtree(root, ignore_errors=True)


def placement(sim: simcluster.SimCluster, work: Path, slots: int = 2) -> list[str]:
    """The grader's options for the simulated hosts, ``slots`` each."""
    work.mkdir(parents=True, exist_ok=True)
    return ["--hosts", ",".join(f"{h}:{slots}" for h in HOSTS), "--remote-shell", str(sim.rsh),
            "--remote-copy", str(sim.rcp), "--workdir", str(work)]


def nothing_left(sim: simcluster.SimCluster) -> dict[str, list[str]]:
    """What is left on each host: processes, and files in its own /dev/shm (a killed rank's
    shared memory, which the grader removes through the probe)."""
    left = {}
    for h in HOSTS:
        found = [" ".join(p.cmdline())[:100] for p in sim.processes(h)]
        found += sim.run(h, "ls /dev/shm").stdout.split()
        if found:
            left[h] = found
    return left


def test_the_hosts_are_separate_machines(cluster):
    names = {h: cluster.run(h, "hostname").stdout.strip() for h in HOSTS}
    assert names == {h: h for h in HOSTS}
    cluster.run("node1", "touch /tmp/only-on-node1")
    assert cluster.run("node2", "ls /tmp/only-on-node1").returncode != 0
    assert not Path("/tmp/only-on-node1").exists()


@pytest.mark.long(60)
def test_the_reference_gets_full_marks_across_two_hosts(cluster, tmp_path):
    # Three processes (2 on node1, 1 on node2) span both hosts as four would, and balance is
    # graded at four whatever --workers says: the runs at P=4 would add time, not coverage.
    run = run_grader(tmp_path, "--target", "reference", "--workers", "3",
                     *placement(cluster, Path(cluster.root, "work-reference")))
    assert run.returncode == 0, run.output[-4000:]
    assert run.results and not run.failed(), run.output[-4000:]
    assert "MPI ranks and ipyparallel engines on node1 (2 slots), node2 (2 slots)" in run.output
    assert "the pool on this machine only" in run.output
    assert run.leftovers == [] and nothing_left(cluster) == {}


@pytest.mark.long(15)
@pytest.mark.parametrize("name", ACROSS)
def test_broken_submission_is_caught_across_two_hosts(cluster, tmp_path, name):
    broken = ENTRIES[name]
    sub = broken.build(Path(cluster.root, "subs"))  # where every host can import it
    # one slot per host when the entry needs two workers: its runs at P=2 still span both
    # (balance is graded at P=4: a balanced scheme's entry needs the four slots)
    slots = -(-max(broken.workers, 4 * ("balanced" in broken.keyword)) // len(HOSTS))
    run = run_grader(tmp_path, "--target", str(sub), "-k", broken.keyword, "--call-timeout", "5",
                     "--workers", str(broken.workers),
                     *placement(cluster, Path(cluster.root, f"work-{name}"), slots))
    failed = run.failed()
    expected = {n for n in run.results if any(p in n for p in broken.fails)}
    assert expected and set(failed) == expected, run.output[-4000:]
    for message in failed.values():
        assert broken.says(message), message[:2000]
    if broken.detail:
        assert any(broken.detail in m for m in failed.values()), list(failed.values())[0][:3000]
    assert run.leftovers == [] and nothing_left(cluster) == {}


def test_a_hang_shows_where_each_rank_was_on_its_host(cluster, tmp_path):
    broken = ENTRIES["matmul_mpi_deadlock"]
    sub = broken.build(Path(cluster.root, "subs-stacks"))
    run = run_grader(tmp_path, "--target", str(sub), "-k", "test_matmul and mpi and square",
                     "--call-timeout", "5", *placement(cluster, Path(cluster.root, "work-hang")))
    [message] = run.failed().values()
    assert "where each process was when it was stopped:\n  rank 0 on node1: " in message, \
        message[:3000]
    assert nothing_left(cluster) == {}


def test_hello_says_how_many_processes_each_host_got(cluster):
    # as a student runs it: buffered output, each print() one line that mpiexec forwards whole
    environ = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    mpiexec = Path(sys.executable).parent / "mpiexec"
    done = subprocess.run([str(mpiexec), "-hosts", "node1:1,node2:3", "-launcher", "ssh",
                           "-launcher-exec", str(cluster.rsh), "-n", "4", sys.executable, "-m",
                           "reference.hello"], cwd=KIT, capture_output=True, text=True,
                          timeout=120, env={**environ, "PYTHONPATH": str(KIT)})
    lines = done.stdout.splitlines()
    assert "Processes per host: node1 1, node2 3" in lines, done.stdout + done.stderr
    assert sorted(line for line in lines if line.startswith("Hello")) == [
        "Hello from node1. 0 of 4", "Hello from node2. 1 of 4", "Hello from node2. 2 of 4",
        "Hello from node2. 3 of 4"]


@pytest.mark.long(25)
def test_the_bench_records_the_host_of_every_worker(cluster):
    out = Path(cluster.root, "bench")
    done = subprocess.run(
        [sys.executable, "-m", "parakit.bench", "mandelbrot", "--workers", "4", "--repeat", "1",
         "--size", "mandelbrot=120x80:64", "--backends", "mpi,ipp", "--no-contrasts",
         "--out", str(out), *placement(cluster, out)[:6]],
        cwd=KIT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    document = json.loads((out / "bench.json").read_text())
    traced = [r for r in document["results"] if r["worker_hosts"]]
    assert {r["backend"] for r in traced} == {"mpi", "ipp"}, document["results"]
    for row in traced:
        assert sorted(row["worker_hosts"]) == ["node1", "node1", "node2", "node2"], row
    assert document["plan"]["hosts"] == "node1:2,node2:2"
    assert nothing_left(cluster) == {}
