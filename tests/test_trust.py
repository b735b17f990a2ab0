"""The trust boundary end to end: what hostile graded code does must not reach the verdict.

The catalogue (tests/catalogue.py, TRUST) checks the verdicts of each attack; these tests check
the side effects a verdict cannot show: code that would run in the grading process, and a
detached process that rewrites the score report after the grader wrote it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import psutil

from tests.catalogue import TRUST
from tests.helpers import make_submission, run_grader

EXPLOIT_MARKER = Path("/tmp/parakit-exploit-ran")  # written by the catalogue's _Exploit


def test_a_returned_exploit_never_runs_in_the_grader(tmp_path):
    EXPLOIT_MARKER.unlink(missing_ok=True)
    sub = next(b for b in TRUST if b.name == "pool_returns_exploit").build(tmp_path)
    run = run_grader(tmp_path, "--target", str(sub), "-k", "matmul and pool and square")
    [message] = run.failed().values()
    assert "returned an unsupported type _Exploit" in message
    assert not EXPLOIT_MARKER.exists(), "the grader deserialised the submission's object"
    assert run.leftovers == []


# Detach (double fork, new session, empty environment), then overwrite the report whose path
# is on the grader's command line, again and again.
_FORGER = '''
def _forge_report():
    import os, sys
    import psutil
    cmd = " ".join(sum((p.cmdline() for p in psutil.Process().parents()), []))
    report = cmd.split("--grade-json=")[1].split()[0]
    writer = ("import json, sys, time\\n"
              "while True:\\n"
              "    open(sys.argv[1], 'w').write(json.dumps({'score': 999, 'tests': []}))\\n"
              "    time.sleep(0.05)\\n")
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.execve(sys.executable, [sys.executable, "-c", writer, report], {})
        os._exit(0)
    os.wait()

'''


def test_a_detached_process_cannot_rewrite_the_report(tmp_path):
    sub = make_submission(tmp_path, {"matmul": ("def matmul_pool(",
                                                _FORGER + "\ndef matmul_pool(")})
    path = sub / "matmul.py"
    path.write_text(path.read_text().replace(
        "    m, n = A.shape[0], B.shape[1]\n",
        "    m, n = A.shape[0], B.shape[1]\n    _forge_report()\n", 1))
    report = tmp_path / "results.json"
    run = run_grader(tmp_path, "--target", str(sub), "-k", "matmul and pool and square",
                     f"--grade-json={report}")
    time.sleep(0.5)  # a surviving forger would write again within 50 ms
    data = json.loads(report.read_text())
    assert data["score"] == 0 and len(data["tests"]) == 1, data
    assert "running after it returned" in data["tests"][0]["output"]
    assert run.leftovers == []
    forgers = [p for p in psutil.process_iter(["cmdline"])
               if any("--grade-json" not in a and "score': 999" in a
                      for a in p.info["cmdline"] or [])]
    assert forgers == []
