"""Where the gradings of a class run, behind one small interface (``Engine.grade``).

``Local``: a few at once on this machine, each in a sandbox of its own. The Slurm engine
(``parakit.classroom.slurm``) runs the same one-submission grading as one task of a job array.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from parakit import sandbox
from parakit.classroom.submission import Graded, grade_one

Progress = Callable[[str], None]


def to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class Engine:
    """Grades ``(name, path)`` submissions into ``outdir/name``; results in the order given."""

    def grade(self, submissions: Sequence[tuple[str, Path]], outdir: Path,
              pytest_args: Sequence[str] = (), timeout: float = 1800,
              progress: Progress = to_stderr) -> list[Graded]:
        raise NotImplementedError


class Local(Engine):
    """``jobs`` gradings at once on this machine; ``sandboxed``: each in a sandbox of its own
    where the machine allows it."""

    def __init__(self, jobs: int = 1, sandboxed: bool = True):
        self.jobs, self.sandboxed = jobs, sandboxed

    def grade(self, submissions: Sequence[tuple[str, Path]], outdir: Path,
              pytest_args: Sequence[str] = (), timeout: float = 1800,
              progress: Progress = to_stderr) -> list[Graded]:
        why = sandbox.unavailable() if self.sandboxed else ""
        if why:
            progress(f"{why}: gradings run side by side can see each other "
                     "(docs/robustness.md)")
        sandboxed = self.sandboxed and not why
        if sandboxed:
            for name, _ in submissions:  # each grading hides the others' report folders
                (outdir / name).mkdir(parents=True, exist_ok=True)
        done: dict[str, Graded] = {}
        lock = threading.Lock()
        width = max((len(n) for n, _ in submissions), default=4)
        start = time.monotonic()

        def one(name: str, path: Path) -> Graded:
            others = [hidden for n, p in submissions if n != name
                      for hidden in (outdir / n, Path(p))] if sandboxed else []
            graded = grade_one(name, path, outdir / name, pytest_args, timeout, sandboxed,
                               others)
            graded.save()
            return graded

        progress(f"grading {len(submissions)} submission(s), {self.jobs} at a time; reports "
                 f"in {outdir}")
        with ThreadPoolExecutor(max_workers=self.jobs) as pool:
            futures = {pool.submit(one, name, path): name for name, path in submissions}
            for future in as_completed(futures):
                graded = future.result()
                with lock:
                    done[graded.name] = graded
                    note = f"  ERROR: {graded.errors}" if graded.errors else ""
                    count = len(str(len(submissions)))
                    progress(f"[{len(done):>{count}}/{len(submissions)}] {graded.name:<{width}}"
                             f"  {graded.total:>6g} / {graded.possible:<6g} "
                             f"{graded.seconds:6.1f} s  (elapsed "
                             f"{time.monotonic() - start:.0f} s){note}")
        return [done[name] for name, _ in submissions]
