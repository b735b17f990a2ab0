"""``parakit bench``: speed, speedup and scaling of every backend, and the pictures.

For each problem (matmul, mandelbrot, wordcount) and size it times the serial baseline, then
each backend's function of the target (the reference in the kit, the student's package in a
release) at each worker count, ``--repeat`` times. Every measurement is a child process of its
own (``grader.bench.child``) with BLAS/OpenMP pinned to one thread, so the serial baseline is
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
import platform
import shutil
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from grader import proctree
from grader.bench import plots, report, workloads
from grader.harness import KIT_ROOT, Target, child_env, detect_mpiexec, mpi_command
from grader.ipp_cluster import SessionCluster


@dataclass
class Measured:
    """One row of the results: a function at one size and worker count."""

    workload: str
    size: str
    backend: str
    scheme: str
    workers: int
    times: list[float] = field(default_factory=list)
    startup: dict | None = None
    ok: bool = True
    error: str = ""
    contrast: bool = False
    worker_work: list[float] = field(default_factory=list)  # traced runs: work units per worker
    speedup: float | None = None
    efficiency: float | None = None

    @property
    def median(self) -> float | None:
        return statistics.median(self.times) if self.times else None

    def as_dict(self) -> dict:
        """The row as ``bench.json`` has it (what tables and plots read)."""
        return {**asdict(self), "median": self.median}


@dataclass
class Plan:
    """What one ``bench`` run measures, from the command line."""

    workloads: list[str]
    sizes: dict[str, list[str]]
    workers: list[int]
    backends: list[str]
    repeat: int
    target: Target
    out: Path
    datadir: Path
    timeout: float
    mpiexec: tuple[str, ...] | None
    mpi_error: str
    ipp_connect: str | None
    contrasts: bool

    @property
    def contrast_workers(self) -> int:
        """The worker count of the comparisons: the largest that does not oversubscribe."""
        fitting = [w for w in self.workers if 2 <= w <= (os.cpu_count() or 1)]
        return max(fitting or self.workers)

    @property
    def trace_workers(self) -> int:
        """The worker count of the per-worker work bars: the largest asked for."""
        return max(self.workers)


def default_workers() -> list[int]:
    """Powers of two up to the core count, the core count, and one more (so that a
    master-worker version, whose master does not compute, also gets one worker per core)."""
    cpus = os.cpu_count() or 1
    counts = {1 << i for i in range(cpus.bit_length()) if 1 << i <= cpus} | {cpus, cpus + 1}
    return sorted(counts)


# -- running the jobs --------------------------------------------------------------------------

class Runner:
    """Starts each job's child, with a time limit, and reads back what it measured."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self.cluster: SessionCluster | None = None
        self.cluster_seconds: float | None = None
        self.count = 0

    def connection_file(self) -> str:
        """The ipyparallel cluster, started (or connected to) on first use and kept."""
        if self.cluster is None:
            n = max(self.plan.workers)
            self.cluster = SessionCluster(n, self.plan.out / "jobs", self.plan.ipp_connect)
        path = self.cluster.connection_file()
        if self.cluster_seconds is None and self.cluster.start_seconds is not None:
            self.cluster_seconds = self.cluster.start_seconds
            print(f"(cluster of {self.cluster.n} engines started in "
                  f"{self.cluster_seconds:.1f} s) ", end="", flush=True)
        return path

    def close(self) -> None:
        if self.cluster is not None:
            self.cluster.stop()

    def run(self, workload: str, variant: workloads.Variant, workers: int,
            sizes: list[str], trace: bool = False) -> list[Measured]:
        plan = self.plan
        self.count += 1
        name = f"{workload}-{variant.backend}-{variant.scheme or 'x'}-{workers}"
        jobdir = plan.out / "jobs" / f"{self.count:03d}-{name}"
        jobdir.mkdir(parents=True, exist_ok=True)
        job = {"workload": workload, "variant": asdict(variant), "workers": workers,
               "sizes": sizes, "repeat": plan.repeat, "datadir": str(plan.datadir),
               "expected_dir": str(plan.out / "jobs"), "out": str(jobdir / "result.json"),
               "target_dir": str(plan.target.directory), "kit": str(KIT_ROOT)}
        if trace:
            (jobdir / "trace").mkdir(exist_ok=True)
            job["trace"] = {"size": sizes[-1], "dir": str(jobdir / "trace")}
        rows = [Measured(workload, s, variant.backend, variant.scheme, workers,
                         contrast=variant.module.startswith("reference.")) for s in sizes]
        error = self._launch(job, jobdir, variant.backend, workers)
        result = {}
        if Path(job["out"]).exists():
            result = json.loads(Path(job["out"]).read_text())
        for row in rows:
            run = result.get("runs", {}).get(row.size)
            row.startup = result.get("startup")
            if run is None:
                failed_before = any(r.error for r in rows if r is not row)
                row.error = report.SKIPPED if failed_before else \
                    error or f"no result (see {jobdir})"
            elif "error" in run:
                row.error = run["error"]
            else:
                row.times, row.ok = run["times"], run["ok"]
        if trace and result.get("workers"):
            report.attach_work(rows[-1], result["workers"], jobdir / "trace")
        return rows

    def _launch(self, job: dict, jobdir: Path, backend: str, workers: int) -> str:
        """Run the child; '' if it exited cleanly, else why not."""
        plan = self.plan
        module = ["-m", "grader.bench.child", str(jobdir / "job.json")]
        if backend == "mpi":
            if plan.mpi_error:
                return plan.mpi_error
            cmd = mpi_command(plan.mpiexec, workers, module)
        else:
            cmd = [sys.executable, *module]
        if backend == "ipp":
            try:
                job["connection_file"] = self.connection_file()
            except RuntimeError as exc:
                return str(exc)
        job["launched"] = time.time()
        (jobdir / "job.json").write_text(json.dumps(job))
        child = proctree.Child(cmd, child_env(), KIT_ROOT, jobdir)
        try:
            code = child.wait(plan.timeout)
        finally:
            child.stop()  # nothing of the job may outlive it (also on Ctrl-C)
        if code is None:
            return f"timed out after {plan.timeout:g} s (--timeout)"
        if code == 0:
            return ""
        errors = sorted(jobdir.glob("result.json.error-*"))
        if errors:
            return errors[0].read_text()
        tail = (child.output("stderr") or child.output("stdout")).strip().splitlines()
        return f"exit code {code}" + (f": {tail[-1]}" if tail else "") + f" (log in {jobdir})"


