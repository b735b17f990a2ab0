"""``parakit release DEST``: the student distribution, installable with ``pip install -e DEST``:
no reference solutions, no hidden or kit tests, no instructor commands."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
from pathlib import Path

from parakit import KIT_ROOT as KIT
from parakit import bundle
from parakit.controller.session import reports

RELEASED = ["problems", "student", "grader", "parakit", "conftest.py", "pyproject.toml",
            ".gitignore"]
README = KIT / "docs" / "release" / "README.md"  # the students' README: every command works
# --workflow: (the kit's file, its name in the release's .github/workflows/)
WORKFLOWS = {"actions": (KIT / "ci" / "github-actions.yml", "grade.yml"),
             "classroom": (KIT / "ci" / "github-classroom.yml", "classroom.yml")}


def release(dest: Path, force: bool = False, kit_repo: str = "", kit_ref: str = "",
            workflow: str = "actions") -> Path:
    """Copy the student distribution to ``dest``, with the GitHub ``workflow`` (a key of
    :data:`WORKFLOWS`); return it."""
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        if not force:
            raise FileExistsError(f"{dest} exists and is not empty (use --force to replace it)")
        shutil.rmtree(dest)
    dest.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in RELEASED:
        src = KIT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=ignore)
        elif src.exists():
            shutil.copy2(src, dest / name)
    for home in ("cli", "classroom"):  # instructor commands and class gradings stay home
        shutil.rmtree(dest / "parakit" / home, ignore_errors=True)
    shutil.copy2(README, dest / "README.md")
    bundle.prune_pyproject(dest)  # only the packages it has, no instructor script
    points = hidden_points()
    if points:  # the score table says what the hidden tests will add
        (dest / "grader" / reports.HIDDEN_POINTS).write_text(json.dumps(points) + "\n")
    source, name = WORKFLOWS[workflow]
    if source.exists():
        text = source.read_text()
        if kit_repo:
            text = text.replace("INSTRUCTOR/parakit-instructor", kit_repo)
        if kit_ref:
            text = re.sub(r"(KIT_REF: ).*", rf"\g<1>{kit_ref}", text, count=1)
        target = dest / ".github" / "workflows" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return dest


class _Points:
    """A pytest plugin that sums the points of the collected tests per exercise."""

    def __init__(self) -> None:
        self.points: dict[str, float] = {}

    def pytest_collection_modifyitems(self, items) -> None:
        for item in items:
            marker = item.get_closest_marker("points")
            if marker is not None:
                exercise = reports.exercise_of(item.path)
                value = float(marker.args[0]) if marker.args else 1.0
                self.points[exercise] = self.points.get(exercise, 0.0) + value


def hidden_points(kit: Path = KIT) -> dict[str, float]:
    """Points per exercise of the kit's hidden tests (collected, not run)."""
    import pytest

    hidden = kit / "hidden"
    if not hidden.is_dir():
        return {}
    collector = _Points()
    with contextlib.redirect_stdout(io.StringIO()):
        pytest.main([str(hidden), "--collect-only", "-q", "-p", "no:cacheprovider",
                     "--hidden-tests", "none"], plugins=[collector])
    return collector.points
