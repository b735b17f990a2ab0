"""The CPU rule (``parakit.controller.verdicts.cpurule.CpuTally``) on synthetic runs, and what makes
waiting cheap in graded processes (``runtime.MPICH_IDLE``, ``worker.idle_cheaply``).

A run is four workers that claim a quarter of the work each (100 units of 1 ms); what the
operating system measured for each process is set per test. The rule must pass a run whose CPU
time follows the claims, and fail the three ways the work can run where the records do not say.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import time

import pytest

from parakit.backends.pool import PoolObserver
from parakit.controller.processes.launch import Child
from parakit.controller.processes.observe import HOST, Seen
from parakit.controller.session.outcome import OK, Outcome
from parakit.controller.verdicts.cpurule import CpuTally
from parakit.controller.verdicts.evidence import Evidence
from parakit.worker import PR_SET_TIMERSLACK, TIMER_SLACK_NS
from problems.trace import Record

CALLER = (HOST, 1)
WORKERS = [(HOST, 100 + w) for w in range(4)]
SERIAL = 0.4  # seconds for the whole work: 100 ms per worker's quarter
UNITS = 400.0


def _tally(worker_cpu: list[float], caller_cpu: float = 0.005, runs: int = 4,
           backend: str = "pool", seen_workers: bool = True,
           waited: list[float] | None = None) -> CpuTally:
    tally = CpuTally()
    for _ in range(runs):
        records = [Record("k", [w], 100.0, pid, host, 0.0, 1.0, 0.0)
                   for w, (host, pid) in enumerate(WORKERS)]
        ev = Evidence(valid=records, caller=CALLER,
                      workers={p: f"worker {p[1]}" for p in WORKERS} if seen_workers else {})
        seen = Seen(workers=dict(ev.workers), caller_cpu=caller_cpu,
                    cpu=dict(zip(WORKERS, worker_cpu, strict=True)) if seen_workers else {},
                    waited=dict(zip(WORKERS, waited or [0.0] * 4, strict=True)))
        outcome = Outcome(OK, pids={0: CALLER}, records=records, seen=seen)
        tally.add(outcome, ev, SERIAL, UNITS, backend)
    return tally


def test_cpu_that_follows_the_claims_passes():
    assert _tally([0.11, 0.105, 0.12, 0.1]).verdict() == ""


def test_the_caller_doing_the_work_while_workers_burn_fails():
    verdict = _tally([0.1] * 4, caller_cpu=0.4).verdict()
    assert "beyond the work their trace claims" in verdict
    assert "the calling process (pid 1): 400 ms of CPU time, work of 0 ms claimed" in verdict


def test_records_naming_workers_that_did_not_compute_fail():
    verdict = _tally([0.1, 0.002, 0.002, 0.002], backend="mpi").verdict()
    assert "more work than they had CPU time for" in verdict


def test_a_worker_burning_without_rows_fails():
    tally = _tally([0.1, 0.1, 0.1, 0.1])
    assert tally.verdict() == ""
    burning = _tally([0.1, 0.1, 0.1, 0.4])  # claims a quarter, uses four quarters' CPU
    assert "beyond the work their trace claims" in burning.verdict()


def test_waiting_stretched_by_a_cpu_quota_is_allowed_for_but_not_the_others_work():
    # At half a CPU, every MPI rank waits: its CPU time waiting grows with the wait (a rank
    # that claims 18 ms of work used 45 ms with 0.53 s kept off a CPU, measured).
    stretched = [0.17] * 4  # 70 ms beyond each claim of 100 ms, in every run
    assert "beyond the work" in _tally(stretched, backend="mpi").verdict()
    assert _tally(stretched, backend="mpi", waited=[0.5] * 4).verdict() == ""
    # Rank 0 doing the others' work at half a CPU waits about as long as it runs: still fails.
    verdict = _tally([0.4, 0.002, 0.002, 0.002], backend="mpi",
                     waited=[0.4, 0.5, 0.5, 0.5]).verdict()
    assert "beyond the work their trace claims" in verdict or "more work than" in verdict


def test_one_burst_in_one_run_does_not_decide_burning_in_every_run_does():
    """One process's burst in one run (seen idle: an engine used 167 ms for 81 ms of work in
    one of six runs) is not others' work done, which shows in every run."""
    tally = _tally([0.1] * 4, runs=4)
    burst = _tally([0.4, 0.1, 0.1, 0.1], runs=1)
    tally.unclaimed_runs += burst.unclaimed_runs
    tally.serial, tally.runs = tally.serial + burst.serial, tally.runs + 1
    assert tally.verdict() == ""
    verdict = _tally([0.4, 0.1, 0.1, 0.1], runs=5).verdict()
    assert "beyond the work their trace claims (the run with the most left out), e.g. " \
           "worker 100: 400 ms of CPU time, work of 100 ms claimed" in verdict