def run(plan: Plan) -> dict:
    """Measure everything the plan asks for (jobs in ``OUT/jobs``, which must exist and be
    empty); print progress and tables; return the results."""
    runner = Runner(plan)
    results: list[Measured] = []
    started = time.perf_counter()
    try:
        for name in plan.workloads:
            workload = workloads.WORKLOADS[name]
            sizes = plan.sizes[name]
            for size in sizes:
                workloads.prepare(name, size, plan.datadir)
            jobs = [(workloads.Variant("serial", ""), 1, False)]
            for variant in workload.variants:
                if variant.backend in plan.backends:
                    jobs += [(variant, w, name == "mandelbrot" and w == plan.trace_workers)
                             for w in plan.workers]
            if plan.contrasts and _have_contrasts():
                jobs += [(v, plan.contrast_workers, False) for v in workload.contrasts
                         if v.backend in plan.backends]
            for i, (variant, workers, trace) in enumerate(jobs, 1):
                print(f"[{name} {i:2d}/{len(jobs)}] {variant.label:<20} P={workers:<3} ",
                      end="", flush=True)
                rows = runner.run(name, variant, workers, sizes, trace)
                print(report.brief(rows), flush=True)
                results += rows
            report.fill_speedups(results)
            print(report.table(name, [r.as_dict() for r in results], runner.cluster_seconds),
                  flush=True)
    finally:
        runner.close()
    document = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform(), "node": platform.node()},
        "plan": {"workloads": plan.workloads, "sizes": plan.sizes, "workers": plan.workers,
                 "backends": plan.backends, "repeat": plan.repeat,
                 "target": plan.target.display, "mpiexec": " ".join(plan.mpiexec or ())},
        "cluster_start_seconds": runner.cluster_seconds,
        "results": [r.as_dict() for r in results],
        "comparisons": report.comparisons(results),
        "seconds": time.perf_counter() - started,
    }
    return document


MARK = ".parakit-bench"  # marks a folder of job folders that bench may empty


def fresh_jobs_folder(path: Path) -> None:
    """An empty folder for the jobs: a job must never read a result or a serial baseline left
    by an earlier run. Only a folder that bench made itself is emptied; anything else of that
    name is left alone (ValueError). The generated data (``--data``) is kept: it is stamped."""
    if path.exists():
        if not (path / MARK).exists():
            raise ValueError(f"{path} exists and was not made by parakit bench; choose another "
                             "--out")
        shutil.rmtree(path)
    path.mkdir(parents=True)
    (path / MARK).write_text("parakit bench job folders; emptied by each run\n")


def _have_contrasts() -> bool:
    return (KIT_ROOT / "reference" / "contrasts.py").is_file()


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
    mpiexec, mpi_error = None, ""
    if "mpi" in backends:
        try:
            mpiexec = detect_mpiexec(args.mpiexec)
        except RuntimeError as exc:
            mpi_error = str(exc)
    out = Path(args.out)
    return Plan(names, {n: sizes[n] for n in names}, args.workers, backends, args.repeat,
                Target.resolve(target), out, Path(args.data) if args.data else out / "data",
                args.timeout, mpiexec, mpi_error, args.ipp_connect, not args.no_contrasts)


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
