"""Benchmark (not a test): the distributions behind the Mandelbrot balance rule.

    python benchmarks/balance_distributions.py [--runs 10] [--workers 4] [--only NAME ...]
        [--conditions idle half-cpu] [--json docs/figures/balance.json]

Runs each scheme below on ``GRADING`` at P = ``--workers`` exactly as the grader does
(``Grading.run``, batches of ``REPEATS`` runs per child), in each of ``--conditions``
(``tests/conditions.py``: idle, busy, one-cpu, half-cpu), and prints per scheme min / median /
max over the runs of:
R_work (max/mean of per-worker work), the longest wait of any worker while others computed
(share of the span), R_finish, how crowded the CPUs were (the share of the time the workers
wanted a CPU and waited for one: above ``balance.CROWDED_MAX`` the run is judged by its
split, not its clock), the
largest piece handed out (share of a worker's fair share), the late share (work begun by
others after a worker's last piece), the number of workers that computed, how many batches
of REPEATS runs the rule
(``parakit.controller.verdicts.balance.balanced``) accepts, and in how many every run split the rows
among the workers in the same way (``balance.fixed_split``: judged by work alone).
``--json`` stores them all, the figure ``balance`` of ``benchmarks/publish.py``.

Schemes: the reference's chunked and balanced functions on the three backends, the correct
alternatives of tests/catalogue.py (MPI cyclic rows, a computing master) and the cheats
(static blocks with a barrier before the last rows, on every backend; the reference's master
handing out one static block per worker).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from parakit import backends  # noqa: E402
from parakit.controller.processes import proctree
from parakit.controller.session.grading import Grading  # noqa: E402
from parakit.controller.session.runtime import Runtime, Target  # noqa: E402
from parakit.controller.verdicts import balance, evidence
from problems.mandelbrot import GRADING  # noqa: E402
from tests import catalogue, conditions  # noqa: E402

KERNEL = "mandelbrot.compute_rows"
ALTERNATIVES = {  # name: (catalogue code, backend), graded as <backend>-balanced
    "mpi_cyclic": (catalogue.MPI_CYCLIC, "mpi"),
    "mpi_computing_master": (catalogue.MPI_COMPUTING_MASTER, "mpi"),
    "mpi_barrier_cheat": (catalogue.MPI_BARRIER, "mpi"),
    "pool_barrier_cheat": (catalogue.POOL_BARRIER, "pool"),
    "ipp_barrier_cheat": (catalogue.IPP_BARRIER, "ipp"),
}

# catalogue entries measured as they are: a master handing out fixed blocks, then the same
# with boundaries jittered per run (no two runs split alike)
EDITED = ("mpi_balanced_hands_out_blocks", "mpi_balanced_jittered_blocks")


COLUMNS = {"R_work": "r_work", "max wait": "max_wait", "R_finish": "r_finish",
           "crowded": "crowded", "piece": "largest_piece", "late": "late"}


def _spread(values: list[float]) -> str:
    return f"{min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f}"


def schemes(workdir: Path) -> list[tuple[str, Target, str, str]]:
    """(name, target, backend, scheme) for every scheme measured."""
    reference = Target.resolve("reference")
    out = [(f"reference {b} {s}", reference, b, s)
           for b in ("mpi", "ipp", "pool") for s in ("chunked", "balanced")]
    for name, (code, backend) in ALTERNATIVES.items():
        sub = catalogue.Broken(name, "mandelbrot", catalogue._redefine(code), (), "")
        out.append((name, Target.resolve(str(sub.build(workdir))), backend, "balanced"))
    for entry in catalogue.ROBUSTNESS:
        if entry.name in EDITED:
            out.append((entry.name, Target.resolve(str(entry.build(workdir))), "mpi",
                        "balanced"))
    return out


def measure(runs: int, workers: int, only: list[str] | None) -> dict:
    """Every scheme's measures over ``runs`` runs at P = ``workers``, printed as they come."""
    proctree.become_subreaper()
    workdir = Path(tempfile.mkdtemp(prefix="balance-"))
    session = backends.session(workers, workdir)
    found = {}
    print(f"{'scheme':<28} " + " ".join(f"{c:>17}" for c in COLUMNS)
          + f" {'computing':>9}  batches passing, with a fixed split", flush=True)
    try:
        for name, target, backend, scheme in schemes(workdir):
            if only and not any(o in name for o in only):
                continue
            grading = Grading(Runtime(target, 60.0, workdir, session))
            extra = {"view": "balanced"} if backend == "ipp" and scheme == "balanced" else {}
            measured = []
            for _ in range(-(-runs // balance.REPEATS)):
                outcomes = grading.run(backend, "mandelbrot", f"mandelbrot_{backend}_{scheme}",
                                       [{"args": (GRADING,), "everywhere": True}]
                                       * balance.REPEATS, workers, **extra)
                for o in outcomes:
                    if not o.ok:
                        print(f"{name}: {o.message}", flush=True)
                        continue
                    ev = evidence.sort_records(o, KERNEL, backend,
                                               evidence.mandelbrot_binding(GRADING))
                    measured.append(balance.measure(ev, GRADING, workers, o.seen))
            if not measured:
                continue
            batches = [measured[i:i + balance.REPEATS]
                       for i in range(0, len(measured), balance.REPEATS)]
            passing = sum(balance.balanced(b) for b in batches)
            fixed = sum(balance.fixed_split(b) for b in batches)
            row = {c: [getattr(m, attr) for m in measured] for c, attr in COLUMNS.items()}
            row.update(computing=[m.computing for m in measured], passing=passing, fixed=fixed,
                       batches=len(batches), timed=[m.timed for m in measured],
                       balances=[m.balances(not balance.fixed_split(b))  # each run on its own
                                 for b in batches for m in b])
            found[name] = row
            print(f"{name:<28} " + " ".join(f"{_spread(row[c]):>17}" for c in COLUMNS)
                  + f" {min(row['computing']):>4}-{max(row['computing'])}    "
                  f"{passing}/{len(batches)}    {fixed}/{len(batches)}", flush=True)
    finally:
        backends.stop_all(session)
        shutil.rmtree(workdir, ignore_errors=True)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--conditions", nargs="+", default=["idle"],
                        choices=[c for c in conditions.CONDITIONS if c != "jobs-2"])
    parser.add_argument("--only", nargs="*", help="schemes whose name contains one of these")
    parser.add_argument("--json", help="write every measure here (the figure: "
                                       "docs/figures/balance.json)")
    parser.add_argument("--here", help=argparse.SUPPRESS)  # a condition's run: its JSON file
    args = parser.parse_args()
    if args.here:
        Path(args.here).write_text(json.dumps(measure(args.runs, args.workers, args.only)))
        return 0
    for condition in args.conditions:
        if why := conditions.unavailable(condition):
            print(f"cannot measure {condition}: {why}", file=sys.stderr)
            return 2
    found = {}
    for condition in args.conditions:
        print(f"# {condition}", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp, "measures.json")
            cmd = [sys.executable, __file__, "--runs", str(args.runs), "--workers",
                   str(args.workers), "--here", str(out), *(["--only", *args.only]
                                                             if args.only else [])]
            output, _, _ = conditions.run_under(condition, cmd)
            print(output, end="", flush=True)
            if not out.exists():
                print(f"{condition}: the measuring run stored nothing", file=sys.stderr)
                return 1
            found[condition] = json.loads(out.read_text())
    if args.json:
        Path(args.json).write_text(json.dumps({
            "date": datetime.date.today().isoformat(), "cpus": os.cpu_count(),
            "workers": args.workers, "runs": args.runs, "conditions": found}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
