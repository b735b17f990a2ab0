"""The session's ipyparallel cluster: started once (or the user's own, connected to).

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
from collections.abc import Callable
from pathlib import Path

from parakit.backends.ipp_launch import (
    as_user,
    engine_processes,
    is_cluster_process,
    launched_pids,
    remote_engines,
    remote_engines_config,
    write_profile,
)
from parakit.controller.processes import observe, proctree, shm
from parakit.controller.processes.hosts import Hosts
from parakit.controller.session.backend import BackendError
from parakit.controller.session.runtime import child_env


class SessionCluster:
    """A lazily started cluster of ``n`` engines with a private IPython directory."""

    def __init__(self, n: int, workdir: Path, connection_file: str | None = None,
                 timeout: float = 120.0, run_as: tuple[int, int] | None = None,
                 hosts: Hosts | None = None, say: Callable[[str], None] | None = None):
        self.n, self.workdir, self.timeout = n, Path(workdir), timeout
        self.run_as = run_as  # uid, gid the engines run as (--run-as); None: ours
        self.hosts = hosts or Hosts()  # several: engines on them, over the remote shell
        self.say = say or (lambda message: None)  # a line for the user: starting, ready
        self.user_file = connection_file
        self._cluster = None
        self._client = None
        self._ready = False  # launched (processes started) and engines registered
        self._spared: list[int] = []  # our processes a job must not count (proctree.spare)
        self._begin = self._began = 0.0  # when launched: perf_counter, wall clock
        self.start_seconds: float | None = None
        self.engines: list[observe.Proc] = []  # the engines we started (none: a user's cluster)
        self.needs_restart = False
        self._user_used = False  # a user's cluster was handed to a job: untraced at stop

    # -- lifecycle ---------------------------------------------------------------------
    def connection_file(self) -> str:
        """The client connection file; starts (or restarts) the cluster when needed."""
        if self.user_file:
            self._user_used = True
            return self._user_connection()
        if self.needs_restart:
            self.stop()
        if self._cluster is None:
            self.launch()
        if not self._ready:
            self._wait_for_engines()
        return self._file

    @property
    def can_launch_early(self) -> bool:
        """Whether :meth:`launch` may run while jobs do: on this machine only (on other hosts
        the remote shell's waiters would appear during a job)."""
        return not self.user_file and not self.hosts.several

    def _user_connection(self) -> str:
        path = Path(self.user_file).expanduser()
        if not path.is_file():
            raise BackendError(f"--ipp-connect {self.user_file}: no such connection file (start "
                               "a cluster with `ipcluster start -n 4`; its file is "
                               "~/.ipython/profile_default/security/ipcontroller-client.json)")
        return str(path)

    def launch(self) -> None:
        """Start the controller and the engines' processes, without waiting for the engines
        to register (:meth:`connection_file` does): started early, they come up while other
        tests run. Their process trees are spared from every job's (``proctree.spare``)."""
        if self.user_file or self._cluster is not None:
            return
        import ipyparallel as ipp
        from traitlets.config import Config

        ipython_dir = self.workdir / "ipython"
        env = {"IPYTHONDIR": str(ipython_dir), proctree.OWNER_VAR: str(os.getpid()),
               "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               "MPLBACKEND": "Agg", "PYTHONPATH": _kit_pythonpath()}
        config = Config()
        config.LocalControllerLauncher.environment = env
        config.LocalEngineSetLauncher.environment = env
        remote = remote_engines_config(config, self.hosts, self.n, self.workdir, env) \
            if self.hosts.several else None
        if self.run_as is not None:
            home = self.workdir / "engine-home"  # a HOME the engines' user can write
            home.mkdir(exist_ok=True)
            os.chown(home, *self.run_as)
            for launcher in ("LocalEngineSetLauncher", "SrunEngineSetLauncher"):
                config[launcher].environment = {**env, "HOME": str(home)}
                config[launcher].engine_cmd = as_user(
                    [sys.executable, "-m", "ipyparallel.engine"], *self.run_as)
        write_profile(ipython_dir / "profile_parakit")
        self._begin, self._began = time.perf_counter(), time.time()
        on = f" on {self.hosts.describe()}" if self.hosts.several else ""
        self.say(f"ipyparallel: starting a cluster of {self.n} engines{on} ...")
        where = {"engine_launcher_class": remote, "controller_ip": "*"} if remote else {}
        # --nodb: the hub keeps no task results (its default in-memory database kept every
        # result, 300 MB by the end of a grading: Gradescope's container has 768 MB in all)
        cluster = ipp.Cluster(n=self.n, profile_dir=str(ipython_dir / "profile_parakit"),
                              config=config, shutdown_atexit=True, log_level=50,
                              controller_args=["--nodb"], **where)
        self._cluster = cluster
        atexit.register(self.stop)
        try:
            cluster.start_cluster_sync()  # returns once the controller is up
        except Exception as exc:
            self.stop()
            raise BackendError(f"the ipyparallel cluster did not start ({exc}); see the logs in "
                               f"{ipython_dir}") from exc
        self._spared = launched_pids(cluster)  # with all below them, until ready
        proctree.spare(self._spared)

    def _wait_for_engines(self) -> None:
        cluster = self._cluster
        ipython_dir = self.workdir / "ipython"
        try:
            # the hub's answer may take more than ipyparallel's 10 s on a busy machine
            self._client = cluster.connect_client_sync(timeout=self.timeout)
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
        self.start_seconds = time.perf_counter() - self._begin
        self.say(f"ipyparallel: {self.n} engines ready in {self.start_seconds:.1f} s")
        try:
            self.engines = remote_engines(cluster, self.hosts, self.n, self._began) \
                if self.hosts.several else [observe.here(pid) for pid in engine_processes()]
        except ValueError as exc:
            self.stop()
            raise BackendError(f"the ipyparallel cluster did not start as asked: {exc}") \
                from None
        self.needs_restart = False
        self._ready = True
        # From now on graded code runs in the engines: what appears below them is a job's to
        # answer for. The cluster's processes as they are now stay spared, one by one.
        proctree.unspare(self._spared)
        self._spared = sorted(proctree.subtrees(self._spared))
        proctree.spare(self._spared, descendants=False)

    @property
    def owned(self) -> bool:
        """Whether the grader started this cluster (it may clear its engines)."""
        return not self.user_file

    def stop(self) -> None:
        """Stop the controller and engines (TERM, wait, KILL) if we started them."""
        cluster, self._cluster = self._cluster, None
        client, self._client = self._client, None
        self._ready = False
        if client is not None:
            client.close()
        if self._user_used:
            self._untrace_user_engines()
        if cluster is None:
            return
        spared, self._spared = self._spared, []
        try:
            cluster.stop_cluster_sync()
        except Exception:  # noqa: BLE001  (we kill below whatever did not stop)
            pass
        # Backstop: anything launched with our owner tag and our profile goes, on every host.
        procs = [p for p in proctree.tagged(proctree.OWNER_VAR, str(os.getpid()))
                 if is_cluster_process(p)]
        proctree.terminate(procs)
        proctree.unspare(spared)
        shm.sweep(self._began)  # engines that imported mpi4py, killed: their MPICH segments
        if self.hosts.several:
            self.hosts.probe_all("kill", proctree.OWNER_VAR, str(os.getpid()))
            self.hosts.probe_all("shm", str(self._began))  # and what the engines left there

    def _untrace_user_engines(self) -> None:
        """Tracing off on every engine of the user's cluster, which outlives the grading (a
        runner ended right after its last result may not have done it); a stuck one is left."""
        self._user_used = False
        from parakit.worker.contexts import engine_untrace

        try:
            import ipyparallel as ipp

            with ipp.Client(self._user_connection(), timeout=10) as client:
                client[:].apply_async(engine_untrace).get(timeout=10)
        except Exception:  # noqa: BLE001  (a cluster gone or stuck: nothing more to do)
            pass


def _kit_pythonpath() -> str:
    return child_env()["PYTHONPATH"]
