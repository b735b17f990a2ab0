"""The CI wrappers and bundles: what a student sees when grading did not complete, and what
graded code can reach.

- ``ci/gradescope/run_autograder`` (run in a temporary ``AUTOGRADER_ROOT``) and the Classroom
  workflow's grade step never keep a report of a run that did not end normally (graded code
  that forges ``results.json`` and kills pytest scores 0 with the reason), never keep a stale
  one, and a run in which no test ran says why.
- The Gradescope zip and the Classroom checkout hold no ``reference/``.
- ``--run-as`` (as root only): graded code cannot read the hidden tests, write the results or
  signal the grader, and the reference still gets full marks.
"""

from __future__ import annotations

import base64
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import psutil
import pytest
import yaml

from parakit import bundle, sandbox
from parakit.controller.processes import proctree, shm
from parakit.controller.session import reports
from tests.catalogue import CATALOGUE
from tests.helpers import KIT, run_grader

RUN_AUTOGRADER = KIT / "ci" / "gradescope" / "run_autograder"
WORKFLOW = KIT / "ci" / "github-classroom.yml"
ACTIONS = KIT / "ci" / "github-actions.yml"
KIT_PARTS = ["problems", "student", "grader", "parakit", "hidden", "conftest.py",
             "pyproject.toml"]
ONE_TEST = "hello and greeting and P1"  # one MPI job: a second or two

# Graded code that finds the pytest grading it, writes a full-marks report where pytest will
# write its own, and kills pytest so that pytest never does.
FORGER = '''
import json, os, signal
import psutil

def greeting(comm):
    proc = psutil.Process()
    while proc is not None:
        cmd = proc.cmdline()
        for flag in ("--grade-json", "--classroom-json"):
            if any("pytest" in part for part in cmd) and flag in cmd:
                path = cmd[cmd.index(flag) + 1]
                with open(path, "w") as f:
                    json.dump({"score": 999, "version": 3, "status": "pass", "max_score": 999,
                               "tests": [{"name": "FORGED", "score": 999, "max_score": 999,
                                          "status": "passed", "output": "FORGED"}]}, f)
                with open(os.environ["FORGER_PID_FILE"], "w") as f:
                    f.write(str(proc.pid))
                os.kill(proc.pid, signal.SIGKILL)
                return "forged"
        proc = proc.parent()
    return "no pytest found"
'''

# Graded code that tries what --run-as must forbid, and says what it got in its failure.
PROBER = '''
import os, signal

def greeting(comm):
    said = [f"uid {os.getuid()}"]
    for what, path, mode in [("read hidden", os.environ["PROBE_HIDDEN"], "r"),
                             ("write results", os.environ["PROBE_RESULTS"], "w")]:
        try:
            with open(path, mode) as f:
                f.write('{"score": 999}') if mode == "w" else said.append(f.read()[:200])
            said.append(f"{what}: done")
        except OSError as exc:
            said.append(f"{what}: {type(exc).__name__}")
    try:
        os.kill(int(os.environ["PARAKIT_OWNER"]), signal.SIGKILL)
        said.append("kill grader: done")
    except OSError as exc:
        said.append(f"kill grader: {type(exc).__name__}")
    raise RuntimeError("; ".join(said))
'''


def _copy_kit(dest: Path) -> Path:
    """The kit as a CI bundle holds it: grader, problems, stubs, hidden tests; no reference."""
    dest.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in KIT_PARTS:
        src = KIT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=ignore)
        else:
            shutil.copy2(src, dest / name)
    return dest


def make_autograder(base: Path, hello: str | None) -> Path:
    """An ``/autograder`` tree: the kit in source/, a venv/ whose activate puts this Python on
    PATH, and a submission (a repository with student/; ``hello``: its hello.py, else the stubs)."""
    root = base / "autograder"
    _copy_kit(root / "source")
    (root / "venv" / "bin").mkdir(parents=True)
    (root / "venv" / "bin" / "activate").write_text(
        f'export PATH="{Path(sys.executable).parent}:$PATH"\n')
    student = root / "submission" / "student"
    shutil.copytree(KIT / "student", student, ignore=shutil.ignore_patterns("__pycache__"))
    if hello is not None:
        (student / "hello.py").write_text(hello)
    return root


