"""``parakit validate``: checks the grader itself. The reference gets full marks, the stubs get
zero, and every graded test fails for at least one broken submission of ``tests/catalogue.py``
with the words the catalogue expects."""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from parakit import KIT_ROOT as KIT
from parakit.classroom.submission import NOT_IMPLEMENTED, Graded, grade_one
from parakit.cli.grade import jobs_count, pytest_args

CATALOGUE = KIT / "tests" / "catalogue.py"


def _catalogue(path: Path = CATALOGUE) -> list:
    """The broken submissions of the kit's catalogue: a data file this command reads (the kit's
    own tests use it too); it holds edits of the solutions, so no release has it."""
    if not path.is_file():
        raise SystemExit(f"parakit validate: no catalogue of broken submissions ({path}); "
                         "validate runs in the instructor's kit, not in a release")
    sys.path.insert(0, str(KIT))  # the catalogue builds its entries with tests/helpers.py
    spec = importlib.util.spec_from_file_location("parakit_catalogue", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module.CATALOGUE


def validate(outdir: Path, args: argparse.Namespace, entries=None,
             say: Callable[[str], None] = print) -> list[str]:
    """Every problem found with the grader (empty: it is sound)."""
    entries = _catalogue() if entries is None else entries
    if args.quick:
        entries = [e for e in entries if not e.slow]
    if args.only:
        entries = [e for e in entries if e.name in args.only]
    base = pytest_args(args)
    jobs = jobs_count(args.jobs)
    graded: dict[str, Graded] = {}
    lock = threading.Lock()

    def one(name: str, path: Path, pytest_args: list[str]) -> None:
        g = grade_one(name, path, outdir / name, pytest_args, args.timeout)
        with lock:
            graded[name] = g
            error = f"  ERROR: {g.errors}" if g.errors else ""
            say(f"[{len(graded)}] {name}: {g.total:g} / {g.possible:g} "
                f"({len(g.failed())} failed, {g.seconds:.1f} s){error}")

    def run_all(runs: list) -> None:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            for f in [pool.submit(one, *run) for run in runs]:
                f.result()

    run_all([("reference", KIT / "reference", base), ("stubs", KIT / "student", base)])
    # Only entries whose exercise this run grades (-k may leave some out).
    names = [t["name"] for t in graded["reference"].tests]
    entries = [e for e in entries if any(f"test_{e.exercise}" in n for n in names)]
    with tempfile.TemporaryDirectory(prefix="parakit-validate-") as tmp:
        runs = []
        for entry in entries:
            # entries that hang: short calls, and four hangs at most
            extra = ["--call-timeout", "10", "--hang-budget", "40"] \
                if entry.slow and not args.call_timeout else []
            # at the grader's process counts, or at the count an entry's defect needs where it
            # names one above the catalogue's usual 2 (a split that fails only at 3), unless
            # --workers says otherwise
            needs = getattr(entry, "workers", 2)
            workers = ["--workers", str(needs)] if needs > 2 and not args.workers else []
            runs.append((entry.name, entry.build(Path(tmp)),
                         pytest_args(args, getattr(entry, "keyword", entry.exercise))
                         + workers + extra))
        run_all(runs)

    problems = []
    ref, stubs = graded["reference"], graded["stubs"]
    if ref.errors or not ref.tests or ref.total != ref.possible:
        problems.append(f"reference: {ref.total:g} / {ref.possible:g}, expected full marks; "
                        f"failed: {sorted(ref.failed())} {ref.errors}")
    if stubs.errors or stubs.total != 0:
        problems.append(f"stubs: {stubs.total:g} / {stubs.possible:g}, expected 0 {stubs.errors}")
    for name, message in stubs.failed().items():
        if not message.startswith(NOT_IMPLEMENTED):
            problems.append(f"stubs: {name} fails with {message.splitlines()[0]!r}, expected "
                            f"'{NOT_IMPLEMENTED}: ...'")
    caught: set[str] = set()
    for entry in entries:
        g = graded[entry.name]
        failed = g.failed()
        caught |= set(failed)
        if g.errors:
            problems.append(f"{entry.name}: grading failed: {g.errors}")
        expected = [t["name"] for t in g.tests if any(s in t["name"] for s in entry.fails)]
        for name in expected:
            if name not in failed:
                problems.append(f"{entry.name}: {name} passed, expected it to fail")
            elif not entry.says(failed[name].splitlines()[0]):
                problems.append(f"{entry.name}: {name} fails with "
                                f"{failed[name].splitlines()[0]!r}, expected {entry.words!r}")
    graded_tests = [t["name"] for t in ref.tests]
    uncaught = [name for name in graded_tests if name not in caught]
    if uncaught:
        problems.append(f"{len(uncaught)} graded test(s) fail for no broken submission of the "
                        "catalogue: " + ", ".join(uncaught))
    return problems


