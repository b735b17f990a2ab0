"""Benchmark (not a test): how long a student, an instructor and CI wait for the kit.

    python benchmarks/feedback_times.py [--runs 3] [--self-tests] [--durations 10]

Times, from the kit root with its venv active, ``pytest grader --target reference`` (the
instructor's check) and ``pytest grader`` on the stubs (a student's first run) ``--runs``
times each, and with ``--self-tests`` one run of ``pytest tests`` (the kit's own tests).
Prints the machine, each run's wall seconds and exit code, the median per command, and the
slowest tests of the last run of each (pytest's ``--durations``). With ``--json
docs/figures/feedback.json`` it stores them, and ``benchmarks/publish.py`` writes the
feedback tables of the docs from that file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

KIT = Path(__file__).resolve().parent.parent

COMMANDS = {  # name: (pytest's arguments, the exit code expected, who waits for it)
    "reference grading": (["grader", "--target", "reference"], 0, "an instructor's check"),
    "stub grading": (["grader"], 1, "a student's first run"),  # every stub fails: exit 1
    "kit's own tests": (["tests", "-n", "2"], 0, "CI and the kit's developers"),  # as README
}


def run(args: list[str], durations: int) -> tuple[float, int, list[str]]:
    """Wall seconds, exit code, and pytest's slowest-tests lines of one run."""
    cmd = [sys.executable, "-m", "pytest", *args, "-q", "-p", "no:cacheprovider",
           f"--durations={durations}"]
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=KIT, capture_output=True, text=True,
                          env={**os.environ, "PYTEST_ADDOPTS": ""})
    seconds = time.perf_counter() - start
    slow = re.findall(r"^\d+\.\d+s (?:call|setup|teardown) .*$", done.stdout, re.MULTILINE)
    return seconds, done.returncode, slow


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of each grading command")
    parser.add_argument("--self-tests", action="store_true", help="also time `pytest tests`")
    parser.add_argument("--durations", type=int, default=10, help="slowest tests to show")
    parser.add_argument("--json", type=Path, help="store the times here (docs/figures/"
                        "feedback.json is what benchmarks/publish.py publishes)")
    args = parser.parse_args()
    stored = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "date": time.strftime("%Y-%m-%d")}, "commands": []}
    print(f"machine: {os.cpu_count()} cpus, Python {platform.python_version()}, "
          f"{platform.platform()}")
    wrong = False
    for name, (pytest_args, expected_code, who) in COMMANDS.items():
        runs = 1 if name == "kit's own tests" else args.runs
        if name == "kit's own tests" and not args.self_tests:
            continue
        seconds, slow = [], []
        for i in range(runs):
            wall, code, slow = run(pytest_args, args.durations)
            seconds.append(wall)
            mark = "" if code == expected_code else f"  (expected exit {expected_code})"
            wrong = wrong or bool(mark)
            print(f"{name}: run {i + 1}: {wall:.1f} s, exit {code}{mark}", flush=True)
        print(f"{name}: median {statistics.median(seconds):.1f} s over {runs} run(s); "
              "slowest tests of the last:")
        print("\n".join(f"    {line}" for line in slow), flush=True)
        stored["commands"].append({"command": " ".join(["pytest", *pytest_args]), "who": who,
                                   "seconds": [round(x, 1) for x in seconds]})
    if args.json:
        args.json.write_text(json.dumps(stored, indent=1) + "\n")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
