"""Gradescope and GitHub Classroom reports: their structure, and scores that agree with the
score table printed at the end of the run, for a full, a zero and a partial score."""

from __future__ import annotations

import json
import re

import pytest

from parakit.controller.session import reports
from tests.helpers import make_submission, run_grader

SUBSET = "hello or (matmul and (mpi or pool))"  # no ipyparallel cluster: fast


def _table_total(output: str) -> tuple[float, float]:
    m = re.search(r"^total\s+([\d.]+) / ([\d.]+)", output, re.M)
    assert m, output[-3000:]
    return float(m[1]), float(m[2])


def check_gradescope(data: dict) -> None:
    assert isinstance(data["score"], (int, float))
    assert isinstance(data["execution_time"], (int, float)) and data["execution_time"] > 0
    assert data["tests"]
    for t in data["tests"]:
        assert {"name", "score", "max_score", "status", "output", "visibility"} <= set(t), t
        assert isinstance(t["name"], str) and t["name"]
        assert t["status"] in ("passed", "failed")
        assert t["visibility"] in reports.VISIBILITIES
        assert 0 <= t["score"] <= t["max_score"]
        assert (t["status"] == "passed") == (t["score"] == t["max_score"])
        assert (t["output"] == "") == (t["status"] == "passed"), t
    assert data["score"] == sum(t["score"] for t in data["tests"])


def check_classroom(data: dict) -> None:
    assert data["version"] == 3
    assert data["status"] in ("pass", "fail", "error")
    assert isinstance(data["max_score"], (int, float))
    for t in data["tests"]:
        assert {"name", "status", "score", "message", "duration"} <= set(t), t
        assert t["status"] in ("pass", "fail", "error")
        assert isinstance(t["duration"], int) and t["duration"] >= 0
    if data["status"] == "pass":
        assert all(t["status"] == "pass" for t in data["tests"])
        assert sum(t["score"] for t in data["tests"]) == data["max_score"]


SUBMISSIONS = {  # name -> (edits of the reference or None for the stubs, expected score kind)
    "full": ({}, "full"),
    "zero": (None, "zero"),
    "partial": ({"matmul": ("def matmul_pool(", "def matmul_pool_renamed(")}, "partial"),
}


@pytest.mark.parametrize("kind", SUBMISSIONS)
def test_reports_agree_with_the_score_table(tmp_path, kind):
    edits, _ = SUBMISSIONS[kind]
    target = "student" if edits is None else str(make_submission(tmp_path, edits))
    gs, cl = tmp_path / "results.json", tmp_path / "classroom.json"
    run = run_grader(tmp_path, "--target", target, "-k", SUBSET, f"--grade-json={gs}",
                     f"--classroom-json={cl}")
    assert run.returncode in (0, 1), run.output[-3000:]
    got, possible = _table_total(run.output)
    gradescope, classroom = json.loads(gs.read_text()), json.loads(cl.read_text())
    check_gradescope(gradescope)
    check_classroom(classroom)

    # the same tests as pytest ran (deselected ones are not counted), the same points
    assert len(gradescope["tests"]) == len(run.results) == len(classroom["tests"])
    assert gradescope["score"] == got
    assert sum(t["max_score"] for t in gradescope["tests"]) == possible == classroom["max_score"]
    assert sum(t["score"] for t in classroom["tests"]) == got
    by_name = {t["name"]: t for t in gradescope["tests"]}
    for name, (outcome, message) in run.results.items():
        [test] = [t for n, t in by_name.items() if n.endswith(": " + name)]
        assert test["status"] == outcome
        if outcome == "failed":  # the grader's one-line verdict, no traceback of the grader
            assert test["output"].splitlines()[0] in message
            assert "Traceback" not in test["output"] and not test["output"].startswith("Failed")

    if kind == "full":
        assert got == possible > 0 and classroom["status"] == "pass"
    elif kind == "zero":
        assert got == 0 and classroom["status"] == "fail"
        assert all(t["output"].startswith("not implemented yet: student/")
                   for t in gradescope["tests"])
    else:
        assert 0 < got < possible and classroom["status"] == "fail"
        failed = [t for t in gradescope["tests"] if t["status"] == "failed"]
        assert failed and all("pool" in t["name"] for t in failed)
        assert all("has no function matmul_pool" in t["output"] for t in failed)
    # hidden tests are graded, and shown with the hidden visibility
    hidden = [t for t in gradescope["tests"] if "hidden" in t["tags"]]
    assert all("(course test): test_matmul_hidden[" in t["name"] for t in hidden)
    numbers = [tuple(map(int, t["number"].split("."))) for t in gradescope["tests"]]
    assert len(set(numbers)) == len(numbers)  # one number each, exercise.test
    assert hidden and all(t["visibility"] == "after_published" for t in hidden)
    assert all(t["visibility"] == "visible" for t in gradescope["tests"] if t not in hidden)
    assert run.leftovers == []


def test_hidden_tests_can_be_left_out_and_visibility_is_checked(tmp_path):
    gs = tmp_path / "results.json"
    run = run_grader(tmp_path, "--target", "reference", "-k", "hello and P1",
                     "--hidden-tests=none", "--hidden-visibility=visible", f"--grade-json={gs}")
    assert run.returncode == 0, run.output[-3000:]
    assert not [t for t in json.loads(gs.read_text())["tests"] if "hidden" in t["tags"]]
    run = run_grader(tmp_path, "--hidden-visibility=secret")
    assert run.returncode == 4 and "--hidden-visibility='secret': expected one of" in run.output


def test_error_reports_are_a_visible_zero(tmp_path):
    reports.error_reports("pytest crashed", tmp_path / "g.json", tmp_path / "c.json", 1.5)
    g = json.loads((tmp_path / "g.json").read_text())
    c = json.loads((tmp_path / "c.json").read_text())
    assert g["score"] == 0 and g["output"] == "pytest crashed"
    assert c["status"] == "error" and c["tests"][0]["message"] == "pytest crashed"
    check_classroom(c)


def test_short_message_drops_the_prefix_and_cuts_long_text():
    assert reports.short_message("Failed: one line") == "one line"
    long = reports.short_message("x" * (reports.MAX_OUTPUT + 100))
    assert len(long) < reports.MAX_OUTPUT + 50 and long.endswith("[... cut ...]")


def test_the_classroom_report_fits_githubs_limit_whatever_the_messages():
    long = "x" * reports.MAX_OUTPUT
    results = [reports.TestResult(f"grader/test_matmul.py::test_matmul[case-{i}]", "matmul",
                                  0.0, 1.0, False, long) for i in range(150)]
    data = reports.classroom(results)
    text = json.dumps(data)
    assert len(text) <= reports.CLASSROOM_BYTES
    assert data["max_score"] == 150 and len(data["tests"]) == 150  # every test, every point
    assert all(t["message"].startswith("xxx") and t["message"].endswith("GitHub's limit]")
               for t in data["tests"])
    short = reports.classroom(results[:3])
    assert [t["message"] for t in short["tests"]] == [long] * 3  # nothing cut when it fits
