"""Benchmark (not a test): are the verdicts a function of the submission alone?

    python benchmarks/stability.py [--conditions idle busy one-cpu half-cpu jobs-2]
                                   [--runs 10] [--idle-runs 30] [--entry-runs 2] [--json OUT]

Grades the reference (every test) ``--runs`` times in each condition of
``tests/conditions.py`` (``--idle-runs`` times idle; ``jobs-2`` grades two copies at once per
run), and the catalogue's static and fake-balanced Mandelbrot entries and its correct
alternatives ``--entry-runs`` times each (``-k "mandelbrot and balanced"``). Prints per
condition: how many reference gradings were full and which tests lost points how often, the
wall time and the peak memory of a grading (cgroups only), and per entry in how many runs it
got exactly its expected verdicts (the correct ones pass, the others fail where the catalogue
says). A condition the machine cannot make is skipped with the reason. Exit status 1 if any
verdict moved.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import catalogue, conditions  # noqa: E402

# static or fake-balanced: must fail their balance test everywhere; correct: must pass
ENTRIES = ("pool_balanced_is_chunked", "mpi_balanced_hands_out_blocks",
           "mpi_balanced_jittered_blocks", "mpi_balanced_jittered_blocks_in_pieces",
           "mpi_balanced_barrier", "pool_balanced_barrier",
           "ipp_balanced_barrier", "mpi_balanced_blocks_claimed_cyclic",
           "pool_balanced_blocks_claimed_cyclic", "mpi_balanced_cyclic",
           "mpi_balanced_computing_master", "pool_balanced_closes_and_joins")
ENTRY_TESTS = ["-k", "mandelbrot and balanced", "--workers", "2"]  # as tests/test_catalogue


def entries() -> list[catalogue.Broken]:
    by_name = {b.name: b for b in catalogue.everything()}
    return [by_name[name] for name in ENTRIES]


def as_expected(entry: catalogue.Broken, graded: conditions.Graded) -> bool:
    """The entry's verdicts, as tests/test_catalogue.py judges them."""
    expected = {n for n in graded.verdicts if any(p in n for p in entry.fails)}
    maybe = {n for n in graded.failed if any(p in n for p in entry.may_fail)}
    return bool(graded.verdicts) and set(graded.failed) - maybe == expected


def run_condition(condition: str, runs: int, entry_runs: int, work: Path) -> dict:
    reference = [work / f"reference_{i}" for i in range(2)]
    for copy in reference:
        if not copy.exists():
            shutil.copytree(conditions.KIT / "reference", copy,
                            ignore=shutil.ignore_patterns("__pycache__"))
    gradings: list[conditions.Graded] = []
    while len(gradings) < runs:
        targets = reference if condition == "jobs-2" else reference[:1]
        for g in conditions.grade(condition, targets, work / f"{condition}-{len(gradings)}", []):
            gradings.append(g)
            if g.failed or not g.verdicts:
                print(f"    {condition}: the reference lost points\n" + g.output[-3000:],
                      flush=True)
    lost = Counter(name for g in gradings for name in g.failed)
    row = {"gradings": len(gradings), "full": sum(bool(g.verdicts) and not g.failed
                                                   for g in gradings),
           "lost": dict(lost), "seconds": [round(g.seconds, 1) for g in gradings],
           "peak_mib": max(((g.peak_bytes or 0) >> 20 for g in gradings), default=0) or None,
           "entries": {}}
    built = [(e, e.build(work / f"entries-{condition}")) for e in entries()]
    for _ in range(entry_runs):
        if condition == "jobs-2":
            graded = conditions.grade(condition, [t for _, t in built],
                                      work / f"entries-{condition}-{_}", ENTRY_TESTS)
        else:
            graded = [conditions.grade(condition, [t], work / f"entry-{e.name}-{_}",
                                       ENTRY_TESTS)[0] for e, t in built]
        for (entry, _target), g in zip(built, graded, strict=True):
            ok = row["entries"].setdefault(entry.name, [0, 0])
            ok[0] += as_expected(entry, g)
            ok[1] += 1
            if not as_expected(entry, g):
                print(f"    {condition}, {entry.name}: failed {g.failed}, expected "
                      f"{entry.fails}\n" + g.output[-2000:], flush=True)
    return row


def show(condition: str, row: dict) -> None:
    secs = row["seconds"]
    peak = f", peak memory {row['peak_mib']} MiB" if row["peak_mib"] else ""
    if secs:
        print(f"{condition}: reference full in {row['full']} of {row['gradings']} gradings "
              f"({statistics.median(secs):.1f} s median, {max(secs):.1f} s max{peak})",
              flush=True)
    for name, n in sorted(row["lost"].items()):
        print(f"    lost points: {name} in {n} of {row['gradings']}", flush=True)
    for name, (good, n) in row["entries"].items():
        print(f"    {name:<38} expected verdicts in {good} of {n} runs", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conditions", nargs="*", default=list(conditions.CONDITIONS),
                        choices=conditions.CONDITIONS)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--idle-runs", type=int, default=30)
    parser.add_argument("--entry-runs", type=int, default=2)
    parser.add_argument("--json", help="write every figure here")
    args = parser.parse_args()
    found, moved = {}, False
    with tempfile.TemporaryDirectory(prefix="stability-") as tmp:
        for condition in args.conditions:
            why = conditions.unavailable(condition)
            if why:
                print(f"{condition}: skipped ({why})", flush=True)
                continue
            runs = args.idle_runs if condition == "idle" else args.runs
            row = run_condition(condition, runs, args.entry_runs, Path(tmp))
            show(condition, row)
            found[condition] = row
            moved |= row["full"] < row["gradings"] or any(
                good < n for good, n in row["entries"].values())
    if args.json:  # docs/figures/stability.json is what benchmarks/publish.py publishes
        Path(args.json).write_text(json.dumps({
            "date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(),
            "runs": {"idle": args.idle_runs, "other": args.runs, "entries": args.entry_runs},
            "conditions": found}, indent=1) + "\n")
    return 1 if moved else 0


if __name__ == "__main__":
    sys.exit(main())
