"""The Slurm engine: a class graded as one job array, one submission per array task.

Each task runs the same one-submission grading as ``parakit grade`` on one machine
(``submission.grade_one``, in a sandbox of its own) and leaves its record beside its reports in
the shared output folder; the gradebook is made from those records, so it is the one the class
would get graded one by one. Submitting, following and cancelling go through submitit (job
arrays with a cap on the tasks running, states from Slurm's accounting, requeue of a preempted
task); what it does not do is here: the checks before anything is submitted, telling a task the
cluster ended from a submission that failed, and the live line of progress.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from parakit import sandbox
from parakit.classroom.engines import Engine, Progress, to_stderr
from parakit.classroom.submission import Graded, grade_one, record_path
from parakit.controller.processes import proctree

# Where the compute nodes are other machines, the folders must be on a file system they share.
SHARED_FILESYSTEMS = ("nfs", "nfs4", "lustre", "gpfs", "beegfs", "cephfs", "ceph", "cifs",
                      "smb3", "glusterfs", "fuse.glusterfs", "wekafs", "panfs", "fuse.sshfs")
# Slurm's final states that are the cluster's doing, not the submission's (whose own failures
# end in a record: a zero with its reason). A task's time limit is the cluster's too: every
# grading stops itself before it (``--timeout`` is kept below ``--time``).
ENDED = ("FAILED", "NODE_FAIL", "TIMEOUT", "CANCELLED", "OUT_OF_MEMORY", "BOOT_FAIL",
         "DEADLINE", "PREEMPTED", "REVOKED", "COMPLETED")
MARGIN_S = 60  # a task's time limit beyond its grading's own
RECORD_LAG_S = 5  # how long a record may take to be seen after Slurm says its task ended


class SlurmError(RuntimeError):
    """The class cannot be submitted (said before anything is)."""


@dataclass
class SlurmOptions:
    """What ``parakit grade --slurm`` asks of the cluster for each task."""

    partition: str = ""
    account: str = ""
    time_min: int = 30  # each task's time limit
    max_running: int = 0  # tasks running at once (0: as many as Slurm allows)
    cpus_per_task: int = 2
    exclusive: bool = False  # a node per task: nothing else runs beside a grading
    sbatch: dict[str, str] = field(default_factory=dict)  # any other option: name -> value
    poll_s: float = 2.0


def check(options: SlurmOptions, folders: Sequence[Path]) -> list[str]:
    """What stops the class from being graded on this cluster; [] when nothing does."""
    if shutil.which("sbatch") is None:
        return ["sbatch not found: grade on a Slurm login node (or where the Slurm client "
                "commands are on PATH), or without --slurm"]
    problems = []
    if options.partition:
        found = _slurm(["sinfo", "-h", "-p", options.partition, "-o", "%P"])
        if found is None or not found.strip():
            known = (_slurm(["sinfo", "-h", "-o", "%P"]) or "").split()
            problems.append(f"--partition {options.partition}: no such partition (this "
                            f"cluster has: {', '.join(known) or 'none that sinfo shows'})")
    hosts = _node_hosts(options.partition)
    if hosts is None:
        problems.append("sinfo does not answer: is slurmctld reachable from here?")
    elif hosts - {socket.gethostname()}:
        for folder in folders:
            kind = filesystem(folder)
            if kind not in SHARED_FILESYSTEMS:
                problems.append(
                    f"{folder}: on a {kind or 'unknown'} file system of this machine, which "
                    f"the compute nodes ({', '.join(sorted(hosts)[:3])}...) do not see: put "
                    "the submissions and --out on a shared file system (NFS, Lustre, GPFS, "
                    "BeeGFS, CephFS), or pass --slurm-shared if yours is one")
    return problems


def filesystem(path: Path) -> str:
    """The type of the file system holding ``path`` (from /proc/mounts: the longest mount
    point above it); '' if unknown."""
    path = Path(path).resolve()
    best, kind = "", ""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return ""
    for line in mounts:
        parts = line.split()
        if len(parts) < 3:
            continue
        point = parts[1].replace("\\040", " ")
        inside = str(path) == point or str(path).startswith(point.rstrip("/") + "/")
        if inside and len(point) > len(best):
            best, kind = point, parts[2]
    return kind


def _slurm(cmd: list[str]) -> str | None:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def _node_hosts(partition: str) -> set[str] | None:
    """The host names of the partition's nodes (of every node without one)."""
    out = _slurm(["sinfo", "-h", "-N", "-o", "%n", *(["-p", partition] if partition else [])])
    return None if out is None else set(out.split())


