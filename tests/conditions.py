"""Machines as courses grade on, made on this one (issue: the same grade on any machine).

- ``idle``: nothing else runs;
- ``busy``: two busy-loop processes beside the grading (a shared CI runner);
- ``one-cpu``: the grading pinned to one CPU (``taskset``: an affinity mask);
- ``half-cpu``: half a CPU by a CFS quota and 768 MiB of memory, set through cgroups (v1 or v2),
  as Gradescope's default container; needs root and a writable cgroup file system;
- ``jobs-2``: two submissions graded side by side by ``parakit grade --jobs 2``.

Every condition grades with the default ``--workers 4``, so four workers share the two cores
of these machines in all of them. ``grade`` runs one grading (two for ``jobs-2``) under a
condition and returns, per grading, each test's verdict from its JUnit report.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

KIT = Path(__file__).resolve().parent.parent
CONDITIONS = ("idle", "busy", "one-cpu", "half-cpu", "jobs-2")
CGROUP = Path("/sys/fs/cgroup")
QUOTA_US, PERIOD_US = 50_000, 100_000  # half a CPU
MEMORY = 768 << 20


@dataclass
class Graded:
    """One grading: each test's verdict (True: passed), its time and peak memory (cgroups)."""

    verdicts: dict[str, bool] = field(default_factory=dict)
    seconds: float = 0.0
    peak_bytes: int | None = None
    output: str = ""

    @property
    def failed(self) -> list[str]:
        return sorted(name for name, ok in self.verdicts.items() if not ok)


def unavailable(condition: str) -> str:
    """Why this machine cannot make ``condition`` ('' if it can)."""
    if condition == "one-cpu" and not shutil.which("taskset"):
        return "taskset is not installed (util-linux)"
    if condition == "half-cpu":
        if os.geteuid() != 0:
            return "cgroups need root"
        if _cgroup_version() is None:
            return "no writable cgroup file system (v1 cpu and memory, or v2)"
    return ""


def _cgroup_version() -> int | None:
    if (CGROUP / "cpu" / "cpu.cfs_quota_us").exists() and (CGROUP / "memory").is_dir():
        return 1 if os.access(CGROUP / "cpu", os.W_OK) else None
    if (CGROUP / "cgroup.controllers").exists():
        return 2 if os.access(CGROUP, os.W_OK) else None
    return None


class HalfCpu:
    """A cgroup of half a CPU and 768 MiB: ``join`` (in the child, before exec) puts the
    calling process in it; ``sample`` notes the memory its processes hold (anonymous and
    shared: the page cache, also counted against the limit, is given back under pressure),
    ``peak`` the most sampled; ``remove`` ends what is left in it (processes of the run it
    held, orphaned if the kernel's OOM killer ended their parent) and removes it."""

    def __init__(self) -> None:
        self.name = f"parakit-{uuid.uuid4().hex[:8]}"
        self.version = _cgroup_version()
        if self.version == 1:
            self.dirs = [CGROUP / "cpu" / self.name, CGROUP / "memory" / self.name]
            for d in self.dirs:
                d.mkdir()
            (self.dirs[0] / "cpu.cfs_period_us").write_text(str(PERIOD_US))
            (self.dirs[0] / "cpu.cfs_quota_us").write_text(str(QUOTA_US))
            (self.dirs[1] / "memory.limit_in_bytes").write_text(str(MEMORY))
        else:
            (CGROUP / "cgroup.subtree_control").write_text("+cpu +memory")
            self.dirs = [CGROUP / self.name]
            self.dirs[0].mkdir()
            (self.dirs[0] / "cpu.max").write_text(f"{QUOTA_US} {PERIOD_US}")
            (self.dirs[0] / "memory.max").write_text(str(MEMORY))
        self.most = 0

    def join(self) -> None:
        for d in self.dirs:
            (d / "cgroup.procs").write_text(str(os.getpid()))

    def sample(self) -> None:
        keys = ("total_rss", "total_shmem") if self.version == 1 else ("anon", "shmem")
        try:
            stat = dict(line.split() for line in (self.dirs[-1] / "memory.stat")
                        .read_text().splitlines())
        except (OSError, ValueError):
            return
        self.most = max(self.most, sum(int(stat.get(k, 0)) for k in keys))

    def peak(self) -> int | None:
        return self.most or None

    def remove(self) -> None:
        for pid in (self.dirs[0] / "cgroup.procs").read_text().split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        for d in self.dirs:
            for _ in range(50):  # the last processes may take a moment to leave
                try:
                    d.rmdir()
                    break
                except OSError:
                    time.sleep(0.1)


@contextmanager
def _busy(n: int) -> Iterator[None]:
    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        yield
    finally:
        for p in loops:
            p.kill()
            p.wait()


def _junit(path: Path) -> dict[str, bool]:
    """Each test case's verdict in a JUnit report (skipped ones left out)."""
    verdicts = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        if case.find("skipped") is not None:
            continue
        bad = case.find("failure") is not None or case.find("error") is not None
        verdicts[case.get("name", "?")] = not bad
    return verdicts


def run_under(condition: str, cmd: list[str],
              timeout: float = 1800) -> tuple[str, float, int | None]:
    """Run ``cmd`` (from the kit's root) under ``condition`` (not ``jobs-2``): its output,
    its wall seconds and, in a cgroup, the most memory it used."""
    if condition == "one-cpu":
        cmd = ["taskset", "-c", "0", *cmd]
    cgroup = HalfCpu() if condition == "half-cpu" else None
    start = time.monotonic()
    try:
        with _busy(2 if condition == "busy" else 0):
            proc = subprocess.Popen(cmd, cwd=KIT, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True,
                                    preexec_fn=cgroup.join if cgroup else None)
            output = _communicate(proc, timeout, cgroup)
        peak = cgroup.peak() if cgroup else None
    finally:
        if cgroup:
            cgroup.remove()
    return output, time.monotonic() - start, peak


def _communicate(proc: subprocess.Popen, timeout: float, cgroup: HalfCpu | None) -> str:
    """The process's output once it ends; meanwhile the cgroup's memory, 5 times a second."""
    reader = threading.Thread(target=lambda: chunks.append(proc.stdout.read()), daemon=True)
    chunks: list[str] = []
    reader.start()
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if cgroup:
            cgroup.sample()
        time.sleep(0.2)
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    reader.join()
    return "".join(chunks)


def grade(condition: str, targets: list[Path], out: Path, pytest_args: list[str]) -> list[Graded]:
    """Grade ``targets`` under ``condition``: one pytest run each, one after the other; for
    ``jobs-2`` all of them at once, two at a time, by ``parakit grade``."""
    out.mkdir(parents=True, exist_ok=True)
    if condition == "jobs-2":
        cmd = [sys.executable, "-m", "parakit.cli", "grade", *map(str, targets), "--jobs", "2",
               "--out", str(out)] + [f"--pytest-arg={a}" for a in pytest_args]
        output, seconds, _ = run_under("idle", cmd)
        return [Graded(_junit(out / t.name / "junit.xml") if (out / t.name / "junit.xml")
                       .exists() else {}, seconds, None, output) for t in targets]
    found = []
    for i, target in enumerate(targets):
        report = out / f"junit-{i}.xml"
        cmd = [sys.executable, "-m", "pytest", "grader", "--target", str(target), "-q",
               "-p", "no:cacheprovider", f"--junitxml={report}", *pytest_args]
        output, seconds, peak = run_under(condition, cmd)
        verdicts = _junit(report) if report.exists() else {}
        found.append(Graded(verdicts, seconds, peak, output))
    return found
