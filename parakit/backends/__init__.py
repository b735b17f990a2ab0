"""The backends, one module each behind one interface (``base.Backend``): ``mpi``, ``ipp``,
``pool`` and ``plain`` (serial functions). Grading and the bench both get theirs here."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from parakit.backends.base import Backend
from parakit.backends.ipp import Ipp
from parakit.backends.ipp_cluster import SessionCluster
from parakit.backends.mpi import Mpi
from parakit.backends.pool import Pool
from parakit.controller.processes.hosts import Hosts
from parakit.controller.session.backend import BackendError

__all__ = ["Backend", "BackendError", "session", "stop_all"]


def session(workers: int, workdir: Path, mpiexec: str | None = None,
            ipp_connect: str | None = None, run_as: tuple[int, int] | None = None,
            hosts: Hosts | None = None, say: Callable[[str], None] | None = None
            ) -> dict[str, Backend]:
    """Every backend of one session, by name; nothing starts until a run needs it.

    ``workers`` is the largest worker count (the cluster's size), ``workdir`` where the cluster
    keeps its files, ``mpiexec`` a launch command, ``ipp_connect`` the connection file of the
    user's own cluster, ``run_as`` the (uid, gid) graded code runs as, ``hosts`` where ranks
    and engines go (the pool and plain runs stay on this machine), ``say`` shows the user a
    line (the cluster starting, and ready).
    """
    hosts = hosts or Hosts()
    cluster = SessionCluster(workers, workdir, ipp_connect, run_as=run_as, hosts=hosts,
                             say=say)
    return {"mpi": Mpi(mpiexec, hosts), "ipp": Ipp(cluster), "pool": Pool(), "plain": Backend()}


def stop_all(backends: dict[str, Backend]) -> None:
    """Stop every backend (each sweeps what it started), then end the probes of the hosts."""
    for backend in backends.values():
        backend.stop()
    hosts = getattr(backends.get("mpi"), "hosts", None)
    if hosts is not None:
        hosts.close()