class GradeTask:
    """One array task: one submission graded into its report folder, its record kept there.
    A subreaper like ``parakit grade``: what the grading leaves goes with the task. Requeued
    as it is when preempted (submitit's ``checkpoint``): grading again from the start is
    exactly what a fresh task would do."""

    def __init__(self, pytest_args: Sequence[str], timeout: float):
        self.pytest_args, self.timeout = list(pytest_args), timeout

    def __call__(self, name: str, path: str, reportdir: str, others: list[str]) -> float:
        # Slurm ends a task (scancel, a preemption, a node going down) with SIGTERM to all of
        # its processes, the grading's pytest included: what that grading then says is not
        # the submission's, so no record is kept (the gradebook says "not graded").
        ended = []
        previous = signal.signal(signal.SIGTERM, lambda *_: ended.append(True))
        proctree.become_subreaper()
        began = time.time()
        try:
            sandboxed = not sandbox.unavailable()
            graded = grade_one(name, Path(path), Path(reportdir), self.pytest_args,
                               self.timeout, sandboxed, [Path(o) for o in others])
            if graded.errors.startswith("pytest exited with code -"):
                time.sleep(1)  # killed by a signal: was it Slurm's? (ours may come later)
            if ended:
                raise RuntimeError("the task was ended by Slurm while it graded")
            graded.save()
            return graded.total
        finally:
            proctree.end_all(str(os.getpid()), since=began)
            signal.signal(signal.SIGTERM, previous)

    def checkpoint(self, *args, **kwargs):
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


class Slurm(Engine):
    """A class as one job array on a Slurm cluster (``options``); ``shared``: the folders are
    on a file system the nodes share (not checked)."""

    def __init__(self, options: SlurmOptions | None = None, shared: bool = False):
        self.options = options or SlurmOptions()
        self.shared = shared

    def grade(self, submissions: Sequence[tuple[str, Path]], outdir: Path,
              pytest_args: Sequence[str] = (), timeout: float = 1800,
              progress: Progress = to_stderr) -> list[Graded]:
        import submitit

        outdir = Path(outdir).resolve()
        outdir.mkdir(parents=True, exist_ok=True)
        folders = [] if self.shared else [outdir, *(Path(p) for _, p in submissions)]
        problems = check(self.options, folders)
        if problems:
            raise SlurmError("\n".join(problems))
        opts = self.options
        timeout = min(timeout, opts.time_min * 60 - MARGIN_S)
        executor = submitit.SlurmExecutor(folder=outdir / ".slurm", max_num_timeout=0)
        extra = dict(opts.sbatch)
        if opts.account:
            extra["account"] = opts.account
        executor.update_parameters(
            job_name="parakit-grade", time=opts.time_min, cpus_per_task=opts.cpus_per_task,
            array_parallelism=opts.max_running or len(submissions), stderr_to_stdout=True,
            additional_parameters=extra, **({"partition": opts.partition}
                                            if opts.partition else {}),
            **({"exclusive": True} if opts.exclusive else {}))
        for name, _ in submissions:
            (outdir / name).mkdir(parents=True, exist_ok=True)
            record_path(outdir / name).unlink(missing_ok=True)
        dirs = [str(outdir / name) for name, _ in submissions]
        sources = [str(Path(p).resolve()) for _, p in submissions]
        # each task hides the other tasks' report folders and submissions
        others = [[hidden for d, src in zip(dirs, sources, strict=True) if d != mine
                   for hidden in (d, src)] for mine in dirs]
        try:
            jobs = executor.map_array(GradeTask(pytest_args, timeout),
                                      [n for n, _ in submissions],
                                      sources, dirs, others)
        except (subprocess.CalledProcessError, submitit.core.utils.FailedJobError) as exc:
            raise SlurmError(f"sbatch refused the array: {exc}") from exc
        array = jobs[0].job_id.split("_")[0]
        progress(f"submitted {len(jobs)} task(s) as Slurm job array {array} (partition "
                 f"{opts.partition or 'default'}); reports in {outdir}")
        try:
            ended = _follow(jobs, [outdir / n for n, _ in submissions], progress, opts.poll_s,
                            array)
        except KeyboardInterrupt:
            submitit.SlurmJob(outdir / ".slurm", array).cancel(check=False)
            progress(f"cancelled job array {array}; what finished is kept: parakit grade "
                     f"--resume {outdir} grades the rest")
            raise
        return [_outcome(name, outdir / name, ended.get(i), jobs[i])
                for i, (name, _) in enumerate(submissions)]


