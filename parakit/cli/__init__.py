"""``parakit``: the instructor's commands.

- ``parakit release DEST``: the student distribution (no reference solutions, no hidden or kit
  tests), installable with ``pip install -e DEST``.
- ``parakit validate``: checks the grader itself: the reference gets full marks, the stubs get
  zero, every graded test fails for at least one broken submission of ``tests/catalogue.py``.
- ``parakit bench [PROBLEM...]``: times the serial baseline and every backend over worker
  counts and sizes; tables, JSON and plots (``parakit.bench``).
- ``parakit grade SUBMISSION...``: grades a class, a few at once on this machine or as one job
  array on a Slurm cluster (``--slurm``), each submission in its own ``pytest`` process with a
  time limit, and writes a gradebook (CSV) plus each one's reports.

Each grading is a separate ``pytest grader --target ...`` run in a new session; a run that
crashes or overruns its limit has its whole process tree killed and becomes a visible zero with
its output kept, so one broken or hanging submission never stops the batch.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from parakit import bench
from parakit.cli.grade import add_grade_options, cmd_grade, gradings_contained
from parakit.cli.release import WORKFLOWS, release
from parakit.cli.validate import validate


def cmd_release(args: argparse.Namespace) -> int:
    try:
        dest = release(Path(args.dest), args.force, args.kit_repo, args.kit_ref, args.workflow)
    except (FileExistsError, RuntimeError) as exc:
        print(f"parakit release: {exc}", file=sys.stderr)
        return 2
    files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    print(f"released {len(files)} files to {dest}")
    if not args.kit_repo:
        print("parakit release: warning: the GitHub workflow still names the "
              "placeholder INSTRUCTOR/parakit-instructor as the grader's repository; pass "
              "--kit-repo OWNER/NAME (and --kit-ref TAG) before students use it",
              file=sys.stderr)
    return 0


@gradings_contained
def cmd_validate(args: argparse.Namespace) -> int:
    outdir = Path(args.out)
    problems = validate(outdir, args)
    if problems:
        print("\nthe grader has problems:", *(f"  - {p}" for p in problems), sep="\n")
        return 1
    print(f"\nthe grader is sound: reference full marks, stubs zero, every graded test caught "
          f"by the catalogue (reports in {outdir})")
    return 0


# -- command line -----------------------------------------------------------------------------

def _grading_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-k", metavar="EXPR", help="grade only the tests matching EXPR (pytest -k)")
    p.add_argument("--workers", type=int, help="largest process count (grader --workers)")
    p.add_argument("--call-timeout", type=float, help="seconds per graded call")
    p.add_argument("--jobs", "-j", type=int, default=1,
                   help="submissions graded at once (at most the machine's cores; default 1)")
    p.add_argument("--timeout", type=float, default=1800,
                   help="seconds one whole grading may take before it is stopped (default 1800)")
    p.add_argument("--pytest-arg", action="append", metavar="ARG",
                   help="extra argument for pytest, e.g. --pytest-arg=--hidden-tests=none")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="parakit", description=__doc__.split("\n\n")[0])
    sub = top.add_subparsers(dest="command", required=True)
    p = sub.add_parser("release", help="build the student distribution in DEST")
    p.add_argument("dest")
    p.add_argument("--force", action="store_true", help="replace DEST if it is not empty")
    p.add_argument("--kit-repo", default="",
                   help="owner/name of the instructor's kit repository, written into the "
                        "release's GitHub workflow")
    p.add_argument("--kit-ref", default="",
                   help="tag or commit of the kit the workflow grades with")
    p.add_argument("--workflow", choices=sorted(WORKFLOWS), default="actions",
                   help="actions (default): a plain GitHub Actions job, score and failures in "
                        "its summary, reports and pictures as an artifact; classroom: for a "
                        "GitHub Classroom assignment (its reporter is deprecated upstream)")
    p.set_defaults(func=cmd_release)
    p = sub.add_parser("validate", help="check the grader: reference, stubs, broken submissions")
    _grading_options(p)
    p.add_argument("--out", default="grader-results/validate", help="where reports go")
    p.add_argument("--quick", action="store_true", help="leave out the hanging submissions")
    p.add_argument("--only", nargs="+", metavar="NAME", help="only these catalogue entries")
    p.set_defaults(func=cmd_validate)
    p = sub.add_parser("grade", help="grade a class's submissions, write a gradebook")
    p.add_argument("submissions", nargs="*", type=Path,
                   help="folders (a copy of student/, or a repository holding student/), zip "
                        "archives, git repositories (see --deadline), a Gradescope "
                        "submissions export, or folders of these")
    _grading_options(p)
    add_grade_options(p)
    p.set_defaults(func=gradings_contained(cmd_grade))
    p = sub.add_parser("bench", help="time serial and parallel versions: speedup, scaling, "
                       "plots", description=bench.__doc__.split("\n\n")[0])
    bench.add_arguments(p)
    p.set_defaults(func=bench.main)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
