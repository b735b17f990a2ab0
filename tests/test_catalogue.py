"""Each broken submission of the catalogue fails exactly the tests that touch its defect, with
words a student understands, in bounded time, and leaves no process behind."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.catalogue import Broken, everything
from tests.helpers import run_grader

TIMEOUT = 5  # --call-timeout for these runs
HANGS = 4 * TIMEOUT  # --hang-budget: entries that hang everywhere stop after four hangs


@pytest.mark.parametrize("broken", everything(), ids=lambda b: b.name)
def test_broken_submission_is_caught(tmp_path, broken: Broken):
    sub = broken.build(tmp_path)
    run = run_grader(tmp_path, "--target", str(sub), "-k", broken.keyword,
                     "--call-timeout", str(TIMEOUT), "--hang-budget", str(HANGS),
                     "--workers", str(broken.workers))
    assert run.results, run.output[-3000:]
    expected = {name for name in run.results if any(p in name for p in broken.fails)}
    failed = run.failed()
    maybe = {name for name in failed if any(p in name for p in broken.may_fail)}
    assert set(failed) - maybe == expected, (
        f"failed but should pass: {sorted(set(failed) - expected)}; passed but should fail: "
        f"{sorted(expected - set(failed))}\n{run.output[-3000:]}")
    for name, message in failed.items():
        assert name in maybe or broken.says(message), (name, message[:2000])
        assert "Traceback (most recent call last)" not in message.split("---")[0], message
    for message in failed.values():  # a picture named in a message is there
        for picture in re.findall(r"(?:work over time|picture): (\S+\.png)", message):
            assert Path(picture).read_bytes().startswith(b"\x89PNG"), picture
    if broken.detail:
        assert any(broken.detail in m for m in failed.values()), list(failed.values())[0][:3000]
    # a hang costs one timeout per graded function (backend), plus start-up and grading
    assert run.seconds < 120 + (3 * TIMEOUT if broken.slow else 0), run.seconds
    assert run.leftovers == []
