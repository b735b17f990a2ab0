"""A class graded on a real Slurm (Debian's packages, started on this machine by
``tests/slurm_cluster.py``: three slurmd "nodes"): the gradebook equals grading one by one, a
task the cluster ends is told apart from a submission that fails, Ctrl-C cancels the array and
``--resume`` grades only the rest, bad input is refused before anything is submitted, and
nothing is left: no process, no job, no shared memory. On three nodes that are separate
(simulated) hosts: hello across them prints each node's count, and the grader inside an
allocation places ranks and engines on its nodes (``--hosts slurm``), catching there what it
catches on one machine.

In CI a Slurm that cannot be started fails these tests; elsewhere they are skipped with the
reason (``python tests/slurm_cluster.py install`` installs it, as root).
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests import catalogue, simcluster, slurm_cluster
from tests.helpers import KIT, junit_results, shared_memory_left

pytestmark = pytest.mark.slurm
# A class of each kind of outcome: full marks, stubs, a hang, a crash, a leak.
ENTRIES = ("matmul_mpi_deadlock", "mpi_segfault", "pool_leaks_and_patches_checks")
GRADING = ["-k", "matmul", "--workers", "2", "--call-timeout", "5", "--hang-budget", "15"]


def _cluster(tmp_path_factory, nodes: int = 3, **options):
    """A cluster of ``nodes`` nodes for the module, stopped after it with nothing left."""
    why = slurm_cluster.unavailable() or (options.get("hosts") and simcluster.unavailable())
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the Slurm tests: {why}")
        pytest.skip(why)
    began = time.time()
    cluster = slurm_cluster.Cluster(tmp_path_factory.mktemp("slurm"), nodes=nodes, cpus=2,
                                    **options)
    cluster.start()
    try:
        yield cluster
        deadline = time.monotonic() + 60  # a job's steps end a moment after it (COMPLETING)
        while cluster.jobs() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not cluster.jobs()
    finally:
        daemons = [p.pid for p in cluster.procs]
        cluster.stop()
    assert not [pid for pid in daemons if psutil.pid_exists(pid)]
    assert not slurm_cluster.remains(cluster.root)  # no job step, no graded process
    # (a grading in the other half of the suite may hold a killed rank's segment until its
    # own end: a minute is longer than any of them takes to sweep it)
    assert not shared_memory_left(began, patience=60)


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """Three slurmd "nodes" of this machine."""
    yield from _cluster(tmp_path_factory)


@pytest.fixture(scope="module")
def one_node(tmp_path_factory):
    """A cluster of one node."""
    yield from _cluster(tmp_path_factory, nodes=1)


@pytest.fixture(scope="module")
def nodes(tmp_path_factory):
    """Three nodes, each a simulated host (``tests/simcluster.py``: its own hostname, /tmp,
    /dev/shm and processes), sharing the tests' folders as a cluster shares its home, and
    tracking each job step by its cgroup, as most production clusters do: what a step starts
    in the background ends with it."""
    yield from _cluster(tmp_path_factory, hosts=True, shared=(tmp_path_factory.getbasetemp(),),
                        proctrack="cgroup")


@pytest.fixture(scope="module")
def klass(tmp_path_factory) -> list[Path]:
    """The submissions: the reference, the stubs and the catalogue's hang, crash and leak."""
    parent = tmp_path_factory.mktemp("class")
    entries = {e.name: e for e in catalogue.everything()}
    return [KIT / "reference", KIT / "student", *(entries[n].build(parent) for n in ENTRIES)]


def parakit(*args: str, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "parakit.cli", *args], cwd=KIT,
                          capture_output=True, text=True, timeout=900,
                          env={**os.environ, **(env or {})}, **kwargs)


def gradebook(out: Path) -> dict[str, tuple]:
    """Each submission's points per exercise, total and failed tests (not its seconds)."""
    with open(out / "gradebook.csv") as f:
        return {row["submission"]: (row["matmul"], row["total"], row["failed"])
                for row in csv.DictReader(f)}


