"""What ``parakit bench`` says: speedups, tables, the comparisons, per-worker work from traces.

``results`` throughout is the list of ``parakit.bench.Measured`` rows of one run.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from parakit.controller.processes.cputime import available_cpus
from problems import trace
from problems.mandelbrot import imbalance

SKIPPED = "skipped after the error above"


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def brief(rows: list) -> str:
    """The progress line's end: each size's median, or the error (once)."""
    parts = []
    for row in rows:
        if row.error == SKIPPED:
            continue
        if row.error:
            parts.append(f"{row.size}: {_first_line(row.error)}")
        else:
            parts.append(f"{row.size}: {row.median:.3f} s" + ("" if row.ok else " WRONG RESULT"))
    return "  ".join(parts)


def serial_of(results: list, row):
    """The serial baseline row of the same problem and size, if it ran."""
    for r in results:
        if (r.backend == "serial" and r.workload == row.workload and r.size == row.size
                and r.times):
            return r
    return None


def fill_speedups(results: list) -> None:
    """speedup = serial median / median, efficiency = speedup / workers."""
    for row in results:
        base = serial_of(results, row)
        if row.backend != "serial" and row.times and base is not None:
            row.speedup = base.median / row.median
            row.efficiency = row.speedup / row.workers


def computing(backend: str, scheme: str, work: list[float]) -> list[float]:
    """The work of the workers that computed: a balanced MPI version's rank 0 is left out only
    when it computed nothing (a master that only schedules, as the contrast's)."""
    idle_master = backend == "mpi" and scheme == "balanced" and len(work) >= 2 and not work[0]
    return list(work[1:]) if idle_master else list(work)


def worker_ratio(row) -> float | None:
    """R = max/mean of per-worker work over the workers that should compute."""
    work = computing(row.backend, row.scheme, row.worker_work)
    return imbalance(work) if work and sum(work) > 0 else None


def attach_work(row, workers: list[list], trace_dir: Path) -> None:
    """Each worker's work units, from the trace of one run, in the order of ``workers``
    ([host, pid] each: pids repeat across hosts), each worker's host, and when it computed
    (seconds from the run's first record)."""
    units: dict[tuple[str, int], float] = defaultdict(float)
    spans: dict[tuple[str, int], list] = defaultdict(list)
    records = trace.read(trace_dir)
    t0 = min((rec.start for rec in records), default=0.0)
    for rec in records:
        units[rec.where] += rec.units
        spans[rec.where].append([round(rec.start - t0, 6), round(rec.end - t0, 6)])
    row.worker_work = [units[(host, pid)] for host, pid in workers]
    row.worker_hosts = [host for host, _ in workers]
    row.timeline = [sorted(spans[(host, pid)]) for host, pid in workers]


def label(row: dict) -> str:
    """How tables and plots name a row's function: backend and scheme."""
    return f"{row['backend']} {row['scheme']}".strip()


def _blocks(results: list[dict], workload: str):
    """Per size of one problem: (size, its serial row or None, the other rows to show)."""
    rows = [r for r in results if r["workload"] == workload]
    for size in dict.fromkeys(r["size"] for r in rows):
        here = [r for r in rows if r["size"] == size]
        base = next((r for r in here if r["backend"] == "serial"), None)
        yield size, base, [r for r in here if r["backend"] != "serial" and r["error"] != SKIPPED]


def _failure(row: dict) -> str:
    """Why a row has no time to show ('' if it has one)."""
    return _first_line(row["error"]) if row["error"] else "" if row["ok"] else "WRONG RESULT"


SHARING = ("they take turns on the cores, so their times, speedups and timelines show the "
           "sharing, not the scheme")


def crowded(workers: int) -> str:
    """Why ``workers`` processes cannot each have a core here ('' when they can): more
    workers than the CPUs this process may use (affinity, cgroup quota)."""
    cpus, why = available_cpus()
    return f"{workers} workers on {cpus:g} CPU(s) ({why}): {SHARING}" if workers > cpus else ""


def table(workload: str, results: list[dict], cluster_seconds: float | None) -> str:
    """The terminal table of one problem: a block per size; rows with more workers than
    CPUs are marked, and a note says what that means."""
    lines = []
    shared = sorted({r["workers"] for r in results
                     if r["workload"] == workload and crowded(r["workers"])})
    for size, base, rows in _blocks(results, workload):
        head = f"\n{workload} {size}: serial "
        head += (f"{base['median']:.3f} s (median of {len(base['times'])})"
                 if base and base["median"]
                 else f"failed: {_first_line(base['error']) if base else 'not run'}")
        lines += [head, f"  {'':<22}{'P':>3} {'median s':>10} {'speedup':>8} "
                  f"{'efficiency':>10}   start-up (not in the median)"]
        for r in rows:
            name = label(r) + (" [contrast]" if r["contrast"] else "")
            if r["error"]:
                lines.append(f"  {name:<22}{r['workers']:>3}   {_failure(r)}")
                continue
            speed = f"{r['speedup']:8.2f} {r['efficiency']:10.2f}" if r["speedup"] \
                else f"{'':19}"
            wrong = "   WRONG RESULT" if not r["ok"] else ""
            mark = "*" if r["workers"] in shared else " "
            lines.append(f"  {name:<22}{r['workers']:>3}{mark}{r['median']:9.3f} {speed}   "
                         f"{_startup_text(r, cluster_seconds)}{wrong}")
    if shared:
        cpus, why = available_cpus()
        lines.append(f"  * more workers than the {cpus:g} CPU(s) here ({why}): {SHARING}")
    return "\n".join(lines)


def _startup_text(row: dict, cluster_seconds: float | None) -> str:
    if not row["startup"]:
        return ""
    text = f"{row['startup']['seconds']:.2f} s {row['startup']['what']}"
    if row["backend"] == "ipp" and cluster_seconds:
        text += f" (+ cluster start {cluster_seconds:.1f} s, once)"
    if row["startup"].get("task_ms") is not None:  # what a task's work must outweigh
        text += f"; an empty task {row['startup']['task_ms']:.1f} ms"
    return text


def _find(results: list, workload: str, size: str, backend: str, scheme: str, workers: int):
    for r in results:
        if (r.workload, r.size, r.backend, r.scheme, r.workers) == (
                workload, size, backend, scheme, workers) and r.times and r.ok:
            return r
    return None


def comparisons(results: list) -> list[dict]:
    """The ratios that teach, for every pair measured in this run (slower / faster idea)."""
    pairs = [  # (workload, backend, worse scheme, better scheme, what it shows)
        ("matmul", "mpi", "pickle", "", "pickle-based scatter/gather/bcast vs "
         "Scatterv/Gatherv/Bcast on buffers"),
        ("matmul", "pool", "ship-b", "per-worker", "B pickled with every task vs B given "
         "once per worker (initializer)"),
        ("matmul", "pool", "per-worker", "", "B once per worker (a new pool per call) vs the "
         "reference's memory-mapped files"),
        ("mandelbrot", "mpi", "master-only", "balanced", "a master that only schedules vs "
         "one that computes between hand-outs"),
    ] + [("mandelbrot", b, "chunked", "balanced", "one row block per worker vs small "
          "batches scheduled dynamically") for b in ("mpi", "ipp", "pool")]
    out = []
    for row in results:
        for workload, backend, worse, better, what in pairs:
            if (row.workload, row.backend, row.scheme) != (workload, backend, worse) \
                    or not row.times or not row.ok:
                continue
            good = _find(results, workload, row.size, backend, better, row.workers)
            if good is None or (workload == "mandelbrot" and row.workers < 2):
                continue
            out.append({"workload": workload, "size": row.size, "backend": backend,
                        "workers": row.workers, "slower": worse or backend,
                        "faster": better or backend, "slower_s": row.median,
                        "faster_s": good.median, "ratio": row.median / good.median,
                        "what": what,
                        "imbalance": {worse: worker_ratio(row), better: worker_ratio(good)}})
    return out


def comparison_text(items: list[dict]) -> str:
    if not items:
        return ""
    lines = ["\ncomparisons (time of the first / time of the second, same run):"]
    for c in items:
        ratios = [f"R {k or c['backend']} {v:.2f}" for k, v in c["imbalance"].items() if v]
        lines.append(f"  {c['workload']} {c['size']} {c['backend']} P={c['workers']}: "
                     f"{c['what']}: {c['slower_s']:.3f} s / {c['faster_s']:.3f} s = "
                     f"{c['ratio']:.2f}x" + (f"  ({', '.join(ratios)})" if ratios else ""))
    return "\n".join(lines)



def markdown(document: dict) -> str:
    """The run as Markdown tables (``bench.md``), ready to paste into a course page."""
    results, plan = document["results"], document["plan"]
    machine = document["machine"]
    lines = [f"`parakit bench` on {machine['cpus']} CPUs, Python {machine['python']}, target "
             f"`{plan['target']}`, median of {plan['repeat']} runs, BLAS/OpenMP on one thread; "
             f"{document['seconds']:.0f} s in all."]
    if document.get("cluster_start_seconds"):
        lines.append(f"The ipyparallel cluster started in {document['cluster_start_seconds']:.1f}"
                     " s (once, not in any time below).")
    for workload in plan["workloads"]:
        for size, base, rows in _blocks(results, workload):
            serial = f"{base['median']:.3f} s" if base and base["median"] else "failed"
            lines += ["", f"**{workload} {size}** (serial {serial})", "",
                      "| function | P | median s | speedup | efficiency | start-up s |",
                      "|---|---:|---:|---:|---:|---:|"]
            for r in rows:
                name = label(r) + (" (contrast)" if r["contrast"] else "")
                if _failure(r):
                    lines.append(f"| {name} | {r['workers']} | {_failure(r)} | | | |")
                    continue
                start = f"{r['startup']['seconds']:.2f}" if r["startup"] else ""
                speed = (f"{r['speedup']:.2f} | {r['efficiency']:.2f}" if r["speedup"]
                         else " | ")
                shared = "*" if r["workers"] > machine["cpus"] else ""
                lines.append(f"| {name} | {r['workers']}{shared} | {r['median']:.3f} | {speed} | "
                             f"{start} |")
    if any(r["workers"] > machine["cpus"] for r in results):
        lines += ["", f"\\* more workers than the {machine['cpus']} CPUs: {SHARING}."]
    if document["comparisons"]:
        lines += ["", "| comparison | P | first s | second s | ratio |",
                  "|---|---:|---:|---:|---:|"]
        for c in document["comparisons"]:
            lines.append(f"| {c['workload']} {c['size']} {c['backend']}: {c['what']} | "
                         f"{c['workers']} | {c['slower_s']:.3f} | {c['faster_s']:.3f} | "
                         f"{c['ratio']:.2f} |")
    return "\n".join(lines) + "\n"
