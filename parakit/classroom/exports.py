"""What teaching platforms export, as the submissions ``parakit grade`` grades.

Each input of ``parakit grade`` is one of:

- a folder: a student's package (``hello.py``, ``matmul.py``, ...) or a repository holding it
  in ``student/``;
- a zip archive of one (a folder of zips, as an LMS exports them, works too);
- a git repository (a GitHub Classroom clone): with ``--deadline``, its last commit before
  the deadline is graded, never the working tree;
- a Gradescope submissions export (its folder, or its zip): ``submission_metadata.yml`` and a
  ``submission_NNN/`` folder per submission, named in the gradebook by its submitters;
- a folder of any of these.

Archives and commits are unpacked into a staging folder of the class's output; what cannot be
graded (a broken archive, no commit before the deadline, no package inside) gets a row of its
own in the gradebook, with the reason, and the others are graded.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import tarfile
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath

MODULES = ("hello.py", "matmul.py", "mandelbrot.py", "wordcount.py")
ARCHIVE_BYTES = 200 * 2**20  # unpacked, per archive: a submission is a few kB
ARCHIVE_FILES = 10_000
GRADESCOPE = "submission_metadata.yml"
UNPACKED, COMMITS = ".unpacked", ".commits"  # under the class's output: what was staged


@dataclass
class Submission:
    """One row of the gradebook: a name, and the folder to grade or why there is none."""

    name: str
    path: Path | None
    error: str = ""


def parse_deadline(text: str) -> datetime:
    """``--deadline``: an ISO 8601 date and time (a time zone, or this machine's)."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--deadline {text}: not a date and time such as "
                         "2026-12-01T23:59 or 2026-12-01T23:59+01:00") from None
    return when if when.tzinfo else when.astimezone()


def gather(inputs: Sequence[str | Path], staging: Path,
           deadline: datetime | None = None) -> list[Submission]:
    """The submissions of ``inputs``, with names unique and safe as folder names; archives
    and commits unpacked afresh under ``staging`` (what an earlier grading unpacked there is
    removed first)."""
    for old in (UNPACKED, COMMITS):
        shutil.rmtree(staging / old, ignore_errors=True)
    found: list[Submission] = []
    for item in inputs:
        found += _expand(Path(item), staging, deadline)
    seen: set[str] = set()
    for sub in found:
        base, i = sub.name, 2
        while sub.name in seen:
            sub.name, i = f"{base}-{i}", i + 1
        seen.add(sub.name)
    return found


def _safe(name: str) -> str:
    return re.sub(r"[^\w.-]", "_", name).strip("._") or "submission"


def _expand(path: Path, staging: Path, deadline: datetime | None) -> list[Submission]:
    name = _safe(path.name.removesuffix(".zip"))
    if not path.exists():
        return [Submission(name, None, f"{path}: no such file or directory")]
    if path.is_file():
        if path.suffix.lower() != ".zip":
            return [Submission(name, None, f"{path}: neither a folder nor a zip archive")]
        try:
            unpacked = _unzip(path, _fresh(staging / UNPACKED, name))
        except ValueError as exc:
            return [Submission(name, None, f"{path.name}: {exc}")]
        if (unpacked / GRADESCOPE).is_file():
            return _gradescope(unpacked)
        return [_checked(Submission(name, unpacked))]
    if (path / GRADESCOPE).is_file():
        return _gradescope(path)
    if (path / ".git").exists() and deadline is not None:
        return [_checked(_at_deadline(path, name, staging, deadline))]
    if not _holds_package(path) and _is_collection(path):
        return [sub for child in sorted(path.iterdir()) if not child.name.startswith(".")
                for sub in _expand(child, staging, deadline)]
    return [_checked(Submission(name, path))]


def _is_collection(path: Path) -> bool:
    """A folder of submissions: of zips, repositories or folders, none a package itself."""
    return any(c.suffix.lower() == ".zip" or c.is_dir() for c in path.iterdir()
               if not c.name.startswith("."))


def _holds_package(path: Path) -> bool:
    return any((path / m).is_file() or (path / "student" / m).is_file() for m in MODULES)


def _checked(sub: Submission) -> Submission:
    """The submission, its folder the one that holds the package (an archive of a folder
    has it one level down), or why it has none."""
    if sub.path is None or _holds_package(sub.path):
        return sub
    inner = [c for c in sub.path.iterdir() if c.is_dir() and not c.name.startswith((".", "__"))]
    if len(inner) == 1 and _holds_package(inner[0]):
        return Submission(sub.name, inner[0])
    return Submission(sub.name, None, "no student package in it: expected student/ or "
                      f"{', '.join(MODULES)} at its top")


