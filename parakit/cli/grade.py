"""``parakit grade``: a class graded by an engine of ``parakit.classroom`` (this machine, or a
Slurm cluster), and the options every grading command shares."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from parakit.classroom import exports
from parakit.classroom.engines import Engine, Local
from parakit.classroom.gradebook import write_gradebook
from parakit.classroom.slurm import Slurm, SlurmError, SlurmOptions
from parakit.classroom.submission import Graded
from parakit.controller.processes import proctree

MANIFEST = "class.json"  # in --out: what was graded, how (for --resume)


def cmd_grade(args: argparse.Namespace) -> int:
    """Grade a class (or resume one) and write its gradebook."""
    if args.resume:
        try:
            manifest = json.loads((Path(args.resume) / MANIFEST).read_text())
        except (OSError, ValueError) as exc:
            return _refuse(f"--resume {args.resume}: no class graded there ({exc})")
        out = Path(args.resume)
        everyone = [(n, Path(p)) for n, p in manifest["submissions"]]
        todo = [(n, p) for n, p in everyone if Graded.load(out / n) is None]
        print(f"resuming {out}: {len(everyone) - len(todo)} of {len(everyone)} graded, "
              f"{len(todo)} to go", file=sys.stderr)
    else:
        if not args.submissions:
            return _refuse("give the submissions to grade (folders, zip archives, git "
                           "repositories, a Gradescope export), or --resume OUT")
        out = Path(args.out)
        try:
            deadline = exports.parse_deadline(args.deadline) if args.deadline else None
        except ValueError as exc:
            return _refuse(str(exc))
        found = exports.gather(args.submissions, out, deadline)
        print(f"parakit grade: {exports.describe(found)}", file=sys.stderr)
        for sub in found:
            if sub.path is None:  # its own row, with the reason; never graded
                print(f"  {sub.name}: {sub.error}", file=sys.stderr)
                Graded(sub.name, errors=sub.error, reportdir=out / sub.name).save()
        everyone = [(s.name, s.path or Path(os.devnull)) for s in found]
        todo = [(s.name, s.path) for s in found if s.path is not None]
        manifest = {"submissions": [[n, str(Path(p).resolve())] for n, p in everyone],
                    "pytest_args": pytest_args(args), "timeout": args.timeout,
                    "engine": _engine_settings(args)}
        out.mkdir(parents=True, exist_ok=True)
        (out / MANIFEST).write_text(json.dumps(manifest, indent=1))
    engine = _engine(manifest["engine"])
    try:
        fresh = {g.name: g for g in engine.grade(todo, out, manifest["pytest_args"],
                                                 manifest["timeout"])} if todo else {}
    except SlurmError as exc:
        return _refuse(str(exc))
    except KeyboardInterrupt:
        print(f"parakit grade: interrupted; --resume {out} grades what did not finish",
              file=sys.stderr)
        return 130
    graded = [fresh.get(n) or Graded.load(out / n) or Graded(n, errors="not graded")
              for n, _ in everyone]
    book = write_gradebook(out / "gradebook.csv", graded)
    print(book.read_text(), end="")
    print(f"gradebook: {book}", file=sys.stderr)
    return 0


def _refuse(message: str) -> int:
    print(f"parakit grade: {message}", file=sys.stderr)
    return 2


def _engine_settings(args: argparse.Namespace) -> dict:
    if not args.slurm:
        return {"kind": "local", "jobs": jobs_count(args.jobs), "sandboxed": not args.no_sandbox}
    sbatch = {}
    for item in args.sbatch_arg or []:
        key, _, value = item.lstrip("-").partition("=")
        sbatch[key] = value or True
    options = SlurmOptions(partition=args.partition or "", account=args.account or "",
                           time_min=args.time, max_running=args.max_running or 0,
                           cpus_per_task=args.cpus_per_task, exclusive=args.exclusive,
                           sbatch=sbatch)
    return {"kind": "slurm", "options": asdict(options), "shared": args.slurm_shared}


def _engine(settings: dict) -> Engine:
    if settings["kind"] == "slurm":
        return Slurm(SlurmOptions(**settings["options"]), shared=settings["shared"])
    return Local(settings["jobs"], sandboxed=settings["sandboxed"])


def add_grade_options(p: argparse.ArgumentParser) -> None:
    """``parakit grade``'s own options (the grading options are shared with validate)."""
    p.add_argument("--out", default="grader-results", help="gradebook and reports (default: "
                                                           "grader-results)")
    p.add_argument("--no-sandbox", action="store_true",
                   help="grade without a sandbox per submission (bubblewrap; by default one "
                        "wherever the machine allows it: docs/robustness.md)")
    p.add_argument("--deadline", metavar="WHEN",
                   help="grade each git repository at its last commit before WHEN (ISO 8601, "
                        "e.g. 2026-12-01T23:59+01:00), not its working tree")
    p.add_argument("--resume", metavar="OUT",
                   help="grade again only what a class graded into OUT did not finish "
                        "(its settings as they were)")
    s = p.add_argument_group("a class on Slurm (docs/cluster.md)")
    s.add_argument("--slurm", action="store_true",
                   help="one job array for the class, one submission per task")
    s.add_argument("--partition", help="the partition to run the tasks in")
    s.add_argument("--account", help="the account to charge")
    s.add_argument("--time", type=int, default=30, metavar="MINUTES",
                   help="each task's time limit (default 30); a grading stops itself a "
                        "minute before")
    s.add_argument("--max-running", type=int, metavar="K",
                   help="tasks running at once (default: as many as Slurm allows)")
    s.add_argument("--cpus-per-task", type=int, default=2,
                   help="CPUs per task (default 2: the verdicts are measured stable there)")
    s.add_argument("--exclusive", action="store_true",
                   help="a node of its own for each task (nothing else beside a grading)")
    s.add_argument("--sbatch-arg", action="append", metavar="NAME=VALUE",
                   help="any other sbatch option, e.g. --sbatch-arg=qos=short "
                        "--sbatch-arg=mem=4G")
    s.add_argument("--slurm-shared", action="store_true",
                   help="the folders are on a file system the nodes share (when the check "
                        "by file system type cannot tell)")


def jobs_count(requested: int) -> int:
    cores = os.cpu_count() or 1
    if requested > cores:
        print(f"--jobs {requested}: this machine has {cores} cores; using {cores}",
              file=sys.stderr)
    return max(1, min(requested, cores))


def pytest_args(args: argparse.Namespace, keyword: str | None = None) -> list[str]:
    out = []
    expr = " and ".join(f"({k})" for k in (args.k, keyword) if k)
    if expr:
        out += ["-k", expr]
    if args.workers:
        out += ["--workers", str(args.workers)]
    if args.call_timeout:
        out += ["--call-timeout", str(args.call_timeout)]
    return out + list(args.pytest_arg or [])


def gradings_contained(command: Callable[[argparse.Namespace], int]):
    """Run a command that starts gradings as a child subreaper: graded code that escaped a
    ``pytest`` which was killed (its time limit) comes back here, not to init, and whatever is
    left when the command ends is ended with it."""

    def contained(args: argparse.Namespace) -> int:
        proctree.become_subreaper()
        began = time.time()
        try:
            return command(args)
        finally:
            proctree.end_all(str(os.getpid()), since=began)
    return contained