def test_a_run_whose_workers_were_never_seen_fails_closed():
    assert "could not measure the workers" in _tally([0.1] * 4, seen_workers=False).verdict()


def test_a_users_own_cluster_is_not_failed_for_what_it_cannot_show():
    assert _tally([0.1] * 4, backend="ipp", seen_workers=False).verdict() == ""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")
def test_the_runner_sets_a_timer_slack_that_its_children_inherit():
    code = ("import ctypes, subprocess, sys; from parakit.worker import idle_cheaply; "
            "idle_cheaply(); print(subprocess.run([sys.executable, '-c', 'import ctypes; "
            "print(ctypes.CDLL(None).prctl(30, 0, 0, 0, 0))'], capture_output=True, "
            "text=True).stdout.strip())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert int(out) == TIMER_SLACK_NS  # PR_GET_TIMERSLACK in a child of the runner
    assert PR_SET_TIMERSLACK == 29
    assert ctypes.CDLL(None).prctl(30, 0, 0, 0, 0) != TIMER_SLACK_NS  # not the grader's own


def test_records_rewritten_to_look_even_while_the_cpu_says_blocks_fail():
    """Row blocks at P=4 (work 0.43, 1.57, 1.57, 0.43 of the mean) whose records claim an
    even share each: the claims hold on the whole, not per worker."""
    assert _tally([0.043, 0.157, 0.157, 0.043]).verdict().endswith(
        "(records written or rewritten for other workers than those that computed)")
    assert _tally([0.105, 0.11, 0.1, 0.12]).verdict() == ""  # each near its claim: fine


def test_one_run_that_departs_does_not_decide_the_rest_do():
    """A spike of one worker's housekeeping in one run (seen once in 30 idle gradings) is
    not rewritten records; runs that all depart a little more than the references are."""
    tally = _tally([0.105, 0.11, 0.1, 0.12], runs=4)
    tally.departures += _tally([0.043, 0.157, 0.157, 0.043], runs=1).departures
    assert len(tally.departures) == 5 and tally.verdict() == ""
    modest = _tally([0.07, 0.13, 0.13, 0.07], runs=5)  # 30% a run, each run
    assert 0.29 < modest.departed() < 0.31
    assert "they depart from it by 32% of the work over 5 runs" in \
        _tally([0.068, 0.132, 0.132, 0.068], runs=5).verdict()
    # too few judged runs do not decide: one or two bursts could be the machine
    assert _tally([0.043, 0.157, 0.157, 0.043], runs=2).verdict() == ""
    assert _tally([0.043, 0.157, 0.157, 0.043], runs=3).verdict() != ""


def test_engines_are_not_held_to_their_claims_one_by_one():
    """An ipyparallel engine's CPU per task varies as much as rewritten records would make it
    (docs/grading.md): the totals still count for the view, the split between engines not."""
    assert _tally([0.043, 0.157, 0.157, 0.043], backend="ipp").verdict() == ""
    assert _tally([0.043, 0.157, 0.157, 0.043], backend="pool").verdict() != ""


_TWO_POOLS = """
import multiprocessing, pathlib, sys, time
d = pathlib.Path(sys.argv[1])
first = multiprocessing.Pool(1)
(d / "pool-0").touch()
while not (d / "step").exists():
    time.sleep(0.005)
(d / "result-0-0.json").write_text("{}")  # case 0 is over; the next case's pool is forked
second = multiprocessing.Pool(1)
(d / "forked").touch()
time.sleep(60)
"""


def _wait_for(path, what: str) -> None:
    deadline = time.monotonic() + 20
    while not path.exists():
        assert time.monotonic() < deadline, f"the child never wrote {what}"
        time.sleep(0.01)


def test_a_pool_forked_after_a_result_belongs_to_the_next_case(tmp_path):
    """The runner writes case i's result, then forks case i+1's pool at once; a look of the
    observer still on case i must not count those new workers as case i's (they were then
    never taken for case i+1's workers: its records were all rejected, seen in CI)."""
    child = Child([sys.executable, "-c", _TWO_POOLS, str(tmp_path)], dict(os.environ),
                  cwd=tmp_path, outdir=tmp_path)
    try:
        watch = PoolObserver(child, tmp_path)
        _wait_for(tmp_path / "pool-0", "pool-0")
        watch.poll(0)
        first = set(watch.current.workers)
        assert len(first) == 1, watch.current
        (tmp_path / "step").touch()
        _wait_for(tmp_path / "forked", "forked")
        watch._looked = 0.0  # a timed look, as the job's loop makes before it reads the result
        watch.poll(0)
        seen = watch.finish_case()
        assert set(seen.workers) == first and not seen.other_cpu, seen
        (tmp_path / "pool-1").touch()
        watch.poll(1)
        second = set(watch.current.workers)
        assert len(second) == 1 and not second & first, watch.current
    finally:
        child.stop()