def _fresh(parent: Path, name: str) -> Path:
    """A new, empty folder ``parent/name`` (``name-2``... if two inputs share a name)."""
    parent.mkdir(parents=True, exist_ok=True)
    dest, i = parent / name, 2
    while dest.exists():
        dest, i = parent / f"{name}-{i}", i + 1
    dest.mkdir()
    return dest


def _unzip(archive: Path, dest: Path) -> Path:
    """``archive`` unpacked into the empty folder ``dest``; ValueError for an archive that is
    broken, too large, or has a member that would land outside ``dest`` or is a link."""
    try:
        with zipfile.ZipFile(archive) as z:
            members = z.infolist()
            if len(members) > ARCHIVE_FILES or \
                    sum(m.file_size for m in members) > ARCHIVE_BYTES:
                raise ValueError(f"too large to be a submission (more than {ARCHIVE_FILES} "
                                 f"files or {ARCHIVE_BYTES >> 20} MiB unpacked)")
            for m in members:
                parts = PurePosixPath(m.filename.replace("\\", "/")).parts
                if m.filename.startswith("/") or ".." in parts:
                    raise ValueError(f"its member {m.filename!r} would be written outside it")
                if (m.external_attr >> 16) & 0o170000 == 0o120000:
                    raise ValueError(f"its member {m.filename!r} is a symbolic link")
            z.extractall(dest)
    except (zipfile.BadZipFile, EOFError) as exc:
        raise ValueError(f"not a readable zip archive ({exc})") from None
    return dest


def _gradescope(export: Path) -> list[Submission]:
    """A Gradescope export: each ``submission_NNN`` folder, named by its submitters."""
    submitters = _submitters((export / GRADESCOPE).read_text(errors="replace"))
    found = []
    for folder in sorted(p for p in export.iterdir() if p.is_dir()
                         and p.name.startswith("submission_")):
        who = submitters.get(folder.name, [])
        name = _safe("+".join(who) + "-" + folder.name if who else folder.name)
        found.append(_checked(Submission(name, folder)))
    if not found:
        return [Submission(_safe(export.name), None, f"{GRADESCOPE} but no submission_* folder")]
    return found


def _submitters(metadata: str) -> dict[str, list[str]]:
    """submission_NNN -> its submitters' names, from Gradescope's YAML (read line by line:
    keys at the margin, ``:name:`` entries below them)."""
    out: dict[str, list[str]] = {}
    current = None
    for line in metadata.splitlines():
        if key := re.match(r"^(submission_\w+):\s*$", line):
            current = out.setdefault(key.group(1), [])
        elif current is not None and (name := re.match(r"^\s+-?\s*:name:\s*(.+?)\s*$", line)):
            current.append(name.group(1).strip("'\""))
    return out


def _at_deadline(repo: Path, name: str, staging: Path, deadline: datetime) -> Submission:
    """The repository's last commit (first parents of HEAD) before ``deadline``, exported."""
    def git(*args: str, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True,
                              timeout=120, **kw)

    try:
        found = git("rev-list", "-1", "--first-parent", f"--before={deadline.isoformat()}",
                    "HEAD", text=True)
        commit = found.stdout.strip()
        if found.returncode or not commit:
            why = found.stderr.strip().splitlines()[-1:] or ["it has none"]
            return Submission(name, None, f"no commit before the deadline "
                              f"{deadline.isoformat()} ({why[0]})")
        dest = _fresh(staging / COMMITS, name)
        archive = git("archive", "--format=tar", commit)
        if archive.returncode:
            return Submission(name, None, f"git archive {commit[:12]} failed: "
                              f"{archive.stderr.decode(errors='replace').strip()[-300:]}")
        _untar(archive.stdout, dest)
    except (OSError, subprocess.SubprocessError) as exc:
        return Submission(name, None, f"cannot read the repository with git: {exc}")
    return Submission(name, dest)


def _untar(data: bytes, dest: Path) -> None:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        if hasattr(tarfile, "data_filter"):  # Python 3.10.12, 3.11.4 and later
            tar.extractall(dest, filter="data")  # no links out, no absolute paths
        else:  # git archive writes neither absolute paths nor ".."
            tar.extractall(dest)


def describe(found: Iterable[Submission]) -> str:
    """One line: how many submissions, and how many cannot be graded."""
    found = list(found)
    bad = sum(1 for s in found if s.path is None)
    return f"{len(found)} submission(s)" + (f", {bad} that cannot be graded" if bad else "")
