"""The pictures of ``parakit bench`` (matplotlib, headless): scaling plots for every problem and
size, and for Mandelbrot the picture, per-pixel times, per-block costs, per-worker work and
each worker's timeline."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from parakit import timeline, workloads
from parakit.bench import report
from parakit.controller.processes.cputime import available_cpus
from problems.mandelbrot import block_rows, chunk_costs, imbalance, mandelbrot


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def scaling(results: list[dict], workload: str, size: str, path: Path) -> Path:
    """Time (ms, the median with the spread of the runs) and speedup against workers, one line
    per function (a colour per backend, balanced dashed), with the serial and ideal lines."""
    plt = _pyplot()
    mine = [r for r in results if r["workload"] == workload and r["size"] == size
            and r["median"] and r["ok"]]
    serial = next((r["median"] for r in mine if r["backend"] == "serial"), None)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    lines = [r for r in mine if r["backend"] != "serial" and not r["contrast"]]
    most = max([r["workers"] for r in lines], default=1)
    for name in dict.fromkeys(report.label(r) for r in lines):
        rows = sorted((r for r in lines if report.label(r) == name), key=lambda r: r["workers"])
        workers = [r["workers"] for r in rows]
        ms = np.array([r["median"] for r in rows]) * 1e3
        spread = np.array([[m - min(r["times"]) * 1e3, max(r["times"]) * 1e3 - m]
                           for m, r in zip(ms, rows, strict=True)]).T  # fastest to slowest
        backend, _, scheme = name.partition(" ")
        style = dict(color=timeline.COLOURS.get(backend), ls="--" if scheme == "balanced"
                     else "-", marker="o", capsize=3, label=name)
        left.errorbar(workers, ms, yerr=spread, **style)
        if serial:
            right.errorbar(workers, serial * 1e3 / ms, **style)
    if serial:
        left.axhline(serial * 1e3, color="k", ls=":", lw=1, label="serial")
        right.plot([1, most], [1, most], color="k", ls="--", lw=1, label="ideal")
    cpus, _ = available_cpus()
    for ax in (left, right):
        if cpus < most:  # beyond it workers share cores: the curves say so, not the schemes
            ax.axvline(cpus, color="grey", ls=":", lw=1, label=f"{cpus:g} CPUs: beyond, "
                       "workers share them")
        ax.set_xlabel("workers (processes)")
        ax.set_xticks(sorted({r["workers"] for r in lines} or {1}))
    left.set_ylabel("time (ms): median, bars from fastest to slowest run")
    left.set_yscale("log")
    from matplotlib.ticker import FuncFormatter  # plain numbers of ms, not powers of ten

    for axis in (left.yaxis,):
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        axis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    right.set_ylabel("speedup over serial")
    left.legend(fontsize=8)
    fig.suptitle(f"{workload} {size}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def pixel_seconds(spec) -> np.ndarray:
    """Wall seconds of each pixel's escape-time loop, shape ``(h, w)``."""
    out = np.empty((spec.h, spec.w))
    clock = time.perf_counter
    for k in range(spec.h):
        y = spec.y1 + k * spec.dy
        for j in range(spec.w):
            begin = clock()
            mandelbrot(spec.x1 + j * spec.dx, y, spec.maxit)
            out[k, j] = clock() - begin
    return out


