"""ipyparallel: a view on P engines of a cluster the session starts once (or the user's own).

The cluster is started on first use, restarted when a run leaves an engine stuck, and always
stopped (``stop`` plus an atexit backstop).

The grading process holds no client of the cluster once the engines are up: an ipyparallel
client unpickles what engines send it, and the engines run graded code. Their namespaces are
cleared by each graded child before its cases
(``parakit.worker.grade.run_ipp``). With ``--run-as`` the
engines run as that user (the controller, which runs no graded code, stays the grader's), and
the client connection file is copied where that user can read it.

Alternatively the user's own cluster (``ipcluster start -n X``) is used through its client
connection file; then the grader never starts or stops anything.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import time
from pathlib import Path

import psutil

from parakit.backends.base import Backend, BackendError
from parakit.controller import observe, proctree
from parakit.controller.launch import Child
from parakit.controller.runtime import child_env


class SessionCluster:
    """A lazily started cluster of ``n`` engines with a private IPython directory."""

    def __init__(self, n: int, workdir: Path, connection_file: str | None = None,
                 timeout: float = 120.0, run_as: tuple[int, int] | None = None):
        self.n, self.workdir, self.timeout = n, Path(workdir), timeout
        self.run_as = run_as  # uid, gid the engines run as (--run-as); None: ours
        self.user_file = connection_file
        self._cluster = None
        self._client = None
        self.start_seconds: float | None = None
        self.engines: list[int] = []  # pids of the engines we started (none: a user's cluster)
        self.needs_restart = False

    # -- lifecycle ---------------------------------------------------------------------
    def connection_file(self) -> str:
        """The client connection file; starts (or restarts) the cluster when needed."""
        if self.user_file:
            return self._user_connection()
        if self.needs_restart:
            self.stop()
        if self._cluster is None:
            self._start()
        return self._file

    def _user_connection(self) -> str:
        path = Path(self.user_file).expanduser()
        if not path.is_file():
            raise BackendError(f"--ipp-connect {self.user_file}: no such connection file (start "
                               "a cluster with `ipcluster start -n 4`; its file is "
                               "~/.ipython/profile_default/security/ipcontroller-client.json)")
        return str(path)

    def _start(self) -> None:
        import ipyparallel as ipp
        from traitlets.config import Config

        ipython_dir = self.workdir / "ipython"
        env = {"IPYTHONDIR": str(ipython_dir), proctree.OWNER_VAR: str(os.getpid()),
               "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               "MPLBACKEND": "Agg", "PYTHONPATH": _kit_pythonpath()}
        config = Config()
        config.LocalControllerLauncher.environment = env
        config.LocalEngineSetLauncher.environment = env
        if self.run_as is not None:
            home = self.workdir / "engine-home"  # a HOME the engines' user can write
            home.mkdir(exist_ok=True)
            os.chown(home, *self.run_as)
            config.LocalEngineSetLauncher.environment = {**env, "HOME": str(home)}
            config.LocalEngineSetLauncher.engine_cmd = as_user(
                [sys.executable, "-m", "ipyparallel.engine"], *self.run_as)
        begin = time.perf_counter()
        cluster = ipp.Cluster(n=self.n, profile_dir=str(ipython_dir / "profile_parakit"),
                              config=config, shutdown_atexit=True, log_level=40)
        self._cluster = cluster
        atexit.register(self.stop)
        try:
            self._client = cluster.start_and_connect_sync()
            self._client.wait_for_engines(self.n, timeout=self.timeout)
        except Exception as exc:
            self.stop()
            raise BackendError(f"the ipyparallel cluster did not start ({exc}); see the logs in "
                               f"{ipython_dir}") from exc
        finally:  # no client of ours while engines run graded code (see the module's doc)
            client, self._client = self._client, None
            if client is not None:
                client.close()
        self._file = str(Path(cluster.profile_dir, "security",
                              f"ipcontroller-{cluster.cluster_id}-client.json"))
        if self.run_as is not None:  # the security folder is the grader's only
            readable = self.workdir / f"ipcontroller-{cluster.cluster_id}-client.json"
            shutil.copyfile(self._file, readable)
            readable.chmod(0o644)
            self._file = str(readable)
        self.start_seconds = time.perf_counter() - begin
        self.engines = _engine_processes()
        self.needs_restart = False

    @property
    def owned(self) -> bool:
        """Whether the grader started this cluster (it may clear its engines)."""
        return not self.user_file

    def stop(self) -> None:
        """Stop the controller and engines (TERM, wait, KILL) if we started them."""
        cluster, self._cluster = self._cluster, None
        client, self._client = self._client, None
        if client is not None:
            client.close()
        if cluster is None:
            return
        try:
            cluster.stop_cluster_sync()
        except Exception:  # noqa: BLE001  (we kill below whatever did not stop)
            pass
        # Backstop: anything launched with our owner tag and our profile goes.
        procs = [p for p in proctree.tagged(proctree.OWNER_VAR, str(os.getpid()))
                 if _is_cluster_process(p)]
        proctree.terminate(procs)


def _engine_processes() -> list[int]:
    """Pids of the engines among this process's children (where graded tasks run; not their
    nannies, which only watch them)."""
    found = []
    for proc in psutil.Process().children():
        try:
            cmd = proc.cmdline()
        except psutil.Error:
            continue
        if cmd[-2:] == ["-m", "ipyparallel.engine"]:
            found.append(proc.pid)
    return sorted(found)


def _is_cluster_process(proc) -> bool:
    try:
        cmd = " ".join(proc.cmdline())
    except Exception:  # noqa: BLE001
        return False
    return "ipyparallel" in cmd or "ipengine" in cmd or "ipcontroller" in cmd


# Drop to a user, then run the command (``setpriv --reuid --regid --clear-groups``, in Python).
_AS_USER = ("import os, sys; uid, gid = int(sys.argv[1]), int(sys.argv[2]); os.setgroups([]); "
            "os.setresgid(gid, gid, gid); os.setresuid(uid, uid, uid); "
            "os.execv(sys.argv[3], sys.argv[3:])")


def as_user(cmd: list[str], uid: int, gid: int) -> list[str]:
    """``cmd`` run as user ``uid`` with group ``gid`` and no supplementary groups (the process
    keeps its pid: the launcher's signals reach the command itself)."""
    return [sys.executable, "-c", _AS_USER, str(uid), str(gid), *cmd]


def _kit_pythonpath() -> str:
    return child_env()["PYTHONPATH"]


class Ipp(Backend):
    """Runs on the session's cluster: the runner connects as a client and hands the graded
    function a view (direct, or load-balanced with ``view="balanced"``)."""

    name = "ipp"

    def __init__(self, cluster: SessionCluster):
        self.cluster = cluster

    def start(self) -> dict:
        # The runner clears the engines' namespaces (our own cluster only), not the grading
        # process: it holds no client (see the module's doc).
        return {"connection_file": self.cluster.connection_file(),
                "clear_engines": self.cluster.owned}

    @property
    def engines(self) -> tuple[int, ...]:
        return tuple(self.cluster.engines)

    def observer(self, child: Child, jobdir: Path, workers: int) -> observe.Observer:
        return EngineObserver(child, jobdir, self.engines)

    def failed(self) -> None:
        self.cluster.needs_restart = True  # an engine may still be busy with the stuck task

    def stop(self) -> None:
        self.cluster.stop()


class EngineObserver(observe.Observer):
    """The session's engines and the CPU time each spent between ``ready-{i}`` and the result
    (a user's cluster: no engines known, no credit)."""

    def __init__(self, child: Child, jobdir: Path, engines: tuple[int, ...]):
        super().__init__(child, jobdir)
        self.engines = {pid: f"engine (pid {pid})" for pid in engines}
        self._start: dict[int, float] = {}

    def case_started(self) -> None:
        self._start = {pid: cpu for pid, cpu in self._engine_cpu().items()}

    def _engine_cpu(self) -> dict[int, float]:
        cpu = {}
        for pid in self.engines:
            try:
                seconds = observe.cpu_seconds(psutil.Process(pid))
            except psutil.Error:
                seconds = None
            if seconds is not None:
                cpu[pid] = seconds
        return cpu

    def finish_case(self) -> observe.Seen:
        self.current.workers = dict(self.engines)
        now = self._engine_cpu()
        self.current.cpu = {pid: now[pid] - start for pid, start in self._start.items()
                            if pid in now}
        self.set_caller_cpu(self.caller())
        self._start = {}
        return super().finish_case()
