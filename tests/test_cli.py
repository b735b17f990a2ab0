"""``parakit``: release, grade and validate, end to end."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import venv
from argparse import Namespace

import psutil
import pytest

from parakit import cli
from parakit.classroom.submission import grade_one
from parakit.cli.validate import validate
from parakit.controller.processes import proctree
from tests import catalogue
from tests.catalogue import Broken
from tests.helpers import KIT, make_submission


@pytest.mark.long(55)
def test_release_has_no_solutions_and_installs_in_a_fresh_venv(tmp_path, capsys):
    dest = tmp_path / "release"
    assert cli.main(["release", str(dest), "--kit-repo", "course/kit", "--kit-ref", "v1"]) == 0
    names = {p.name for p in dest.iterdir()}
    assert {"problems", "student", "grader", "pyproject.toml", "README.md"} <= names
    assert not names & {"reference", "hidden", "tests", "benchmarks", "ci", "docs"}
    readme = (dest / "README.md").read_text()  # the students' own: nothing of the kit's
    assert not re.search(r"reference|pytest tests|\.ci/run|parakit (validate|grade|release)|"
                         r"instructors\.md|catalogue", readme), readme
    assert not (dest / "parakit" / "cli").exists()  # instructor commands stay home
    assert not (dest / "parakit" / "classroom").exists()
    assert not list(dest.rglob("__pycache__"))
    pyproject = (dest / "pyproject.toml").read_text()
    assert ('packages = ["problems", "student", "grader", "parakit", "parakit.worker", '
            '"parakit.backends", "parakit.controller", "parakit.controller.verdicts", '
            '"parakit.controller.processes", "parakit.controller.session", "parakit.bench"]'
            ) in pyproject
    assert "parakit.cli" not in pyproject
    workflow = (dest / ".github" / "workflows" / "grade.yml").read_text()  # the plain job
    assert "KIT_REPO: course/kit" in workflow and "KIT_REF: v1" in workflow
    assert "GITHUB_STEP_SUMMARY" in workflow and not (dest / ".github" / "workflows" /
                                                      "classroom.yml").exists()
    assert cli.main(["release", str(dest)]) == 2  # not over an existing release without --force
    assert cli.main(["release", str(tmp_path / "placeholder")]) == 0
    assert cli.main(["release", str(tmp_path / "classroom"), "--workflow", "classroom",
                     "--kit-repo", "course/kit"]) == 0  # a GitHub Classroom assignment's
    workflows = tmp_path / "classroom" / ".github" / "workflows"
    assert [p.name for p in workflows.iterdir()] == ["classroom.yml"]
    assert "run-autograding-tests:" in (workflows / "classroom.yml").read_text()
    assert "warning: the GitHub workflow still names the placeholder" in \
        capsys.readouterr().err

    # A plain venv (no system site-packages): a missing dependency would show here.
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = str(env_dir / "bin" / "python")
    clean = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    clean["PATH"] = f"{env_dir / 'bin'}:{clean.get('PATH', '')}"
    install = subprocess.run([python, "-m", "pip", "install", "-q", "-e", str(dest)],
                             capture_output=True, text=True, env=clean, timeout=600)
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    gs = tmp_path / "results.json"
    run = subprocess.run([python, "-m", "pytest", "grader", "-p", "no:cacheprovider",
                          "-k", "hello or matmul", f"--grade-json={gs}"], cwd=dest,
                         capture_output=True, text=True, env={**clean, "PYTEST_ADDOPTS": ""},
                         timeout=600)
    output = run.stdout + run.stderr
    assert run.returncode == 1, output[-4000:]
    assert re.search(r"^total\s+0 / [1-9]", output, re.M), output[-3000:]
    # the hidden tests are not in the release; the table says what they will add
    assert json.loads((dest / "grader" / "hidden_points.json").read_text()) == {"matmul": 6.0}
    assert "+6 hidden points (6 in matmul) are graded later" in output, output[-3000:]
    tests = json.loads(gs.read_text())["tests"]
    assert tests and all(t["status"] == "failed" for t in tests)
    assert all(re.match(r"not implemented yet: student/\w+\.py \w+$", t["output"])
               for t in tests), [t["output"] for t in tests][:5]
    assert not [t for t in tests if "hidden" in t["tags"]]

    # Every command of the students' README works there: with the stubs, each one runs and
    # says what is not implemented yet (the install lines were done above).
    for command in readme_commands(readme):
        done = subprocess.run(command, shell=True, cwd=dest, capture_output=True, text=True,
                              env={**clean, "PYTEST_ADDOPTS": ""}, timeout=600)
        said = done.stdout + done.stderr
        stub = re.search(r"not ?implemented", said, re.I)
        assert done.returncode in (0, 1) or stub, (command, said[-2000:])
        assert stub or "0 / " in said, (command, said[-2000:])
        assert not re.search(r"No such file|unrecognized arguments|usage error|Errno 2", said), \
            (command, said[-2000:])

    # The benchmark works in the release too: the student's stubs, and no kit contrasts.
    bench = subprocess.run([python, "-m", "parakit.bench", "matmul", "--size", "matmul=32",
                            "--workers", "1", "--backends", "pool", "--repeat", "1",
                            "--out", str(tmp_path / "bench")], cwd=dest, capture_output=True,
                           text=True, env=clean, timeout=600)
    assert bench.returncode == 1, bench.stdout[-3000:] + bench.stderr[-3000:]
    assert "parakit bench: student" in bench.stdout
    assert re.search(r"pool\s+1\s+not implemented", bench.stdout), bench.stdout
    assert "contrast" not in bench.stdout


def test_grade_writes_a_gradebook_and_survives_broken_submissions(tmp_path):
    subs = tmp_path / "subs"
    good = make_submission(subs, {}, name="alice")
    broken = make_submission(subs, {"matmul": ("import os\n", "import os\ndef broken(:\n")},
                             name="bob-smith")  # not an identifier: graded under a safe name
    repo = subs / "carol"
    (repo / "student").mkdir(parents=True)
    for f in (KIT / "student").glob("*.py"):
        (repo / "student" / f.name).write_text(f.read_text())
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "parakit.cli", "grade", str(good), str(broken),
                           str(repo), str(subs / "nobody"), "--out", str(out), "--jobs", "2",
                           "-k", "hello or (matmul and pool)"],
                          cwd=KIT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "4 submission(s), 1 that cannot be graded" in proc.stderr
    assert re.search(r"\[\d/3\] alice", proc.stderr), proc.stderr  # progress of the graded
    rows = {r["submission"]: r for r in csv.DictReader((out / "gradebook.csv").open())}
    assert list(rows) == ["alice", "bob-smith", "carol", "nobody"]
    assert rows["alice"]["total"] == rows["alice"]["possible"] != "0"
    assert rows["alice"]["errors"] == "" and rows["alice"]["failed"] == "0"
    assert rows["bob-smith"]["hello"] == rows["alice"]["hello"]
    assert rows["bob-smith"]["matmul"] == "0"
    assert rows["carol"]["total"] == "0" and rows["carol"]["errors"] == ""
    assert rows["nobody"]["total"] == "0"
    assert rows["nobody"]["errors"] == f"{subs / 'nobody'}: no such file or directory"
    for name in ("alice", "bob-smith", "carol"):
        assert json.loads((out / name / "results.json").read_text())["score"] == float(
            rows[name]["total"])
        assert (out / name / "classroom.json").exists()
    assert "syntax error" in (out / "bob-smith" / "results.json").read_text()


def test_a_grading_that_overruns_is_stopped_and_scored_zero(tmp_path):
    sub = make_submission(tmp_path, {})
    graded = grade_one("slow", sub, tmp_path / "out", ["-k", "matmul and ipp"], timeout=3)
    assert "longer than 3 s" in graded.errors and graded.total == 0
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    assert data["score"] == 0 and "longer than 3 s" in data["output"]
    orphans = [p for p in psutil.process_iter() if (owner := proctree._environ(p).get(
        proctree.OWNER_VAR)) and owner.isdigit() and not psutil.pid_exists(int(owner))]
    assert orphans == []  # nothing of the killed run is left


def _validate_args(**kw) -> Namespace:
    base = dict(k="hello", workers=None, call_timeout=None, jobs=2, timeout=600,
                pytest_arg=None, quick=True, only=None)
    return Namespace(**{**base, **kw})


@pytest.mark.long(120)
def test_validate_passes_on_the_whole_catalogue(tmp_path):
    """As docs/instructors.md gives it (`parakit validate --quick --jobs 2`): every entry of the
    catalogue at the worker counts it is graded at, so that words or expectations that hold
    at one count only are found here (about 60 s on two idle cores)."""
    lines = []
    problems = validate(tmp_path, _validate_args(k=None), say=lines.append)
    assert problems == [], problems
    assert len(lines) == 2 + len([e for e in catalogue.CATALOGUE if not e.slow]), lines


def test_validate_finds_a_catalogue_that_catches_nothing(tmp_path):
    harmless = Broken("harmless", "hello",
                      {"hello": [("from mpi4py import MPI\n", "from mpi4py import MPI  # ok\n")]},
                      ("test_hello_greeting",), "Hello from")
    problems = validate(tmp_path, _validate_args(k="hello and P1"), entries=[harmless],
                            say=lambda line: None)
    assert any("harmless: hello: test_hello_greeting[P1] passed" in p
               for p in problems), problems
    assert any("fail for no broken submission" in p for p in problems), problems


def readme_commands(readme: str) -> list[str]:
    """The shell commands of a README's ``bash`` blocks, less the install lines."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", readme, re.S):
        for line in block.splitlines():
            command = line.split("  #")[0].strip()
            if command and not command.startswith(("python3 -m venv", "python -m pip")):
                commands.append(command)
    return commands