def _follow(jobs: list, dirs: list[Path], progress: Progress, poll_s: float,
            array: str) -> dict[int, str]:
    """Wait until every task has a record or a final state; one live line meanwhile.
    Returns the final state of each task that ended without a record."""
    watcher = jobs[0].watcher
    start = time.monotonic()
    ended: dict[int, str] = {}
    first_seen: dict[int, float] = {}  # when a task was first seen ended without its record
    live = _LiveLine(progress)
    while True:
        watcher.update()
        counts = {"pending": 0, "running": 0, "done": 0, "failed": 0}
        for i, job in enumerate(jobs):
            state = watcher.get_state(job.job_id, mode="cache").split()[0].upper()
            if record_path(dirs[i]).exists():
                counts["done"] += 1
                ended.pop(i, None)
            elif state in ENDED and \
                    time.monotonic() - first_seen.setdefault(i, time.monotonic()) > RECORD_LAG_S:
                counts["failed"] += 1
                ended[i] = state
            elif state in ENDED:
                counts["running"] += 1  # its record may be on its way (a shared file system)
            elif state in ("RUNNING", "COMPLETING"):
                counts["running"] += 1
            else:
                counts["pending"] += 1
        elapsed = time.monotonic() - start
        finished = counts["done"] + counts["failed"]
        left = f", about {_clock(elapsed / finished * (len(jobs) - finished))} left" \
            if 0 < finished < len(jobs) else ""
        live.show(f"array {array}: {counts['pending']} pending, {counts['running']} running, "
                  f"{counts['done']} done, {counts['failed']} failed; {_clock(elapsed)} "
                  f"elapsed{left}", final=finished == len(jobs))
        if finished == len(jobs):
            return ended
        time.sleep(poll_s)


def _outcome(name: str, reportdir: Path, state: str | None, job) -> Graded:
    """The task's record, or a zero that says the cluster (not the submission) ended it."""
    graded = Graded.load(reportdir)
    if graded is not None:
        return graded
    log = Path(job.paths.stdout)
    why = {"COMPLETED": "ended without a result"}.get(state or "", f"was ended by Slurm "
                                                                 f"({state})")
    return Graded(name, errors=f"not graded: its Slurm task {job.job_id} {why}, not the "
                               f"submission; see {log}; parakit grade --resume "
                               f"{reportdir.parent} grades it again", reportdir=reportdir)


def _clock(seconds: float) -> str:
    minutes, s = divmod(int(seconds), 60)
    return f"{minutes}m{s:02d}s" if minutes else f"{s}s"


class _LiveLine:
    """One line rewritten in place on a terminal; elsewhere (CI logs) a line when it changes."""

    def __init__(self, progress: Progress):
        self.progress, self.last = progress, ""
        self.tty = progress is to_stderr and sys.stderr.isatty()

    def show(self, line: str, final: bool = False) -> None:
        if self.tty:
            sys.stderr.write("\r" + line.ljust(len(self.last)) + ("\n" if final else ""))
            sys.stderr.flush()
        elif line.split(";")[0] != self.last.split(";")[0] or final:
            self.progress(line)
        self.last = line
