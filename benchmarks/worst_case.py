"""Benchmark (not a test): the worst case of a grading, a submission in which everything hangs.

    python benchmarks/worst_case.py [--conditions idle half-cpu] [--json OUT] [GRADER OPTIONS ...]

Copies the reference, replaces every public function of every graded module (and the hello
program) by ``while True: pass``, grades it with the grader's defaults (``--call-timeout 30``,
``--hang-budget 150``) under a condition of ``tests/conditions.py``, and prints the wall time,
the score and whether any process was left behind. Gradescope's default limit is 10 minutes.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import conditions  # noqa: E402
from tests.helpers import leftover_processes  # noqa: E402

MODULES = ("hello", "matmul", "mandelbrot", "wordcount")


def hanging_copy(parent: Path) -> Path:
    """The reference with every public function of the graded modules spinning forever."""
    target = parent / "hangs_everywhere"
    shutil.copytree(conditions.KIT / "reference", target,
                    ignore=shutil.ignore_patterns("__pycache__"))
    for module in MODULES:
        path = target / f"{module}.py"
        text = path.read_text()
        names = [n.name for n in ast.parse(text).body
                 if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")]
        spin = "".join(f"\n\ndef {name}(*args, **kwargs):\n    while True:\n        pass\n"
                       for name in names)
        if module == "hello":  # a program: it spins when run
            spin += "\n\nwhile True:\n    pass\n"
        path.write_text(text.split('\nif __name__ == "__main__":')[0] + spin)
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conditions", "--condition", nargs="+", default=["idle"],
                        choices=conditions.CONDITIONS[:-1])
    parser.add_argument("--json", type=Path, help="store the figures here (docs/figures/"
                        "worst-case.json is what benchmarks/publish.py publishes)")
    args, grader_options = parser.parse_known_args()
    stored = {"date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(),
              "options": grader_options or ["(the defaults)"], "conditions": {}}
    left_any = False
    for condition in args.conditions:
        why = conditions.unavailable(condition)
        if why:
            print(f"{condition}: skipped ({why})")
            continue
        started = time.time()
        with tempfile.TemporaryDirectory(prefix="worst-case-") as tmp:
            target = hanging_copy(Path(tmp))
            graded = conditions.grade(condition, [target], Path(tmp) / "out",
                                      grader_options)[0]
        left = leftover_processes(since=started)
        left_any = left_any or bool(left)
        score = [line for line in graded.output.splitlines() if line.startswith("total")]
        peak = f", peak memory {graded.peak_bytes >> 20} MiB" if graded.peak_bytes else ""
        print(f"{condition}: {graded.seconds:.0f} s{peak}; {score[-1] if score else '?'}; "
              f"{len(graded.failed)} of {len(graded.verdicts)} tests failed; "
              f"processes left: {len(left)}", flush=True)
        stored["conditions"][condition] = {
            "seconds": round(graded.seconds, 1),
            "peak_mib": graded.peak_bytes >> 20 if graded.peak_bytes else None,
            "score": " ".join(score[-1].split()[1:]) if score else "?",
            "failed": len(graded.failed), "tests": len(graded.verdicts), "left": len(left)}
    if args.json:
        args.json.write_text(json.dumps(stored, indent=1) + "\n")
    return 1 if left_any else 0


if __name__ == "__main__":
    sys.exit(main())