def run_autograder(root: Path, *pytest_args: str, run_as: str = "",
                   env: dict | None = None) -> tuple[dict, str]:
    """Run the wrapper as Gradescope does; return its results.json and its output."""
    proc = subprocess.run(["bash", str(RUN_AUTOGRADER), *pytest_args], capture_output=True,
                          text=True, timeout=600,
                          env={**os.environ, "PYTEST_ADDOPTS": "", "AUTOGRADER_ROOT": str(root),
                               "AUTOGRADER_RUN_AS": run_as, **(env or {})})
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]  # Gradescope reads results.json, not the code
    return json.loads((root / "results" / "results.json").read_text()), output


def _end_run(pid_file: Path, since: float) -> None:
    """What the killed pytest left (its graded job, and the shared memory of its ranks, which
    only the killed grader would have removed) goes; none may stay."""
    if not pid_file.exists():
        return
    owner = pid_file.read_text().strip()
    deadline = time.monotonic() + 10
    while proctree.tagged(proctree.OWNER_VAR, owner) and time.monotonic() < deadline:
        time.sleep(0.2)
    proctree.terminate(proctree.tagged(proctree.OWNER_VAR, owner))
    shm.sweep(since)


# -- Gradescope's run_autograder --------------------------------------------------------------

def test_a_forged_report_of_a_killed_run_is_replaced_by_a_visible_zero(tmp_path):
    root = make_autograder(tmp_path, FORGER)
    # where the graded code can write: the results folder (a sandbox hides the rest)
    pid_file, began = root / "results" / "killed-pid", time.time()
    (tmp_path / "tmp").mkdir()  # the killed grader cannot remove its session folder
    try:
        data, output = run_autograder(root, "-k", ONE_TEST, env={
            "FORGER_PID_FILE": str(pid_file), "TMPDIR": str(tmp_path / "tmp")})
    finally:
        _end_run(pid_file, began)
    assert pid_file.exists(), output[-3000:]  # the graded code found pytest and signalled it
    assert "FORGED" not in json.dumps(data)
    if sandbox.unavailable():  # it killed pytest: a visible zero says so
        assert data["score"] == 0 and data["tests"] == [], data
        assert "Grading did not complete" in data["output"]
        assert "killed by SIGKILL" in data["output"] and "pytest exit code 137" in data["output"]
    else:  # pytest is the sandbox's first process, which its graded code cannot kill
        [test] = data["tests"]
        assert test["score"] == 0 and "forged" in test["output"], data


def test_a_stale_report_never_survives(tmp_path):
    root = make_autograder(tmp_path, None)  # the stubs: an honest 0 from pytest
    (root / "results").mkdir()
    (root / "results" / "results.json").write_text('{"score": 999, "stale": true}')
    data, output = run_autograder(root, "-k", ONE_TEST)
    assert "stale" not in data and data["score"] == 0, data
    [test] = data["tests"]  # pytest's own report of this run
    assert test["output"].startswith("not implemented yet: ")


def test_a_usage_error_says_why(tmp_path):
    root = make_autograder(tmp_path, None)
    data, _ = run_autograder(root, "-k", ONE_TEST, "--workers", "0")
    assert data["score"] == 0 and data["tests"] == []
    assert "pytest exit code 4" in data["output"]
    assert "a usage error" in data["output"]
    assert "--workers='0': must be at least 1" in data["output"]  # pytest's own words, quoted


def test_a_run_in_which_no_test_ran_says_why(tmp_path):
    root = make_autograder(tmp_path, None)
    data, _ = run_autograder(root, "-k", "no_such_test")
    assert data["score"] == 0 and data["tests"] == []
    assert "pytest exit code 5" in data["output"] and "no test ran" in data["output"]