def mandelbrot_figure(results: list[dict], size: str, workers: int, image_file: Path,
                      path: Path) -> Path:
    """The picture, the per-pixel time histogram, the per-block costs at ``workers`` blocks and,
    per backend, each worker's share of the work, chunked beside balanced (from the traces)."""
    plt = _pyplot()
    spec = workloads.inputs("mandelbrot", size, "")[0]
    seconds = pixel_seconds(spec)
    fig, axes = plt.subplots(2, 3, figsize=(14, 7.5))
    picture, hist, blocks = axes[0]
    image = workloads.load_expected(image_file)
    if image is not None:
        picture.imshow(image, cmap="nipy_spectral", origin="lower", aspect="auto",
                       extent=(spec.x1, spec.x2, spec.y1, spec.y2))
    # the row blocks a chunked version gives its workers: the middle ones hold the set
    for block in block_rows(spec.h, workers)[1:]:
        picture.axhline(spec.y1 + block[0] * spec.dy, color="white", lw=1, ls="--")
    picture.set_title(f"{spec.w}x{spec.h}, maxit {spec.maxit}: {workers} row blocks")
    micro = seconds.ravel() * 1e6
    # A pixel interrupted by the OS can take milliseconds: such outliers would squash the
    # histogram, so it stops at the 99.9th percentile and says how many it left out.
    top = np.percentile(micro, 99.9)
    hist.hist(micro[micro <= top], bins=60, log=True)
    hist.set_xlabel("time per pixel (µs)")
    hist.set_ylabel("pixels")
    hist.set_title(f"per-pixel times: total {seconds.sum():.2f} s"
                   + (f", {np.sum(micro > top)} above {top:.0f} µs not shown" if top else ""))
    costs = chunk_costs(seconds, workers)
    blocks.bar(range(workers), costs)
    blocks.axhline(costs.mean(), color="k", ls="--", lw=1)
    blocks.set_xticks(range(workers))
    blocks.set_xlabel("row block")
    blocks.set_ylabel("seconds")
    blocks.set_title(f"{workers} row blocks: R = max/mean = {imbalance(costs):.2f}")
    for ax, backend in zip(axes[1], workloads.BACKENDS, strict=True):
        _work_bars(ax, results, backend, size, workers)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _work_bars(ax, results: list[dict], backend: str, size: str, workers: int) -> None:
    width, drawn = 0.4, False
    for offset, scheme in ((-width / 2, "chunked"), (width / 2, "balanced")):
        row = next((r for r in results if (r["workload"], r["backend"], r["scheme"], r["size"],
                                           r["workers"]) == ("mandelbrot", backend, scheme, size,
                                                              workers) and r["worker_work"]),
                   None)
        if row is None:
            continue
        drawn = True
        work = np.array(row["worker_work"])
        computing = np.array(report.computing(backend, scheme, row["worker_work"]))
        share = work / computing.mean()  # 1 = a perfect share of the work
        ax.bar(np.arange(len(work)) + offset, share, width,
               label=f"{scheme}: R = {imbalance(computing):.2f}")
    ax.set_title(f"{backend}, {workers} workers: work per worker")
    if not drawn:  # the backend was left out, or its functions did not run
        ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes,
                fontsize=11, color="grey")
        ax.set_xticks([])
        ax.set_yticks([])
        return
    ax.axhline(1, color="k", ls="--", lw=1)
    ax.set_xticks(range(workers))
    ax.set_xlabel("worker" + (" (rank 0: the balanced master)" if backend == "mpi" else ""))
    ax.set_ylabel("work / ideal share")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)


def timeline_figure(results: list[dict], size: str, workers: int, path: Path) -> Path:
    """Each worker's work over time in the traced runs: a row per backend, chunked (solid)
    beside balanced (dashed); "not measured" where a function did not run."""
    panels = []
    for backend in workloads.BACKENDS:
        for scheme in ("chunked", "balanced"):
            row = next((r for r in results if (r["workload"], r["backend"], r["scheme"],
                                               r["size"], r["workers"]) ==
                        ("mandelbrot", backend, scheme, size, workers) and r.get("timeline")),
                       None)
            rows = [] if row is None else [
                (f"worker {i}" + (f" ({host})" if host else ""), [tuple(s) for s in spans])
                for i, (spans, host) in enumerate(zip(row["timeline"], _hosts(row),
                                                      strict=True))]
            title = f"{backend} {scheme}, {workers} workers"
            if row is not None and row["worker_work"]:
                computing = report.computing(backend, scheme, row["worker_work"])
                title += f": R = {imbalance(computing):.2f}"
            panels.append((title, rows, timeline.COLOURS[backend], scheme == "balanced"))
    title = f"Mandelbrot {size}: when each worker computed (ms from the first row)"
    if report.crowded(workers):  # the gaps are turns on a shared core, not idle workers
        title += "\n" + report.crowded(workers)
    return timeline.write(path, panels, columns=2, title=title)


def _hosts(row: dict) -> list[str]:
    """Host names for the labels, only when the workers ran on several hosts."""
    hosts = row.get("worker_hosts") or [""] * len(row["timeline"])
    return hosts if len(set(hosts)) > 1 else [""] * len(hosts)


def write_all(document: dict, plan) -> list[Path]:
    """Every plot of the run; the paths written."""
    results = document["results"]
    written = []
    for workload in plan.workloads:
        for size in plan.sizes[workload]:
            if any(r["workload"] == workload and r["size"] == size and r["median"]
                   for r in results):
                name = f"{workload}-{size.replace(':', '-')}.png"
                written.append(scaling(results, workload, size, plan.out / name))
    if "mandelbrot" in plan.workloads:
        size = plan.sizes["mandelbrot"][-1]
        image = workloads.expected_file(plan.out / "jobs", "mandelbrot", size)
        written.append(mandelbrot_figure(results, size, plan.trace_workers, image,
                                         plan.out / "mandelbrot-analysis.png"))
        written.append(timeline_figure(results, size, plan.trace_workers,
                                       plan.out / "mandelbrot-timeline.png"))
    return written