@pytest.mark.long(90)
def test_a_class_as_a_job_array_gets_the_gradebook_of_one_by_one(slurm, klass, tmp_path):
    # two tasks at once on two cores (each a sandbox, an ipyparallel cluster, up to two ranks),
    # beside the other half of the kit's tests: three at once starved a hub past 120 s in CI
    array = parakit("grade", *map(str, klass), "--slurm", "--out", str(tmp_path / "array"),
                    "--partition", "debug", "--time", "10", "--max-running", "2",
                    *(f"--pytest-arg={a}" for a in GRADING), env=slurm.env)
    assert array.returncode == 0, array.stderr[-3000:]
    assert "submitted 5 task(s) as Slurm job array" in array.stderr
    assert "0 pending, 0 running, 5 done, 0 failed" in array.stderr
    alone = parakit("grade", *map(str, klass), "--jobs", "1", "--out", str(tmp_path / "alone"),
                    *(f"--pytest-arg={a}" for a in GRADING))
    assert alone.returncode == 0, alone.stderr[-3000:]
    book = gradebook(tmp_path / "array")
    assert book == gradebook(tmp_path / "alone"), (tmp_path / "array" / "gradebook.csv").read_text()
    assert book["reference"][2] == "0" and book["student"][1] == "0"
    assert all(book[n][2] != "0" for n in ENTRIES), book
    # the tasks ran on the cluster's nodes, each report in the submission's own folder
    logs = list((tmp_path / "array" / ".slurm").glob("*_log.out"))
    assert len(logs) == 5
    for name in ("reference", *ENTRIES):
        assert (tmp_path / "array" / name / "junit.xml").exists()
    assert not slurm.jobs()