# -- the plugin's own reports, and the wrappers' shared step ---------------------------------

def test_the_plugin_says_why_a_run_has_no_score(tmp_path):
    gs, cl = tmp_path / "results.json", tmp_path / "classroom.json"
    run = run_grader(tmp_path, "-k", "no_such_test", f"--grade-json={gs}",
                     f"--classroom-json={cl}")
    assert run.returncode == 5
    data, classroom = json.loads(gs.read_text()), json.loads(cl.read_text())
    assert data["score"] == 0 and "no test ran" in data["output"]
    assert "-k 'no_such_test'" in data["output"]
    assert classroom["status"] == "error" and "no test ran" in classroom["tests"][0]["message"]
    run = run_grader(tmp_path, "--target", "no/such/dir", f"--grade-json={gs}")
    assert run.returncode == 4
    output = json.loads(gs.read_text())["output"]
    assert output.startswith("Grading did not start: --target no/such/dir: no such directory")


def test_settle_keeps_only_the_report_of_a_normal_end(tmp_path):
    gs, cl = tmp_path / "results.json", tmp_path / "classroom.json"
    for path in (gs, cl):
        path.write_text('{"score": 7}')
    assert reports.settle(1, "", gs, cl) == ""  # pytest ended normally and wrote them: kept
    assert json.loads(gs.read_text()) == {"score": 7}
    output = "collected 3 items\nhidden/test_matmul.py:12: secret line\nINTERNALERROR> boom\n"
    reason = reports.settle(3, output, gs, cl)
    assert "internal error" in reason and "INTERNALERROR> boom" in reason
    assert "secret" not in reason  # lines naming the hidden tests are not quoted
    assert json.loads(gs.read_text())["output"] == reason
    assert json.loads(cl.read_text())["status"] == "error"
    gs.unlink()
    assert "without writing its report" in reports.settle(0, "", gs)
    assert json.loads(gs.read_text())["score"] == 0
    assert "SIGTERM" in reports.describe_exit(143) and "SIGKILL" in reports.describe_exit(-9)


def _packages(pyproject: str) -> list[str]:
    """The package list of [tool.setuptools] (tomllib is Python 3.11+)."""
    [line] = re.findall(r"(?m)^packages\s*=\s*\[([^\]]*)\]", pyproject)
    return re.findall(r"[\"']([\w.]+)[\"']", line)


# -- GitHub Classroom --------------------------------------------------------------------------

def _step_script(name: str, workflow: Path = WORKFLOW) -> str:
    """The ``run: |`` block of the workflow step called ``name``."""
    lines = workflow.read_text().splitlines()
    start = lines.index(f"      - name: {name}")
    at = next(i for i in range(start, len(lines)) if lines[i].strip() == "run: |")
    indent = len(lines[at]) - len(lines[at].lstrip()) + 2
    block = []
    for line in lines[at + 1:]:
        if line.strip() and len(line) - len(line.lstrip()) < indent:
            break
        block.append(line[indent:])
    return "\n".join(block) + "\n"


