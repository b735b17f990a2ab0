"""A started process tree: a graded child (or a bench job) in a session of its own, its output
captured to files with a size limit, waited for, and always killed with everything it started
(``parakit.controller.processes.proctree`` finds the whole tree)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path

import psutil

from parakit.controller.processes import shm
from parakit.controller.processes.proctree import (
    HOST,
    OWNER_VAR,
    PYTHON_NAMES,
    TAG_VAR,
    alive,
    children,
    is_subreaper,
    new_processes,
    reap,
    tagged,
    terminate,
    watch_uid,
)


class _Capture(threading.Thread):
    """Copy a pipe to a file, up to ``limit`` bytes; beyond that, count and keep only the tail.

    A submission that prints 100 MB therefore costs the grader a counter, not its disk, and the
    failure message can still show the last lines.
    """

    def __init__(self, pipe, path: Path, limit: int, tail: int = 4096):
        super().__init__(daemon=True)
        self.pipe, self.path, self.limit, self.tail_size = pipe, path, limit, tail
        self.total = 0
        self.tail = b""
        self.start()

    def run(self) -> None:
        with open(self.path, "wb") as out:
            for chunk in iter(lambda: self.pipe.read1(1 << 16), b""):
                if self.total < self.limit:
                    out.write(chunk[: self.limit - self.total])
                    out.flush()
                self.total += len(chunk)
                self.tail = (self.tail + chunk)[-self.tail_size:]
        self.pipe.close()

    @property
    def truncated(self) -> bool:
        return self.total > self.limit


class Child:
    """One graded child: started in a new session with its output captured, then waited for."""

    def __init__(self, cmd: list[str], env: Mapping[str, str], cwd: str | os.PathLike,
                 outdir: str | os.PathLike, output_limit: int = 1 << 20,
                 user: tuple[int, int] | None = None):
        self.tag = uuid.uuid4().hex
        self.uids = {os.getuid()} if user is None else {os.getuid(), user[0]}
        self.outdir = Path(outdir)
        env = {**env, TAG_VAR: self.tag, OWNER_VAR: str(os.getpid())}
        as_user = {}
        if user is not None:  # (uid, gid): no supplementary groups; HOME it can write
            watch_uid(user[0])
            as_user = {"user": user[0], "group": user[1], "extra_groups": []}
            env["HOME"] = str(cwd)
        self.began = time.time()  # the wall clock, as files' times are
        self.popen = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                      start_new_session=True, **as_user)
        self.captures = {name: _Capture(pipe, self.outdir / f"{name}.txt", output_limit)
                         for name, pipe in (("stdout", self.popen.stdout),
                                            ("stderr", self.popen.stderr))}
        self.started = time.monotonic()
        try:  # psutil's clock, to tell processes that appeared during this child's run
            self.created = psutil.Process(self.popen.pid).create_time()
        except psutil.Error:
            self.created = time.time()

    def own_processes(self, levels: int = 0) -> set[int]:
        """Pids of the child and of its first ``levels`` generations (mpiexec: its proxies and
        the ranks), plus multiprocessing's helper processes of the child itself."""
        own = {self.popen.pid}
        try:
            generation = [psutil.Process(self.popen.pid)]
        except psutil.Error:
            return own
        for proc in generation[0].children():
            try:
                cmd = " ".join(proc.cmdline())
            except psutil.Error:
                continue
            if "resource_tracker" in cmd or "forkserver" in cmd:
                own.add(proc.pid)
        for _ in range(levels):
            generation = [c for p in generation for c in children(p)]
            own.update(p.pid for p in generation)
        return own

    def output(self, name: str) -> str:
        """The end of the child's stdout or stderr (what a failure message shows)."""
        cap = self.captures[name]
        text = cap.tail.decode(errors="replace")
        if cap.total > len(cap.tail):
            text = "[... earlier output cut ...]\n" + text
        return text

    def note_truncation(self) -> str:
        """A sentence about output that went over the limit, or ''."""
        over = [f"{name} ({cap.total / 2**20:.1f} MiB)" for name, cap in self.captures.items()
                if cap.truncated]
        if not over:
            return ""
        limit = next(iter(self.captures.values())).limit
        return (f"the graded code wrote more output than the limit of {limit / 2**20:g} MiB: "
                f"{', '.join(over)}; only the first part was kept")

    def wait(self, timeout: float) -> int | None:
        """The exit code, or ``None`` if the child is still running after ``timeout`` seconds."""
        try:
            return self.popen.wait(timeout=max(0.0, timeout))
        except subprocess.TimeoutExpired:
            return None

    def tree(self) -> list[psutil.Process]:
        """The child, its descendants, and every descendant of the grader that appeared since
        the child started (detached orphans, see ``proctree.become_subreaper``); without a
        subreaper, every process carrying the child's tag instead."""
        procs: dict[int, psutil.Process] = {}
        try:
            top = psutil.Process(self.popen.pid)
            procs[top.pid] = top
            for p in top.children(recursive=True):
                procs[p.pid] = p
        except psutil.Error:
            pass
        # With the subreaper, nothing that left the tree can be anywhere but below us; the tag
        # scan (every process's environment, ~10 ms) is the fallback without it.
        extra = new_processes(self.created) if is_subreaper() else tagged(TAG_VAR, self.tag)
        for p in extra:
            procs.setdefault(p.pid, p)
        return alive(procs.values())

    def dump_stacks(self, also: Iterable[int] = (), wait: float = 0.5) -> None:
        """Ask every process of the job that registered a stack file in ``outdir`` to write
        its stack: each MPI rank and pool worker (the child's tree), the engines ``also`` and
        any ipyparallel engine (a user's cluster; see ``parakit.worker.grade.watch_stacks``). A file
        names its process, and graded code could name any: no other process is signalled
        (SIGUSR1 ends one without a handler)."""
        ours = {p.pid for p in self.tree()} | set(also)
        for path in self.outdir.glob("stack-*.txt"):
            try:
                host, _, number = path.stem.removeprefix("stack-").rpartition("-")
                if host != HOST:  # another host's: the backend asks there
                    continue
                pid = int(number)
                proc = psutil.Process(pid)
                engine = proc.cmdline()[-2:] == ["-m", "ipyparallel.engine"]  # a user's own
                if (pid in ours or engine) and proc.name().startswith(PYTHON_NAMES):
                    proc.send_signal(signal.SIGUSR1)
            except (psutil.Error, ValueError):
                pass
        time.sleep(wait)

    def stop(self) -> list[psutil.Process]:
        """Kill the whole tree (TERM, short wait, KILL); return processes that needed KILL.
        Repeated while processes are left: one may fork while the others are being killed.
        Then remove the shared-memory files the tree left (``parakit.controller.processes.shm``)."""
        killed = []
        for _ in range(3):
            tree = self.tree()
            if not tree:
                break
            killed += terminate(tree)
        reap({self.popen.pid})
        try:
            self.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        shm.sweep(self.began, self.uids)  # what killed ranks and pools left in /dev/shm
        for cap in self.captures.values():
            cap.join(timeout=5)
        return killed
