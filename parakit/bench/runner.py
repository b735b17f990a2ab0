"""Running a bench plan: one child per (function, worker count), launched by its backend.

Each job is ``parakit.worker.bench`` started through the same backend interface grading uses
(``parakit.backends``): the MPI launcher, the ipyparallel cluster (started once, kept for the
run), a pool, or the plain serial baseline. The child writes what it measured to
``result.json`` in the job's folder; nothing of a job outlives it.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from parakit import KIT_ROOT, backends, workloads
from parakit.bench import report
from parakit.controller.processes.hosts import Hosts
from parakit.controller.processes.launch import Child
from parakit.controller.session.runtime import Target, child_env


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
    worker_hosts: list[str] = field(default_factory=list)  # traced runs: the host of each
    timeline: list[list] = field(default_factory=list)  # traced runs: [start, end] per record
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
    mpiexec: str | None  # a launch command (--mpiexec); None: the mpiexec next to python
    ipp_connect: str | None
    contrasts: bool
    hosts: Hosts = field(default_factory=Hosts)  # where ranks and engines run

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
        self.backends = backends.session(max(plan.workers), plan.out / "jobs", plan.mpiexec,
                                         plan.ipp_connect, hosts=plan.hosts)
        self.cluster_seconds: float | None = None
        self.count = 0

    def close(self) -> None:
        backends.stop_all(self.backends)

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

    def _launch(self, job: dict, jobdir: Path, backend_name: str, workers: int) -> str:
        """Run the child; '' if it exited cleanly, else why not."""
        backend = self.backends["plain" if backend_name == "serial" else backend_name]
        try:
            job.update(backend.start())
        except backends.BackendError as exc:
            return str(exc)
        self._note_cluster_start(backend)
        job["launched"] = time.time()
        (jobdir / "job.json").write_text(json.dumps(job))
        command = backend.command(["-m", "parakit.worker.bench", str(jobdir / "job.json")],
                                  workers)
        child = Child(command, child_env(scheduler=backend.schedules), KIT_ROOT, jobdir)
        try:
            code = child.wait(self.plan.timeout)
        finally:
            child.stop()  # nothing of the job may outlive it (also on Ctrl-C), on any host
            backend.sweep(child)
        if code is None:
            backend.failed()
            return f"timed out after {self.plan.timeout:g} s (--timeout)"
        if code == 0:
            return ""
        errors = sorted(jobdir.glob("result.json.error-*"))
        if errors:
            return errors[0].read_text()
        tail = (child.output("stderr") or child.output("stdout")).strip().splitlines()
        return f"exit code {code}" + (f": {tail[-1]}" if tail else "") + f" (log in {jobdir})"

    def _note_cluster_start(self, backend: backends.Backend) -> None:
        """Say once how long the ipyparallel cluster took to start (it is not in any time)."""
        seconds = getattr(getattr(backend, "cluster", None), "start_seconds", None)
        if self.cluster_seconds is None and seconds is not None:
            self.cluster_seconds = seconds
            print(f"(cluster of {backend.cluster.n} engines started in {seconds:.1f} s) ",
                  end="", flush=True)


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
                 "target": plan.target.display,
                 "hosts": ",".join(f"{h}:{n}" for h, n in plan.hosts.slots),
                 "mpiexec": " ".join(runner.backends["mpi"].launcher)
                 if "mpi" in plan.backends else ""},
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


