"""Copies of the kit for places where graded code runs: no solutions, no kit tests, no history.

``python -m parakit.bundle DIR`` (standard library only, so it runs before the kit is
installed) turns a copy of the instructor's kit into a grader-only one: it removes ``reference/``,
``tests/``, ``benchmarks/`` and ``.git`` (whose objects hold the solutions too), and rewrites
``pyproject.toml`` to name only the packages that are left, so that ``pip install -e DIR``
still works. The Gradescope bundle (``ci/gradescope/make_zip.sh``) and the GitHub Classroom
workflow use it; ``parakit release`` uses :func:`prune_pyproject` for the student release.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

INSTRUCTOR_ONLY = ["reference", "tests", "benchmarks", ".git"]


def prune_pyproject(dest: Path) -> None:
    """Name only the packages that ``dest`` has, and drop the instructor's console script when
    its package (``parakit/cli``) is not there."""
    path = Path(dest) / "pyproject.toml"
    text = path.read_text()
    line = re.compile(r"(?m)^packages\s*=\s*\[([^\]]*)\]")
    found = line.findall(text)
    if len(found) != 1:
        raise RuntimeError(f"{path}: expected one `packages = [...]` line under "
                           "[tool.setuptools]")
    kept = [p for p in re.findall(r"[\"']([\w.]+)[\"']", found[0])
            if (Path(dest) / p.replace(".", "/") / "__init__.py").exists()]
    text = line.sub("packages = [" + ", ".join(f'"{p}"' for p in kept) + "]", text)
    if not (Path(dest) / "parakit" / "cli" / "__init__.py").exists():
        text = re.sub(r"(?m)^parakit\s*=\s*\"parakit\.cli:main\"\n", "", text)
        text = re.sub(r"(?m)^\[project\.scripts\]\n(?=\s*(\[|$))", "", text)
    path.write_text(text)


def grader_only(dest: Path) -> list[str]:
    """Remove what graded code must not find from the kit copy ``dest``; return what went."""
    dest = Path(dest)
    if not (dest / "grader").is_dir() or not (dest / "pyproject.toml").is_file():
        raise RuntimeError(f"{dest}: not a copy of the kit (no grader/ or pyproject.toml)")
    removed = []
    for name in INSTRUCTOR_ONLY:
        path = dest / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        else:
            continue
        removed.append(name)
    prune_pyproject(dest)
    return removed


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0].startswith("-"):
        print("usage: python -m parakit.bundle DIR   (make the kit copy DIR grader-only: no "
              + ", ".join(INSTRUCTOR_ONLY) + ")", file=sys.stderr)
        return 2
    try:
        removed = grader_only(Path(args[0]))
    except (OSError, RuntimeError) as exc:
        print(f"parakit.bundle: {exc}", file=sys.stderr)
        return 1
    print(f"grader-only kit in {args[0]}; removed: {', '.join(removed) or 'nothing'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
