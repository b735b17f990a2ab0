"""``parakit bench``: speed, speedup and scaling of every backend, and the pictures.

For each problem (matmul, mandelbrot, wordcount) and size it times the serial baseline, then
each backend's function of the target (the reference in the kit, the student's package in a
release) at each worker count, ``--repeat`` times. Every measurement is a child process of its
own (``parakit.worker.bench``) with BLAS/OpenMP pinned to one thread, so the serial baseline is
single-threaded numpy and no run disturbs the next. Start-up (``mpiexec`` launch, pool creation,
cluster start and connection) is measured apart from the timed calls.

Output: a table per problem on the terminal, ``bench.json`` with every time, and PNG plots
(time and speedup against workers; Mandelbrot's picture, per-pixel times, per-block costs and
per-worker work, chunked against balanced) in ``--out``. Comparisons that teach (``Scatterv``
against pickled ``scatter``, B shipped per task against once per worker, chunked against
balanced) are reported as ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from parakit import KIT_ROOT, workloads
from parakit.bench import plots, report
from parakit.bench.runner import Plan, default_workers, fresh_jobs_folder, run
from parakit.controller.processes.hosts import Hosts
from parakit.controller.session.runtime import Target

__all__ = ["Plan", "add_arguments", "main", "plan_from", "run"]


# -- command line ------------------------------------------------------------------------------

def _int_list(text: str) -> list[int]:
    try:
        values = sorted({int(v) for v in text.split(",")})
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of worker counts: {text!r} "
                                         "(e.g. 1,2,4)") from None
    if not values or values[0] < 1:
        raise argparse.ArgumentTypeError(f"worker counts must be 1 or more: {text!r}")
    return values


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("problems", nargs="*", metavar="PROBLEM",
                   help="matmul, mandelbrot, wordcount (default: all three)")
    p.add_argument("--target", help="the package to time: reference, student or a directory "
                   "(default: reference if the kit has it, else student)")
    p.add_argument("--workers", type=_int_list, default=default_workers(),
                   help="worker counts, e.g. 1,2,4,8 (default: "
                   f"{','.join(map(str, default_workers()))} on this machine)")
    p.add_argument("--size", action="append", default=[], metavar="PROBLEM=S1,S2",
                   help="sizes of one problem, e.g. matmul=1024,2048 mandelbrot=600x400:255 "
                   "wordcount=50MB (repeatable)")
    p.add_argument("--backends", default="mpi,ipp,pool", help="default: %(default)s")
    p.add_argument("--repeat", type=int, default=3, help="timed runs per point; the median "
                   "is reported (default: %(default)s)")
    p.add_argument("--mpiexec", help="MPI launch command, e.g. 'srun --mpi=pmi2' or "
                   "'mpirun --hostfile hosts' (default: the mpiexec next to this Python)")
    p.add_argument("--ipp-connect", metavar="FILE", help="use an existing ipyparallel cluster "
                   "(its ipcontroller-client.json) instead of starting one")
    p.add_argument("--hosts", default="", help="run MPI ranks and ipyparallel engines on these "
                   "hosts, e.g. node1:2,node2:2 (--out must then be a folder they all see at "
                   "the same path), or slurm: the nodes of the allocation this runs in; the "
                   "pool stays on this machine")
    p.add_argument("--hostfile", default="", help="the hosts in a file, HOST[:SLOTS] per line")
    p.add_argument("--remote-shell", default="ssh", help="how to run a command on a host "
                   "(default: %(default)s)")
    p.add_argument("--remote-copy", default="scp", help="how ipyparallel copies engine logs "
                   "back (default: %(default)s)")
    p.add_argument("--out", default="bench-results", help="JSON, PNGs and logs "
                   "(default: %(default)s)")
    p.add_argument("--data", help="where generated inputs are kept (default: OUT/data)")
    p.add_argument("--timeout", type=float, default=900, help="seconds per job "
                   "(default: %(default)s)")
    p.add_argument("--no-contrasts", action="store_true",
                   help="leave out the comparisons with the kit's worse versions")


def plan_from(args: argparse.Namespace) -> Plan:
    """The plan, or ValueError naming the bad option."""
    names = list(dict.fromkeys(args.problems)) or list(workloads.WORKLOADS)
    unknown = [n for n in names if n not in workloads.WORKLOADS]
    if unknown:
        raise ValueError(f"unknown problem {', '.join(unknown)} (choose from "
                         f"{', '.join(workloads.WORKLOADS)})")
    sizes = {name: list(workloads.WORKLOADS[name].sizes) for name in names}
    for item in args.size:
        name, eq, values = item.partition("=")
        if not eq or name not in workloads.WORKLOADS:
            raise ValueError(f"--size {item}: expected PROBLEM=SIZES with PROBLEM one of "
                             f"{', '.join(workloads.WORKLOADS)}")
        sizes[name] = [workloads.WORKLOADS[name].check_size(s) for s in values.split(",")]
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = sorted(set(backends) - set(workloads.BACKENDS))
    if unknown:
        raise ValueError(f"--backends: unknown {', '.join(unknown)} (choose from mpi, ipp, pool)")
    if args.repeat < 1:
        raise ValueError("--repeat must be 1 or more")
    target = args.target or ("reference" if (KIT_ROOT / "reference").is_dir() else "student")
    out = Path(args.out).resolve()
    hosts = Hosts.parse(args.hosts, args.hostfile, args.remote_shell, args.remote_copy)
    return Plan(names, {n: sizes[n] for n in names}, args.workers, backends, args.repeat,
                Target.resolve(target), out, Path(args.data) if args.data else out / "data",
                args.timeout, args.mpiexec, args.ipp_connect, not args.no_contrasts, hosts)


def main(args: argparse.Namespace) -> int:
    try:
        plan = plan_from(args)
        fresh_jobs_folder(plan.out / "jobs")
    except ValueError as exc:
        print(f"parakit bench: {exc}", file=sys.stderr)
        return 2
    print(f"parakit bench: {plan.target.display}, workers {','.join(map(str, plan.workers))}, "
          f"{plan.repeat} run(s) per point, {os.cpu_count()} CPUs; results in {plan.out}/",
          flush=True)
    if plan.hosts.several:
        print(f"parakit bench: MPI ranks and ipyparallel engines on {plan.hosts.describe()}; "
              "the pool and the serial baseline on this machine", flush=True)
    try:
        document = run(plan)
    except KeyboardInterrupt:
        print("\nparakit bench: interrupted; every job it started has been stopped",
              file=sys.stderr)
        return 130
    (plan.out / "bench.json").write_text(json.dumps(document, indent=1))
    (plan.out / "bench.md").write_text(report.markdown(document))
    print(report.comparison_text(document["comparisons"]))
    written = plots.write_all(document, plan)
    print(f"wrote {plan.out / 'bench.json'}, bench.md and {', '.join(p.name for p in written)} "
          f"in {document['seconds']:.0f} s")
    failed = [r for r in document["results"] if r["error"] or not r["ok"]]
    return 1 if failed else 0