@pytest.mark.long(60)
def test_a_task_the_cluster_ends_is_not_the_students_zero_and_resume_grades_it(
        slurm, klass, tmp_path):
    out = tmp_path / "out"
    hang = klass[2]  # matmul_mpi_deadlock: its task runs long enough to be ended
    run = subprocess.Popen([sys.executable, "-m", "parakit.cli", "grade", str(klass[0]),
                            str(hang), "--slurm", "--out", str(out), "--time", "10",
                            *(f"--pytest-arg={a}" for a in GRADING)], cwd=KIT,
                           env={**os.environ, **slurm.env}, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    task = ""
    while time.monotonic() < deadline and not task:  # the hanging one's task, once running
        running = slurm.client(["squeue", "-h", "-t", "R", "-o", "%i %K"]).stdout.split("\n")
        task = next((line.split()[0] for line in running if line.endswith(" 1")), "")
        time.sleep(0.3)
    assert task, "the task never ran"
    slurm.client(["scancel", task])  # as a node failure or a preemption would end it
    stdout, stderr = run.communicate(timeout=300)
    assert run.returncode == 0, stderr[-3000:]
    book = {row["submission"]: row for row in csv.DictReader(open(out / "gradebook.csv"))}
    assert book["reference"]["errors"] == ""
    error = book[hang.name]["errors"]
    assert "not graded: its Slurm task" in error and "was ended by Slurm (CANCELLED)" in error
    assert f"parakit grade --resume {out}" in error
    # --resume grades only what did not finish, with the settings it had
    again = parakit("grade", "--resume", str(out), env=slurm.env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "1 of 2 graded, 1 to go" in again.stderr
    assert "submitted 1 task(s)" in again.stderr
    book = {row["submission"]: row for row in csv.DictReader(open(out / "gradebook.csv"))}
    assert book[hang.name]["errors"] == "" and book[hang.name]["failed"] != "0"
    assert book["reference"]["failed"] == "0"


@pytest.mark.long(30)
def test_ctrl_c_cancels_the_array(slurm, klass, tmp_path):
    run = subprocess.Popen([sys.executable, "-m", "parakit.cli", "grade", *map(str, klass),
                            "--slurm", "--out", str(tmp_path / "out"), "--max-running", "1",
                            *(f"--pytest-arg={a}" for a in GRADING)], cwd=KIT,
                           env={**os.environ, **slurm.env}, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not slurm.jobs():
        time.sleep(0.2)
    assert slurm.jobs(), "nothing was submitted"
    run.send_signal(signal.SIGINT)
    _, stderr = run.communicate(timeout=120)
    assert run.returncode != 0
    assert "cancelled job array" in stderr and "--resume" in stderr
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and slurm.jobs():
        time.sleep(0.3)
    assert not slurm.jobs(), slurm.jobs()


def test_bad_input_is_refused_before_anything_is_submitted(slurm, tmp_path):
    run = parakit("grade", str(KIT / "reference"), "--slurm", "--partition", "nowhere",
                  "--out", str(tmp_path / "out"), env=slurm.env)
    assert run.returncode == 2
    assert "--partition nowhere: no such partition (this cluster has: debug" in run.stderr
    assert not slurm.jobs()
    no_slurm = parakit("grade", str(KIT / "reference"), "--slurm", "--out", str(tmp_path / "o"),
                       env={"PATH": os.path.dirname(sys.executable)})
    assert no_slurm.returncode == 2 and "sbatch not found" in no_slurm.stderr
    resume = parakit("grade", "--resume", str(tmp_path / "never"))
    assert resume.returncode == 2 and "no class graded there" in resume.stderr


@pytest.mark.long(20)
def test_the_bench_starts_ranks_with_srun_inside_an_allocation(slurm, tmp_path):
    """``--mpiexec "srun --mpi=pmi2"`` in a batch job of two tasks: Slurm starts the ranks
    (the graded child keeps Slurm's variables only for a launcher that is the batch system's)."""
    out, log = tmp_path / "bench", tmp_path / "job.log"
    command = (f"{sys.executable} -m parakit.bench matmul --backends mpi --size matmul=32 "
               f"--workers 1,2 --repeat 1 --no-contrasts --mpiexec 'srun --mpi=pmi2' "
               f"--out {out}")
    job = slurm.client(["sbatch", "--wait", "-n", "2", "-o", str(log), "-D", str(KIT),
                        "--wrap", command], timeout=300)
    assert job.returncode == 0, job.stderr + (log.read_text() if log.exists() else "")
    results = json.loads((out / "bench.json").read_text())["results"]
    ran = {r["workers"]: r["ok"] and not r["error"] for r in results if r["backend"] == "mpi"}
    assert ran == {1: True, 2: True}, log.read_text()[-3000:]


# -- inside an allocation, across its nodes -------------------------------------------------
# The hosts share one kernel: the MPICH wheel's UCX would take them for one node and map memory
# across their process tables. Between real machines it uses the network: TCP here too.
ACROSS = {"UCX_TLS": "tcp,self"}


def nothing_left_on(cluster, wait: float = 15) -> dict[str, list[str]]:
    """What is left on each node but its slurmd: processes, and files in its /dev/shm. A job's
    step daemons end a moment after the job: they are waited for (``wait`` seconds)."""
    deadline = time.monotonic() + wait
    while True:
        left = {}
        for host in cluster.names:
            found = [" ".join(p.cmdline())[:100] for p in cluster.sim.processes(host)
                     if p.name() != "slurmd"]
            found += cluster.sim.run(host, "ls /dev/shm").stdout.split()
            if found:
                left[host] = found
        steps_only = all(f.startswith("slurmstepd") for found in left.values() for f in found)
        if not left or not steps_only or time.monotonic() > deadline:
            return left
        time.sleep(0.3)


def graded_in_allocation(cluster, tmp_path: Path, args: str, per_node: int):
    """``pytest grader ARGS --hosts slurm`` as a batch job on the three nodes, ``per_node``
    tasks (slots) each: (job state, output, results by test)."""
    work, xml = tmp_path / "work", tmp_path / "junit.xml"
    work.mkdir()
    state, output = cluster.batch(
        f"{sys.executable} -m pytest grader -p no:cacheprovider --junitxml={xml} {args} "
        f"--hosts slurm --workdir {work}", "-N", "3", f"--ntasks-per-node={per_node}",
        "-D", str(KIT), "--export", "ALL," + ",".join(f"{k}={v}" for k, v in ACROSS.items()))
    return state, output, junit_results(xml)


def test_hello_across_three_nodes_prints_how_many_processes_each_got(nodes):
    # as a student runs it on a cluster: srun starts the ranks (PMI-2, the mpich wheel's)
    done = nodes.client(["srun", "-N", "3", "-n", "4", "--mpi=pmi2", "--chdir", str(KIT),
                         sys.executable, "-m", "reference.hello"], timeout=120, env=ACROSS)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "Processes per host: node1 2, node2 1, node3 1" in lines, done.stdout
    assert sorted(line for line in lines if line.startswith("Hello")) == [
        "Hello from node1. 0 of 4", "Hello from node1. 1 of 4", "Hello from node2. 2 of 4",
        "Hello from node3. 3 of 4"]


@pytest.mark.long(45)
def test_the_grader_places_ranks_and_engines_on_the_nodes_of_its_allocation(nodes, tmp_path):
    """The grader runs on node1 (the batch script's node), itself one of the hosts."""
    state, output, results = graded_in_allocation(
        nodes, tmp_path, "--target reference -k 'hello or matmul or ipp and mandelbrot_trace' "
        "--workers 3", per_node=2)
    assert state == "COMPLETED", output[-4000:]
    assert "engines on node1 (2 slots), node2 (2 slots), node3 (2 slots)" in output, output
    assert results and all(r[0] == "passed" for r in results.values()), output[-4000:]
    assert re.search(r"total\s+37 / 37", output), output[-2000:]  # full marks
    # the engines are one step of the job, which lives as long as they do (a step that
    # started them in the background would have taken them with it: proctrack/cgroup), and
    # the grader knows each of them on its node: the trace's records name workers of this run
    assert "test_mandelbrot_trace[ipp-balanced]" in results
    assert nothing_left_on(nodes) == {}


@pytest.mark.long(30)
def test_a_rank_that_escapes_on_another_node_is_caught_there(nodes, tmp_path):
    broken = {e.name: e for e in catalogue.everything()}["mpi_rank_escapes"]
    sub = broken.build(tmp_path / "subs")
    state, output, results = graded_in_allocation(
        nodes, tmp_path, f"--target {sub} -k '{broken.keyword}' --workers 2 --call-timeout 5",
        per_node=1)  # one slot a node: rank 1 runs on node2
    assert state == "FAILED", output[-4000:]  # pytest's exit status 1: tests failed
    failed = {name: r[1] for name, r in results.items() if r[0] == "failed"}
    assert failed and all("running after it returned" in m and "on node2" in m
                          for m in failed.values()), output[-4000:]
    assert nothing_left_on(nodes) == {}


@pytest.mark.long(30)
def test_records_naming_the_engines_srun_are_not_an_engines(nodes, tmp_path):
    """The engines' step is started by an srun on the grader's node whose command line names
    ipyparallel's engine: records that give it the rows are records of no worker."""
    broken = {e.name: e for e in catalogue.everything()}["ipp_balanced_claims_cluster_processes"]
    sub = broken.build(tmp_path / "subs")
    state, output, results = graded_in_allocation(
        nodes, tmp_path, f"--target {sub} -k 'trace and ipp and balanced' --workers 3",
        per_node=1)
    assert state == "FAILED", output[-4000:]
    failed = {name: r[1] for name, r in results.items() if r[0] == "failed"}
    assert list(failed) == ["test_mandelbrot_trace[ipp-balanced]"], output[-4000:]
    assert broken.says(failed["test_mandelbrot_trace[ipp-balanced]"]), output[-4000:]
    assert nothing_left_on(nodes) == {}


@pytest.mark.long(20)
def test_the_grader_in_a_one_node_allocation_keeps_its_ranks_as_its_own(one_node, tmp_path):
    """``pytest grader`` in a batch job: MPICH's mpiexec starts the ranks itself (fork), as the
    grader's descendants, never as job steps (Slurm's variables are not passed on): the CPU
    rule sees them (the trace test passes) and nothing is left."""
    xml = tmp_path / "junit.xml"
    state, output = one_node.batch(
        f"{sys.executable} -m pytest grader -p no:cacheprovider --junitxml={xml} "
        "--target reference -k 'hello or matmul and mpi'", "-N", "1", "-n", "2", "-D", str(KIT))
    assert state == "COMPLETED", output[-4000:]
    results = junit_results(xml)
    assert results and all(r[0] == "passed" for r in results.values()), output[-4000:]
    assert "test_matmul_parallel[mpi]" in results  # its CPU rule: the ranks measured from outside
    steps = one_node.client(["sacct", "-n", "-P", "-o", "JobID", "-s", "COMPLETED,FAILED"])
    numbered = [line for line in steps.stdout.split()  # JOB, JOB.batch, then JOB.0, JOB.1...
                if "." in line and line.rpartition(".")[2].isdigit()]
    assert numbered == [], steps.stdout  # the batch step only: no rank started through srun