def test_classroom_grades_from_a_grader_only_checkout_and_replaces_forged_results(tmp_path):
    text = WORKFLOW.read_text()
    assert text.count("persist-credentials: false") == 2  # no token left in a .git/config
    keep, install = text.index("python -m parakit.bundle ."), text.index("pip install -e ./kit")
    assert keep < install < text.index("python -m pytest grader")
    # The checkout as actions/checkout leaves it, then the "Keep only the grader" step.
    kit = _copy_kit(tmp_path / "work" / "kit")
    shutil.copytree(KIT / "reference", kit / "reference",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (kit / ".git" / "objects").mkdir(parents=True)
    (kit / "tests").mkdir()
    done = subprocess.run([sys.executable, "-m", "parakit.bundle", "."], cwd=kit,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert not {"reference", "tests", ".git"} & {p.name for p in kit.iterdir()}
    assert "reference" not in _packages((kit / "pyproject.toml").read_text())

    # The grade step, with graded code that forges the result and kills pytest.
    workspace = tmp_path / "work"
    shutil.copytree(KIT / "student", workspace / "submission" / "student",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (workspace / "submission" / "student" / "hello.py").write_text(FORGER)
    runner_temp, outputs = tmp_path / "runner-temp", tmp_path / "github-output"
    runner_temp.mkdir()
    (runner_temp / "result.json").write_text('{"stale": true}')
    pid_file, began = tmp_path / "killed-pid", time.time()
    (tmp_path / "tmp").mkdir()  # the killed grader cannot remove its session folder
    try:
        proc = subprocess.run(
            ["bash", "-e", "-c", _step_script("Grade")], cwd=workspace, capture_output=True,
            text=True, timeout=600,
            env={**os.environ, "RUNNER_TEMP": str(runner_temp), "GITHUB_WORKSPACE":
                 str(workspace), "GITHUB_OUTPUT": str(outputs), "FORGER_PID_FILE": str(pid_file),
                 "PYTEST_ADDOPTS": f"-k '{ONE_TEST}'", "TMPDIR": str(tmp_path / "tmp")})
    finally:
        _end_run(pid_file, began)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert pid_file.exists()
    [line] = [x for x in outputs.read_text().splitlines() if x.startswith("result=")]
    result = json.loads(base64.b64decode(line.removeprefix("result=")))
    assert result["status"] == "error" and result["max_score"] == 0
    assert "FORGED" not in json.dumps(result) and "stale" not in json.dumps(result)
    assert "killed by SIGKILL" in result["tests"][0]["message"]


def test_the_classroom_workflow_follows_the_reporters_contract():
    """autograding-grading-reporter: Classroom reads the score from the check run of the job
    named run-autograding-tests; for each id in ``runners`` the reporter reads the variable
    ID_RESULTS (in capitals), which must be a step's base64-encoded runner result."""
    data = yaml.safe_load(WORKFLOW.read_text())
    assert list(data["jobs"]) == ["run-autograding-tests"]
    steps = data["jobs"]["run-autograding-tests"]["steps"]
    [reporter] = [s for s in steps if "autograding-grading-reporter" in s.get("uses", "")]
    assert reporter is steps[-1]
    ids = {s["id"]: s for s in steps if "id" in s}
    for runner in reporter["with"]["runners"].split(","):
        value = reporter["env"][f"{runner.strip().upper()}_RESULTS"]
        step = re.fullmatch(r"\$\{\{ steps\.([\w-]+)\.outputs\.result \}\}", value)
        assert step and step.group(1) in ids, value
        assert 'echo "result=$(base64 -w0 "$result")" >> "$GITHUB_OUTPUT"' in \
            ids[step.group(1)]["run"]
    # one environment variable holds it: Linux caps one at 128 KiB, base64 adds a third
    assert reports.CLASSROOM_BYTES * 4 / 3 < 128 * 1024


def test_the_actions_workflow_summarises_the_score_and_keeps_the_pictures(tmp_path):
    """The plain workflow's steps as the runner runs them, on a submission whose products are
    wrong: the summary has the score table and the failure, the artifact folder the picture it
    names, results.json shows it embedded, and the job fails for less than full marks."""
    data = yaml.safe_load(ACTIONS.read_text())
    steps = {s.get("name", s.get("uses")): s for s in data["jobs"]["grade"]["steps"]}
    artifact = steps["Upload the reports and pictures"]
    assert artifact["uses"].startswith("actions/upload-artifact@") and \
        artifact["with"]["path"] == "${{ runner.temp }}/reports"
    assert artifact["if"] == "always()" and steps["Summary"]["if"] == "always()"
    workspace, runner_temp = tmp_path / "work", tmp_path / "runner-temp"
    runner_temp.mkdir()
    wrong = {e.name: e for e in CATALOGUE}["matmul_wrong_product"]
    wrong.build(workspace / "submission").rename(workspace / "submission" / "student")
    (workspace / "kit").symlink_to(KIT)
    summary = tmp_path / "summary.md"
    env = {**os.environ, "RUNNER_TEMP": str(runner_temp), "GITHUB_WORKSPACE": str(workspace),
           "GITHUB_STEP_SUMMARY": str(summary), "PYTEST_ADDOPTS": "-k 'matmul and pool and square'"}

    def step(name: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", "-e", "-c", _step_script(name, ACTIONS)], cwd=workspace,
                              capture_output=True, text=True, timeout=600, env=env)

    graded = step("Grade")
    assert graded.returncode == 0, (graded.stdout + graded.stderr)[-3000:]
    assert step("Summary").returncode == 0
    text = summary.read_text()
    assert "## Score: 0 / " in text and "| matmul | 0 / " in text, text
    assert "differ from the expected product" in text
    [picture] = (runner_temp / "reports" / "pictures").glob("*.png")
    assert f"{picture.name} (in the artifact grading-reports, pictures/)" in text
    assert str(runner_temp) not in text  # no path of the grading machine
    [test] = json.loads((runner_temp / "reports" / "results.json").read_text())["tests"]
    assert test["output_format"] == "html" and f"{picture.name} (below)" in test["output"]
    embedded = re.search(r'src="data:image/png;base64,([^"]+)"', test["output"]).group(1)
    assert base64.b64decode(embedded) == picture.read_bytes()
    assert step("Full marks").returncode == 1


def test_a_link_planted_where_a_picture_was_is_never_shown(tmp_path):
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"\x89PNG hidden test")
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    (pictures / "balance-mpi-balanced.png").symlink_to(secret)
    (pictures / "real.png").write_bytes(b"\x89PNG a picture")
    message = (f"unbalanced\nEach worker's work over time: {pictures}/balance-mpi-balanced.png"
               f"\npicture: {pictures}/real.png")
    result = reports.TestResult("grader/test_x.py::test_x", "mandelbrot", 0, 1, False, message)
    [test] = reports.gradescope([result], 1.0, pictures=pictures)["tests"]
    assert "hidden test" not in str(base64.b64decode(re.findall(
        r"base64,([^\"]+)", test["output"])[0]))
    assert "balance-mpi-balanced.png: not shown here" in test["output"]
    assert len(re.findall("data:image/png", test["output"])) == 1
    # a picture outside the grader's folder is never read either
    assert reports.gradescope([result], 1.0, pictures=tmp_path)["tests"][0].get(
        "output_format") is None


# -- the Gradescope zip --------------------------------------------------------------------------

def test_the_gradescope_zip_has_no_solutions(tmp_path):
    out = tmp_path / "autograder.zip"
    made = subprocess.run(["bash", str(KIT / "ci" / "gradescope" / "make_zip.sh"), str(out)],
                          capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stdout + made.stderr
    with zipfile.ZipFile(out) as z:
        names = set(z.namelist())
        pyproject = z.read("pyproject.toml").decode()
    tops = {n.split("/")[0] for n in names}
    assert {"setup.sh", "run_autograder", "grader", "problems", "hidden"} <= tops
    assert not tops & {"reference", "tests", "benchmarks", ".git"}, tops
    assert "hidden/test_matmul.py" in names
    packages = _packages(pyproject)
    assert "reference" not in packages  # installs without it: each one named is in the zip
    assert all(f"{p.replace('.', '/')}/__init__.py" in names for p in packages), packages


def test_grader_only_refuses_what_is_not_a_kit(tmp_path):
    with pytest.raises(RuntimeError, match="not a copy of the kit"):
        bundle.grader_only(tmp_path)


# -- --run-as: graded code as an unprivileged user (root only) ---------------------------------

RUN_AS_USER = os.environ.get("PARAKIT_TEST_RUN_AS", "parakit-student")


def _run_as_user() -> str:
    """The test user (created as ci/gradescope/setup.sh does, if missing); skip where graded
    code cannot run as another user here."""
    if os.geteuid() != 0:
        pytest.skip("--run-as needs the grader to run as root (these tests run as uid "
                    f"{os.geteuid()})")
    try:  # first as "nobody": no user is created on a machine where the test must skip
        probe = subprocess.run([sys.executable, "-c", "import numpy, mpi4py, psutil"],
                               user=65534, group=65534, extra_groups=[], cwd="/",
                               capture_output=True, text=True, timeout=120)
        why = (probe.stderr.strip().splitlines() or [""])[-1] if probe.returncode else ""
    except OSError as exc:
        why = str(exc)
    if why:
        pytest.skip(f"another user cannot run {sys.executable} with its libraries (a folder "
                    "above it is not readable and searchable by others, e.g. /root is 0700): "
                    f"{why}")
    try:
        pwd.getpwnam(RUN_AS_USER)
    except KeyError:
        if shutil.which("useradd") is None:
            pytest.skip(f"no user {RUN_AS_USER} and no useradd to create it")
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                        "/usr/sbin/nologin", "--user-group", RUN_AS_USER], check=True)
    return RUN_AS_USER


@pytest.fixture
def shared_tmp():
    """A temporary folder other users can enter (pytest's tmp_path is 0700 under a 0700
    folder): the kit and the submission there must be readable by the --run-as user."""
    path = Path(tempfile.mkdtemp(prefix="parakit-run-as-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_under_run_as_graded_code_reads_no_hidden_test_and_writes_no_result(shared_tmp):
    user = _run_as_user()
    root = make_autograder(shared_tmp, PROBER)
    hidden = root / "source" / "hidden" / "test_matmul.py"
    results = root / "results" / "results.json"
    data, output = run_autograder(root, "-k", ONE_TEST, run_as=user, env={
        "PROBE_HIDDEN": str(hidden), "PROBE_RESULTS": str(results)})
    [test] = data["tests"]  # pytest ended normally and wrote the report
    said = test["output"]
    assert f"uid {pwd.getpwnam(user).pw_uid}" in said, said
    assert "read hidden: PermissionError" in said, said
    assert "write results: PermissionError" in said, said
    assert "kill grader: PermissionError" in said, said
    assert hidden.read_text()[:60] not in json.dumps(data)
    assert data["score"] == 0
    assert not [p for p in psutil.process_iter(["username"])
                if p.info["username"] == user], "a process of the graded user outlived grading"


def test_under_run_as_the_reference_gets_full_marks_and_hidden_tests_must_be_locked(
        shared_tmp):
    user = _run_as_user()
    kit = _copy_kit(shared_tmp / "kit")
    (kit / "hidden").chmod(0o755)
    shutil.copytree(KIT / "reference", shared_tmp / "solutions",
                    ignore=shutil.ignore_patterns("__pycache__"))
    cmd = [sys.executable, "-m", "pytest", "grader", "-p", "no:cacheprovider", "--target",
           str(shared_tmp / "solutions"), "-k", "hello or (matmul and (pool or ipp))",
           "--run-as", user]  # MPI ranks, pool workers and ipyparallel engines as the user
    env = {**os.environ, "PYTEST_ADDOPTS": ""}
    run = subprocess.run(cmd, cwd=kit, capture_output=True, text=True, timeout=600, env=env)
    assert run.returncode == 4, run.stdout[-2000:]  # hidden/ is readable by everybody here
    assert "the user can read the hidden tests" in run.stdout + run.stderr
    (kit / "hidden").chmod(0o700)  # as run_autograder locks them
    run = subprocess.run(cmd, cwd=kit, capture_output=True, text=True, timeout=600, env=env)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    total = [line for line in run.stdout.splitlines() if line.startswith("total")]
    assert total and total[0].split()[1] == total[0].split()[3], total  # full marks
    assert not [p.pid for p in psutil.process_iter(["username"])
                if p.info["username"] == user], "the grader left a process of the graded user"
