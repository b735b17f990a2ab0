"""What platforms export, as ``parakit grade`` reads it (parakit.classroom.exports): zip
archives and folders of them, git repositories at a deadline, a Gradescope export; what cannot
be graded gets a row with the reason, and the rest are graded."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from parakit import sandbox
from parakit.classroom import exports
from tests.helpers import KIT

DEADLINE = exports.parse_deadline("2026-12-01T23:59+00:00")


def _package(dest: Path, greeting: str = "Hello") -> Path:
    """A student package: the reference's, its greeting word replaced."""
    shutil.copytree(KIT / "reference", dest, ignore=shutil.ignore_patterns("__pycache__"))
    hello = dest / "hello.py"
    hello.write_text(hello.read_text().replace('f"Hello from', f'f"{greeting} from'))
    return dest


def _zip(folder: Path, archive: Path, under: str = "") -> Path:
    with zipfile.ZipFile(archive, "w") as z:
        for path in folder.rglob("*"):
            z.write(path, str(Path(under, path.relative_to(folder))))
    return archive


def _commit(repo: Path, when: str, message: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_DATE": when, "GIT_COMMITTER_DATE": when,
           "GIT_AUTHOR_NAME": "s", "GIT_AUTHOR_EMAIL": "s@x", "GIT_COMMITTER_NAME": "s",
           "GIT_COMMITTER_EMAIL": "s@x"}
    for cmd in (["add", "-A"], ["commit", "-q", "-m", message]):
        subprocess.run(["git", "-C", str(repo), *cmd], check=True, env=env, capture_output=True)


def test_a_folder_of_zips_each_its_own_submission(tmp_path):
    zips = tmp_path / "lms"
    zips.mkdir()
    _zip(_package(tmp_path / "a"), zips / "alice.zip")
    _zip(_package(tmp_path / "b"), zips / "bob smith.zip", under="hw3/student")  # one level down
    (zips / "carol.zip").write_bytes(b"not a zip at all")
    evil = zips / "dave.zip"
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("../../outside.py", "print('escaped')")
    other = tmp_path / "late"
    other.mkdir()
    _zip(_package(tmp_path / "a2", greeting="Hi"), other / "alice.zip")  # another alice
    found = {s.name: s for s in exports.gather([zips, other / "alice.zip"], tmp_path / "out")}
    assert set(found) == {"alice", "alice-2", "bob_smith", "carol", "dave"}
    assert "Hi from" in (found["alice-2"].path / "hello.py").read_text()  # each its own files
    assert "Hello from" in (found["alice"].path / "hello.py").read_text()
    assert (found["alice"].path / "hello.py").is_file()
    assert found["bob_smith"].path.name == "hw3"  # its package is hw3/student
    assert found["carol"].path is None and "not a readable zip archive" in found["carol"].error
    assert found["dave"].path is None and "would be written outside it" in found["dave"].error
    assert not (tmp_path / "outside.py").exists()


def test_a_repository_is_graded_at_its_last_commit_before_the_deadline(tmp_path):
    repo = tmp_path / "alice-hw"
    _package(repo / "student")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    _commit(repo, "2026-11-30T12:00+00:00", "on time")
    hello = repo / "student" / "hello.py"
    hello.write_text(hello.read_text().replace('f"Hello from', 'f"Late from'))
    _commit(repo, "2026-12-02T09:00+00:00", "late")
    empty = tmp_path / "bob-hw"
    (empty / "student").mkdir(parents=True)
    (empty / "student" / "notes.txt").write_text("todo")
    subprocess.run(["git", "init", "-q", str(empty)], check=True)
    _commit(empty, "2026-12-03T09:00+00:00", "only after")
    found = {s.name: s for s in exports.gather([repo, empty], tmp_path / "out", DEADLINE)}
    graded = found["alice-hw"].path / "student" / "hello.py"
    assert 'f"Hello from' in graded.read_text()  # the commit on time, not the late one
    assert found["bob-hw"].path is None
    assert "no commit before the deadline 2026-12-01T23:59:00+00:00" in found["bob-hw"].error


