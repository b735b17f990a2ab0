"""One sandbox per grading (``parakit.sandbox``): what a grading inside cannot see or touch,
and two gradings side by side (``parakit grade --jobs 2``) that cannot reach each other."""

from __future__ import annotations

import csv
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
outside, victim, allowed = sys.argv[1:4]
found = [p for p in glob.glob("/proc/[0-9]*/cmdline")
         if b"parakit-victim" in open(p, "rb").read()]
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
                               "parakit-victim"])
    allowed = tmp_path / "allowed"
    try:
        out = subprocess.run([sys.executable, "-m", "parakit.sandbox", "--write", str(allowed),
                              "--", sys.executable, "-c", LOOK, str(KIT / "forbidden.txt"),
                              str(victim_dir), str(allowed)],
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
# /tmp) and writes failing results into them: in a sandbox it finds nothing, and says so by
# failing if it does.
_HUNT = '''
def _hunt():
    import glob, json, os, time
    mine, found = os.getcwd(), set()
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        for cmd in glob.glob("/proc/[0-9]*/cmdline"):
            try:
                parts = open(cmd, "rb").read().decode(errors="replace").split("\\0")
            except OSError:
                continue
            if "parakit.worker.grade" in parts:
                found.add(parts[-2] if not parts[-1] else parts[-1])
        found.update(glob.glob("/tmp/parakit-grading-*/*-matmul_*"))
        found.discard(mine)
        for folder in found:
            for i in range(20):
                try:
                    with open(os.path.join(folder, f"result-{i}-0.json"), "w") as f:
                        json.dump({"status": "error", "message": "sabotaged"}, f)
                except OSError:
                    pass
        if found:
            raise RuntimeError(f"found {len(found)} other job folder(s)")
        time.sleep(0.05)
'''


@pytest.mark.long(40)
def test_two_gradings_side_by_side_cannot_reach_each_other(tmp_path):
    hunter = make_submission(tmp_path, {"matmul": [
        ("from problems.matmul import multiply\n", "from problems.matmul import multiply\n"
         + _HUNT),
        (_POOL_START, _POOL_START + "    _hunt()\n")]}, "hunter")
    victim = make_submission(tmp_path, {}, "victim")
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "-m", "parakit.cli", "grade", str(hunter), str(victim),
                          "--jobs", "2", "-k", "matmul and pool", "--out", str(out)],
                         cwd=KIT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    book = {row["submission"]: row for row in csv.DictReader(open(out / "gradebook.csv"))}
    for name in ("hunter", "victim"):  # neither found the other; the victim kept its points
        assert book[name]["failed"] == "0", (name, (out / name / "output.txt").read_text())
        assert float(book[name]["total"]) == float(book[name]["possible"]) > 0
