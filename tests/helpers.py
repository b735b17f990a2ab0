"""Shared helpers for the kit's own tests: run the grader in a subprocess, build submissions."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import psutil

from parakit.controller.processes import proctree, shm

KIT = Path(__file__).resolve().parent.parent
LEFTOVER_NAMES = ("mpiexec", "hydra_pmi_proxy", "ipengine", "ipcontroller")


@dataclass
class GraderRun:
    returncode: int
    output: str
    results: dict[str, tuple[str, str]]  # test name -> (outcome, failure message)
    seconds: float
    leftovers: list[str]  # processes of this run still alive after it ended, files it left

    def failed(self) -> dict[str, str]:
        return {k: msg for k, (outcome, msg) in self.results.items() if outcome == "failed"}

    def passed(self) -> list[str]:
        return [k for k, (outcome, _) in self.results.items() if outcome == "passed"]


def run_grader(tmp_path: Path, *args: str, timeout: float = 900) -> GraderRun:
    """``pytest grader ARGS`` in a subprocess, with its JUnit XML parsed."""
    xml = tmp_path / f"junit-{len(list(tmp_path.glob('junit-*')))}.xml"
    cmd = [sys.executable, "-m", "pytest", "grader", "-p", "no:cacheprovider",
           f"--junitxml={xml}", *args]
    start = time.monotonic()
    began = time.time()
    # While the grader runs, this process is a subreaper: a process that escapes the grader's
    # tree, its tags and the grader itself is re-parented here, where it is found.
    was_subreaper = proctree.is_subreaper()
    proctree.become_subreaper()
    before = {p.pid for p in psutil.Process().children()}
    with subprocess.Popen(cmd, cwd=KIT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, env={**os.environ, "PYTEST_ADDOPTS": ""}) as proc:
        output, _ = proc.communicate(timeout=timeout)
    seconds = time.monotonic() - start
    # None may be left: every process the grader starts carries its pid as owner tag, and
    # whatever escaped the grader came to this process (orphans: new children of ours).
    escaped = set(proctree.tagged(proctree.OWNER_VAR, str(proc.pid)))
    for child in psutil.Process().children():
        if child.pid not in before and child.pid != proc.pid:
            escaped |= {child, *child.children(recursive=True)}
    escaped = set(proctree.alive(escaped))
    left = [proctree.describe(p) for p in escaped]
    left += [f"{path} (shared memory)" for path in shared_memory_left(began)]
    proctree.terminate(escaped)  # so that one failing test leaves nothing for the next
    proctree.reap()
    shm.sweep(began)
    if not was_subreaper:
        proctree.become_subreaper(False)
    return GraderRun(proc.returncode, output, junit_results(xml), seconds, left)


def junit_results(xml: Path) -> dict[str, tuple[str, str]]:
    """Each test case of a JUnit XML report: (passed/failed/skipped, message); {} if none."""
    results = {}
    if xml.exists():
        for case in ET.parse(xml).getroot().iter("testcase"):
            name = case.get("name")
            failure = case.find("failure")
            error = case.find("error")
            skipped = case.find("skipped")
            if failure is not None or error is not None:
                node = failure if failure is not None else error
                results[name] = ("failed", node.get("message", "") + "\n" + (node.text or ""))
            elif skipped is not None:
                results[name] = ("skipped", skipped.get("message", ""))
            else:
                results[name] = ("passed", "")
    return results


def shared_memory_left(since: float, patience: float = 1.0) -> list[Path]:
    """Files left in /dev/shm since ``since``. Another grader on the machine (``pytest -n``)
    may be between killing its ranks and removing their files (it sweeps them when its
    grading ends): what is still there ``patience`` seconds later was left for good."""
    left = shm.leaked(since)
    deadline = time.monotonic() + patience
    while left and time.monotonic() < deadline:
        time.sleep(1.0)
        left = [path for path in shm.leaked(since) if path in left]
    return left


Edit = tuple[str, str]  # (old text, new text) of a module of reference/


def make_submission(parent: Path, edits: dict[str, list[Edit] | Edit | None],
                    name: str = "submission") -> Path:
    """``parent/name``: a copy of ``reference/`` with ``edits``, module -> a list of
    (old, new) text replacements (or one), each of which must apply exactly once, or None to
    delete the module. The one builder of broken and unusual submissions (the catalogue's too).
    """
    dest = Path(parent) / name
    shutil.copytree(KIT / "reference", dest, ignore=shutil.ignore_patterns("__pycache__"))
    for module, change in edits.items():
        path = dest / f"{module}.py"
        if change is None:
            path.unlink()
            continue
        text = path.read_text()
        for old, new in [change] if isinstance(change, tuple) else change:
            if text.count(old) != 1:
                raise ValueError(f"{name}: edit of {module}.py does not apply once: {old!r}")
            text = text.replace(old, new, 1)
        path.write_text(text)
    return dest


def leftover_processes(since: float = 0.0) -> list[str]:
    """MPI or ipyparallel processes, or simulated hosts, still running on this machine,
    whoever started them, and shared-memory files and folders left in /dev/shm and launcher
    files in /tmp since ``since`` (for CI's final check; tests use ``GraderRun.leftovers``,
    which sees only their run)."""
    found = [f"{path} (shared memory)" for path in shm.leaked(since)]
    found += [f"{path} (a launcher's file)" for path in shm.launcher_files(since, {os.getuid()})]
    for proc in psutil.process_iter(["pid", "name", "cmdline"]):
        try:
            cmd = " ".join(proc.info["cmdline"] or [])
        except psutil.Error:
            continue
        if any(n in (proc.info["name"] or "") for n in LEFTOVER_NAMES) or \
                "parakit.worker.grade" in cmd or "ipyparallel.engine" in cmd or \
                "ipyparallel.controller" in cmd or "parakit-simulated-host" in cmd:
            found.append(f"{proc.info['pid']} {cmd[:120]}")
    return found
