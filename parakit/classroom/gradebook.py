"""The class's gradebook (CSV)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from parakit.classroom.submission import Graded


def write_gradebook(path: Path, graded: Sequence[Graded]) -> Path:
    """CSV: submission, points per exercise, total, possible, failed tests, seconds, errors."""
    exercises: list[str] = []
    for g in graded:
        exercises += [e for e in g.exercises if e not in exercises]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["submission", *exercises, "total", "possible", "failed", "seconds",
                      "errors"])
        for g in graded:
            out.writerow([g.name, *(f"{g.exercises.get(e, (0, 0))[0]:g}" for e in exercises),
                          f"{g.total:g}", f"{g.possible:g}", len(g.failed()),
                          f"{g.seconds:.1f}", g.errors])
    return path
