"""The grading session's ipyparallel cluster: started once, reset between tests, restarted when
a test leaves an engine stuck, and always stopped (context manager plus an atexit backstop).

Alternatively the user's own cluster (``ipcluster start -n X``) is used through its client
connection file; then the grader never starts or stops anything.
"""

from __future__ import annotations

import atexit
import os
import time
from pathlib import Path

from grader import proctree


class SessionCluster:
    """A lazily started cluster of ``n`` engines with a private IPython directory."""

    def __init__(self, n: int, workdir: Path, connection_file: str | None = None,
                 timeout: float = 120.0):
        self.n, self.workdir, self.timeout = n, Path(workdir), timeout
        self.user_file = connection_file
        self._cluster = None
        self._client = None
        self.start_seconds: float | None = None
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
            raise RuntimeError(f"--ipp-connect {self.user_file}: no such connection file (start "
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
            raise RuntimeError(f"the ipyparallel cluster did not start ({exc}); see the logs in "
                               f"{ipython_dir}") from exc
        self._file = str(Path(cluster.profile_dir, "security",
                              f"ipcontroller-{cluster.cluster_id}-client.json"))
        self.start_seconds = time.perf_counter() - begin
        self.needs_restart = False

    def reset(self) -> None:
        """Clear the engines' namespaces between tests; mark the cluster stuck if they hang."""
        if self._client is None:
            return
        try:
            self._client[:].clear(block=True)
        except Exception:  # noqa: BLE001  (an engine that cannot even clear is stuck)
            self.needs_restart = True

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


def _is_cluster_process(proc) -> bool:
    try:
        cmd = " ".join(proc.cmdline())
    except Exception:  # noqa: BLE001
        return False
    return "ipyparallel" in cmd or "ipengine" in cmd or "ipcontroller" in cmd


def _kit_pythonpath() -> str:
    from grader.harness import child_env

    return child_env()["PYTHONPATH"]
