"""Benchmark (not a test): the distributions behind the Mandelbrot balance rule.

    python benchmarks/balance_distributions.py [--runs 30] [--target reference] [--busy 2]

Runs every ``mandelbrot_{mpi,ipp,pool}_{chunked,balanced}`` of the target on ``GRADING`` at
P = 3 and 4 (balance is graded at 4) as ``grader/test_mandelbrot.py`` does (``Grading.run``,
batches of ``REPEATS`` runs per child), optionally beside ``--busy`` busy-loop processes, and
prints, per function and P, min / median / max of R (max/mean of per-worker work) and of
R_finish (max/mean of per-worker finish times), and how many batches of REPEATS runs pass
the balance rule.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from grader.harness import Grading, Runtime, Target, detect_mpiexec  # noqa: E402
from grader.ipp_cluster import SessionCluster  # noqa: E402
from grader.test_mandelbrot import (  # noqa: E402
    GRADING,
    REPEATS,
    balanced,
    finish_ratio,
    worker_work,
)
from problems.mandelbrot import imbalance  # noqa: E402

WORKERS = (3, 4)  # graded at 4; 3 shows why not there


def _spread(values: list[float]) -> str:
    return f"{min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--target", default="reference")
    parser.add_argument("--busy", type=int, default=0, help="busy-loop processes beside")
    parser.add_argument("--json", help="write every R here")
    args = parser.parse_args()
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
            for _ in range(args.busy)]
    workdir = Path(tempfile.mkdtemp(prefix="balance-"))
    cluster = SessionCluster(max(WORKERS), workdir)
    rt = Runtime(Target.resolve(args.target), 60.0, detect_mpiexec(), workdir)
    grading = Grading(rt, cluster)
    found = {}
    print(f"{'function':<28} P   {'R min/med/max':>18}  {'R_finish min/med/max':>20}  "
          "batches passing")
    try:
        for backend in ("mpi", "ipp", "pool"):
            for scheme in ("chunked", "balanced"):
                for workers in WORKERS:
                    extra = {"view": "balanced"} if backend == "ipp" and scheme == "balanced" \
                        else {}
                    runs = []
                    for _ in range(-(-args.runs // REPEATS)):
                        runs += grading.run(backend, "mandelbrot",
                                            f"mandelbrot_{backend}_{scheme}",
                                            [{"args": (GRADING,), "everywhere": True}] * REPEATS,
                                            workers, **extra)
                    ratios = [imbalance(worker_work(o, backend, scheme, workers)) for o in runs]
                    finish = [finish_ratio(o, backend, scheme, workers) for o in runs]
                    # the verdict on each batch of REPEATS runs, as the test gives it
                    batches = [runs[i:i + REPEATS] for i in range(0, len(runs), REPEATS)]
                    passes = sum(balanced(b, backend, scheme, workers) for b in batches)
                    name = f"mandelbrot_{backend}_{scheme}"
                    print(f"{name:<28} {workers}   {_spread(ratios):>18}  {_spread(finish):>20}"
                          f"  {passes}/{len(batches)}", flush=True)
                    found[f"{name}-{workers}"] = {"R": ratios, "R_finish": finish,
                                                  "passes": passes}
    finally:
        cluster.stop()
        for proc in busy:
            proc.kill()
            proc.wait()
    if args.json:
        Path(args.json).write_text(json.dumps(found, indent=1))


if __name__ == "__main__":
    main()