def test_a_gradescope_export_is_named_by_its_submitters(tmp_path):
    export = tmp_path / "assignment_42_export"
    _package(export / "submission_101")
    (export / "submission_102").mkdir()
    (export / "submission_102" / "README.txt").write_text("nothing here")
    (export / exports.GRADESCOPE).write_text(
        "submission_101:\n  :submitters:\n  - :name: Ada Lovelace\n    :sid: '1'\n"
        "  :created_at: 2026-11-30\nsubmission_102:\n  :submitters:\n  - :name: Alan Turing\n"
        "  - :name: Grace Hopper\n")
    found = {s.name: s for s in exports.gather([_zip(export, tmp_path / "export.zip")],
                                               tmp_path / "out")}
    assert set(found) == {"Ada_Lovelace-submission_101",
                          "Alan_Turing_Grace_Hopper-submission_102"}
    assert found["Alan_Turing_Grace_Hopper-submission_102"].error.startswith(
        "no student package in it")


def test_bad_inputs_are_named(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    found = exports.gather([tmp_path / "nowhere", tmp_path / "notes.txt"], tmp_path / "out")
    assert [s.error for s in found] == [f"{tmp_path / 'nowhere'}: no such file or directory",
                                        f"{tmp_path / 'notes.txt'}: neither a folder nor a zip "
                                        "archive"]
    with pytest.raises(ValueError, match="not a date and time such as"):
        exports.parse_deadline("friday")


@pytest.mark.long(20)
def test_parakit_grade_grades_what_it_can_and_names_the_rest(tmp_path):
    zips = tmp_path / "lms"
    zips.mkdir()
    _zip(_package(tmp_path / "a"), zips / "alice.zip")
    (zips / "carol.zip").write_bytes(b"PK broken")
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "parakit.cli", "grade", str(zips), "--out",
                           str(out), "--no-sandbox", "-k", "hello and program and P1"],
                          cwd=KIT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 submission(s), 1 that cannot be graded" in done.stderr
    rows = {r["submission"]: r for r in csv.DictReader(open(out / "gradebook.csv"))}
    assert rows["alice"]["total"] == rows["alice"]["possible"] != "0"
    assert rows["carol"]["total"] == "0" and "not a readable zip archive" in rows["carol"]["errors"]
    # messages name the submission, not the temporary copy it was graded from
    assert "score: alice" in (out / "alice" / "output.txt").read_text()


@pytest.mark.long(20)
@pytest.mark.skipif(bool(sandbox.unavailable()), reason=sandbox.unavailable() or "sandbox")
def test_a_grading_cannot_read_the_other_unpacked_submissions(tmp_path):
    zips, out = tmp_path / "lms", tmp_path / "out"
    zips.mkdir()
    nosy = _package(tmp_path / "a")
    hello = nosy / "hello.py"
    bob = out / ".unpacked" / "bob" / "hello.py"
    hello.write_text(hello.read_text().replace(
        "def greeting(comm: MPI.Comm) -> str:\n",
        "def greeting(comm: MPI.Comm) -> str:\n"
        f"    if __import__('os').path.exists({str(bob)!r}):\n"
        "        raise RuntimeError('read another student')\n"))
    _zip(nosy, zips / "alice.zip")
    _zip(_package(tmp_path / "b"), zips / "bob.zip")
    done = subprocess.run([sys.executable, "-m", "parakit.cli", "grade", str(zips), "--out",
                           str(out), "-k", "hello and greeting and P1"],
                          cwd=KIT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert bob.exists()  # there for the instructor, not for alice's code
    rows = {r["submission"]: r for r in csv.DictReader(open(out / "gradebook.csv"))}
    assert rows["alice"]["failed"] == "0", (out / "alice" / "output.txt").read_text()[-2000:]
