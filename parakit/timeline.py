"""Per-worker timelines (Gantt charts) of a traced run: when each worker computed.

A balanced run shows bars that end together; a chunked one shows workers that finished early
and waited. The grader draws one for a failing balance test, and ``parakit bench`` draws chunked
beside balanced for every backend. Times are in milliseconds from the run's first record.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

Rows = list[tuple[str, list[tuple[float, float]]]]  # (worker label, [(start, end), ...])
COLOURS = {"mpi": "tab:blue", "ipp": "tab:orange", "pool": "tab:green"}  # one per backend


def rows_of(workers: Iterable[tuple[str, Iterable[tuple[float, float]]]]) -> Rows:
    """Rows with times relative to the earliest start among them (seconds)."""
    rows = [(label, sorted(spans)) for label, spans in workers]
    starts = [s for _, spans in rows for s, _ in spans]
    t0 = min(starts, default=0.0)
    return [(label, [(s - t0, e - t0) for s, e in spans]) for label, spans in rows]


def draw(ax, rows: Rows, title: str, colour: str = "tab:blue", dashed: bool = False) -> None:
    """One panel: a bar per worker and record; 'not measured' when there is nothing."""
    ax.set_title(title, fontsize=10)
    if not rows or not any(spans for _, spans in rows):
        ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes,
                fontsize=11, color="grey")
        ax.set_xticks([])
        ax.set_yticks([])
        return
    for i, (_, spans) in enumerate(rows):
        ax.broken_barh([(s * 1e3, max((e - s) * 1e3, 0.05)) for s, e in spans], (i - 0.35, 0.7),
                       facecolors=colour, edgecolors="black" if dashed else "white",
                       linestyles="--" if dashed else "-", linewidth=0.6)
    end = max(e for _, spans in rows for _, e in spans) * 1e3
    ax.axvline(end, color="black", lw=0.8, ls=":")
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([label for label, _ in rows], fontsize=8)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xlabel("ms since the first work")
    ax.grid(axis="x", alpha=0.3)


def write(path: Path, panels: Sequence[tuple[str, Rows, str, bool]], columns: int = 1,
          title: str = "") -> Path:
    """A figure of panels (title, rows, colour, dashed), ``columns`` wide, at 100 dpi."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nrows = -(-len(panels) // columns)
    height = max(2.2, 0.35 * max((len(rows) for _, rows, _, _ in panels), default=4) + 1.2)
    # one time axis per row of panels: chunked and balanced side by side compare at a glance
    fig, axes = plt.subplots(nrows, columns, figsize=(6 * columns, height * nrows),
                             squeeze=False, sharex="row")
    for ax, (name, rows, colour, dashed) in zip(axes.flat, panels, strict=False):
        draw(ax, rows, name, colour, dashed)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    save_png(fig, path)
    return path


def save_png(fig, path: Path) -> None:
    """Write ``fig`` to ``path`` at 100 dpi, whole or not at all (a temporary name, then a
    rename: another run may be reading it), and close it. The grader's pictures all go here."""
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        fig.savefig(partial, dpi=100, format="png")
        os.replace(partial, path)
    finally:
        plt.close(fig)
        with contextlib.suppress(OSError):  # there only when saving failed
            os.remove(partial)
