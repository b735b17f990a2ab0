"""The class's gradebook (CSV) and a unique, file-system-safe name per submission."""

from __future__ import annotations

import csv
import re
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


def names(paths: Sequence[Path]) -> list[tuple[str, Path]]:
    """A unique, file-system-safe name per submission (its folder's name)."""
    named, seen = [], set()
    for path in paths:
        base = re.sub(r"[^\w.-]", "_", Path(path).resolve().name) or "submission"
        name, i = base, 2
        while name in seen:
            name, i = f"{base}-{i}", i + 1
        seen.add(name)
        named.append((name, Path(path)))
    return named
