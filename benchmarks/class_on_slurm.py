"""Benchmark (not a test): a class graded on Slurm against one by one on this machine.

    python benchmarks/class_on_slurm.py [--size 24] [--nodes 3] [-k EXPR] [--json OUT]

Builds a class of ``--size`` submissions (the reference, the stubs, then entries of the kit's
catalogue: wrong, crashing, hanging, leaking, cheating), starts a throwaway Slurm of
``--nodes`` nodes on this machine (``tests/slurm_cluster.py``, root), and grades the class
twice: as one job array (``parakit grade --slurm``; every node declares this machine's cores,
so tasks share the cores: co-scheduled, as on a shared node) and one by one (``parakit grade
--jobs 1``). Prints whether the gradebooks agree (points and failed tests per submission), the
wall time of each, and Slurm's cost per task: the task's elapsed time by Slurm's accounting
less its grading's own seconds, and the wait from submitting to the first task's start.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import catalogue, slurm_cluster  # noqa: E402
from tests.helpers import KIT  # noqa: E402


def build_class(parent: Path, size: int) -> list[Path]:
    """The reference, the stubs, then the catalogue's fast entries (and a hang)."""
    entries = [e for e in catalogue.everything() if not e.slow]
    hang = next(e for e in catalogue.everything() if e.name == "matmul_mpi_deadlock")
    chosen = [hang, *entries[: max(0, size - 3)]]
    return [KIT / "reference", KIT / "student", *(e.build(parent) for e in chosen)][:size]


def grade(args: list[str], env: dict) -> tuple[float, str]:
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "parakit.cli", "grade", *args], cwd=KIT,
                          env={**os.environ, **env}, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"parakit grade failed ({done.returncode}): {done.stderr[-3000:]}")
    return time.monotonic() - start, done.stderr


def book(out: Path) -> dict[str, dict]:
    with open(out / "gradebook.csv") as f:
        return {row["submission"]: row for row in csv.DictReader(f)}


def slurm_costs(cluster: slurm_cluster.Cluster, out: Path) -> dict:
    """Per task: Slurm's elapsed time less the grading's own seconds; the wait to the start."""
    rows = cluster.client(["sacct", "-n", "-X", "-P", "-o", "JobID,Submit,Start,ElapsedRaw"])
    tasks = [line.split("|") for line in rows.stdout.splitlines() if "_" in line.split("|")[0]]
    graded = {name: float(row["seconds"]) for name, row in book(out).items()}
    elapsed = sorted(float(t[3]) for t in tasks)
    waits = []
    for _, submit, start, _ in tasks:
        waits.append(time.mktime(time.strptime(start, "%Y-%m-%dT%H:%M:%S"))
                     - time.mktime(time.strptime(submit, "%Y-%m-%dT%H:%M:%S")))
    per_task = (sum(elapsed) - sum(graded.values())) / max(1, len(elapsed))
    return {"tasks": len(tasks), "overhead_per_task_s": round(per_task, 1),
            "first_start_s": min(waits) if waits else None,
            "elapsed_median_s": statistics.median(elapsed) if elapsed else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=24)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("-k", default="matmul or hello",
                        help="the tests graded (default: matmul or hello)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    why = slurm_cluster.unavailable()
    if why:
        print(f"skipped: {why}")
        return 0
    work = Path(tempfile.mkdtemp(prefix="class-on-slurm-"))
    klass = build_class(work / "class", args.size)
    common = [*map(str, klass), "-k", args.k, "--workers", "2", "--call-timeout", "10",
              "--pytest-arg=--hang-budget=30"]
    cluster = slurm_cluster.Cluster(work / "slurm", nodes=args.nodes).start()
    try:
        array_s, log = grade([*common, "--slurm", "--out", str(work / "array")], cluster.env)
        costs = slurm_costs(cluster, work / "array")
    finally:
        cluster.stop()
    alone_s, _ = grade([*common, "--jobs", "1", "--out", str(work / "alone")], {})
    array, alone = book(work / "array"), book(work / "alone")
    keys = ("total", "failed", "errors")
    differ = [n for n in alone if tuple(alone[n][k] for k in keys)
              != tuple(array.get(n, {}).get(k) for k in keys)]
    result = {"date": time.strftime("%Y-%m-%d"), "size": len(klass), "nodes": args.nodes,
              "cores": os.cpu_count(), "k": args.k,
              "array_wall_s": round(array_s, 1), "one_by_one_wall_s": round(alone_s, 1),
              "same_gradebook": not differ, "differ": differ, **costs,
              "graded_seconds_median": statistics.median(float(r["seconds"])
                                                         for r in alone.values())}
    print(json.dumps(result, indent=1))
    for name in differ:
        print(f"  {name}: one by one {[alone[name][k] for k in keys]}, array "
              f"{[array.get(name, {}).get(k) for k in keys]}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    print(log.splitlines()[-1] if log else "")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
