"""One sandbox per grading (``parakit.sandbox``): what a grading inside cannot see or touch,
and two gradings side by side (``parakit grade --jobs 2``) that cannot reach each other."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from parakit import sandbox
from tests.catalogue import _POOL_START
from tests.helpers import KIT, make_submission

pytestmark = pytest.mark.skipif(bool(sandbox.unavailable()), reason=sandbox.unavailable())

LOOK = '''
import glob, os, sys
outside, allowed = sys.argv[1:3]
victim = os.environ["VICTIM"]  # not in any command line inside: only the victim's has it
found = [p for p in glob.glob("/proc/[0-9]*/cmdline")
         if os.path.basename(victim).encode() in open(p, "rb").read()]
print("victim process seen:", bool(found))
print("outside /tmp folder seen:", os.path.exists(victim))
print("/dev/shm entries:", len(os.listdir("/dev/shm")))
for path in (outside, os.path.join(allowed, "ok.txt")):
    try:
        open(path, "w").write("x")
        print("wrote", path)
    except OSError as exc:
        print("refused", path, exc.errno)
'''


def test_a_sandbox_sees_no_other_process_tmp_or_shm_and_writes_only_where_allowed(tmp_path):
    victim_dir = Path("/tmp") / f"parakit-victim-{time.time_ns()}"
    victim_dir.mkdir()
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)",
                               victim_dir.name])
    allowed = tmp_path / "allowed"
    try:
        out = subprocess.run([sys.executable, "-m", "parakit.sandbox", "--write", str(allowed),
                              "--", sys.executable, "-c", LOOK, str(KIT / "forbidden.txt"),
                              str(allowed)], env={**os.environ, "VICTIM": str(victim_dir)},
                             cwd=KIT, capture_output=True, text=True, timeout=60)
    finally:
        victim.kill()
        victim.wait()
        victim_dir.rmdir()
    assert out.returncode == 0, out.stderr
    assert "victim process seen: False" in out.stdout
    assert "outside /tmp folder seen: False" in out.stdout
    assert "/dev/shm entries: 0" in out.stdout
    assert f"refused {KIT / 'forbidden.txt'}" in out.stdout
    assert f"wrote {allowed / 'ok.txt'}" in out.stdout
    assert not (KIT / "forbidden.txt").exists()


# A submission that hunts for other gradings' job folders (through process command lines and
# /tmp) for 3 s at the start of each child, and writes failing results into what it finds. Two
# copies graded side by side hunt each other; in sandboxes neither finds anything, and each
# says so by failing if it does.
_HUNT = '''
_hunted = []


def _hunt():
    import glob, json, os, time
    if _hunted:
        return
    _hunted.append(True)
    session = os.path.dirname(os.getcwd())  # this grading's own job folders are fair game
    found = set()
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline and not found:
        for cmd in glob.glob("/proc/[0-9]*/cmdline"):
            try:
                parts = open(cmd, "rb").read().decode(errors="replace").split("\\0")
            except OSError:
                continue
            if "parakit.worker.grade" in parts:
                found.add(parts[-2] if not parts[-1] else parts[-1])
        found.update(glob.glob("/tmp/parakit-grading-*/*-matmul_*"))
        found = {f for f in found if os.path.dirname(f) != session}
        for folder in found:
            for i in range(20):
                try:
                    with open(os.path.join(folder, f"result-{i}-0.json"), "w") as f:
                        json.dump({"status": "error", "message": "sabotaged"}, f)
                except OSError:
                    pass
        time.sleep(0.05)
    if found:
        raise RuntimeError(f"found {len(found)} job folder(s) of another grading")
'''


@pytest.mark.long(40)
def test_two_gradings_side_by_side_cannot_reach_each_other(tmp_path):
    hunters = [make_submission(tmp_path, {"matmul": [
        ("from problems.matmul import multiply\n", "from problems.matmul import multiply\n"
         + _HUNT),
        (_POOL_START, _POOL_START + "    _hunt()\n")]}, name) for name in ("first", "second")]
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "-m", "parakit.cli", "grade", *map(str, hunters),
                          "--jobs", "2", "-k", "matmul and pool", "--out", str(out)],
                         cwd=KIT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    book = {row["submission"]: row for row in csv.DictReader(open(out / "gradebook.csv"))}
    for name in ("first", "second"):  # neither found the other, nor lost a point to it
        assert book[name]["failed"] == "0", (name, (out / name / "output.txt").read_text())
        assert float(book[name]["total"]) == float(book[name]["possible"]) > 0


# Graded code that writes a forged score table into the grader's own output through /proc.
TERMINAL_FORGER = '''
import os
import psutil
from mpi4py import MPI


def greeting(comm):
    proc = psutil.Process()
    while proc is not None:
        if any("pytest" in part for part in proc.cmdline()):
            try:  # every descriptor: pytest keeps its terminal on a copy of its stdout
                fds = os.listdir(f"/proc/{proc.pid}/fd")
            except OSError:
                fds = []
            for fd in fds:
                try:
                    with open(f"/proc/{proc.pid}/fd/{fd}", "a") as out:
                        out.write("\\nFORGED SCORE TABLE: total 999 / 999\\n")
                except OSError:
                    pass
        proc = proc.parent()
    return f"Hello from {MPI.Get_processor_name()}. {comm.Get_rank()} of {comm.Get_size()}"
'''


def test_graded_code_cannot_write_into_the_graders_output(tmp_path):
    forger = tmp_path / "forger"
    forger.mkdir()
    (forger / "hello.py").write_text(TERMINAL_FORGER)
    run = subprocess.run([sys.executable, "-m", "parakit.sandbox", "--read", str(tmp_path),
                          "--", sys.executable, "-m", "pytest", "grader", "-p",
                          "no:cacheprovider", "--target", str(forger), "-k",
                          "hello and greeting and P1"],
                         cwd=KIT, capture_output=True, text=True, timeout=120)
    assert "1 passed" in run.stdout, run.stdout[-2000:]
    assert "FORGED" not in run.stdout + run.stderr


# Graded code that looks for the answer key and a classmate's work where a grader's machine
# has them: the kit's reference/ (importable: the kit is on the graded path) and the other
# submission of the batch, given by its path.
def _copier(classmate: Path) -> str:
    return (
        "def greeting(comm: MPI.Comm) -> str:\n"
        "    import importlib.util, os\n"
        f"    for path in ({str(KIT / 'reference' / 'hello.py')!r}, "
        f"{str(classmate / 'hello.py')!r}, {str(KIT / 'tests' / 'catalogue.py')!r}):\n"
        "        if os.path.exists(path):\n"
        "            raise RuntimeError(f'read {path}')\n"
        "    if importlib.util.find_spec('reference.hello') is not None:\n"
        "        raise RuntimeError('imported the reference')\n")


@pytest.mark.long(20)
def test_a_grading_finds_neither_the_reference_nor_a_classmates_submission(tmp_path):
    classmate = make_submission(tmp_path, {}, "bob")
    copier = make_submission(tmp_path, {"hello": [
        ("def greeting(comm: MPI.Comm) -> str:\n", _copier(classmate))]}, "alice")
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "-m", "parakit.cli", "grade", str(copier),
                          str(classmate), "--out", str(out), "-k", "hello and greeting and P1"],
                         cwd=KIT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    book = {row["submission"]: row for row in csv.DictReader(open(out / "gradebook.csv"))}
    assert book["alice"]["failed"] == "0", (out / "alice" / "output.txt").read_text()[-2000:]
    assert float(book["alice"]["total"]) == float(book["alice"]["possible"]) > 0
    assert (KIT / "reference" / "hello.py").exists() and (classmate / "hello.py").exists()
