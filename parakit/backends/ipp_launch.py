"""How the session's ipyparallel cluster is launched and its processes known: the profile, the
engines on this machine, over a remote shell (ipyparallel's SSH launcher) or as one step of a
Slurm allocation, as another user (``--run-as``), and which processes are the cluster's."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import psutil

from parakit.controller.processes import observe, proctree
from parakit.controller.processes.hosts import Hosts, srun_shell


def remote_engines_config(config, hosts: Hosts, n: int, workdir: Path, env: dict) -> object:
    """Configure ``n`` engines on ``hosts``; return the engine launcher to use.

    ipyparallel's SSH launcher spreads the engines over the hosts as MPI ranks would be,
    reached with the remote shell, each started in the background by a remote shell that then
    returns; the profile (with the connection files) is in the work folder, which every host
    shares, so nothing is copied there. In a Slurm allocation that shell is a job step, and
    where Slurm tracks a step by its cgroup (``proctrack/cgroup``, most clusters) whatever it
    started ends with it: there the engines are one step of their own, in the foreground
    (:func:`srun_engines`)."""
    if hosts.slurm_job:
        nodefile = Path(workdir) / "engine-nodes"
        nodefile.write_text("\n".join(hosts.placement(n)) + "\n")
        config.SrunEngineSetLauncher.mpi_cmd = [srun_shell(), "--tasks", str(nodefile)]
        config.SrunEngineSetLauncher.environment = env
        return srun_engines()
    config.SSHEngineSetLauncher.engines = hosts.counts(n)
    config.SSHLauncher.ssh_cmd = list(hosts.remote_shell)
    config.SSHLauncher.scp_cmd = list(hosts.remote_copy)
    config.SSHLauncher.remote_python = sys.executable
    config.SSHLauncher.to_send = []
    # The launcher watches each engine through a remote shell that waits up to this long;
    # one waiter per engine for its whole life, never a new process of ours during a run
    # (it would look like something the graded code left behind).
    config.SSHLauncher.poll_seconds = 10**6
    config.SSHEngineLauncher.to_send = []
    config.SSHEngineSetLauncher.environment = env
    return "ssh"


def remote_engines(cluster, hosts: Hosts, n: int, since: float) -> list[observe.Proc]:
    """The engines' (host, pid) as their hosts name themselves: what the SSH launcher's remote
    shells echoed, or, for engines started as one Slurm step, the processes of ipyparallel's
    engine that carry this grading's tag on each host and started with the cluster, at
    ``since`` or later (found by probe before any graded code runs on them: a process left
    by an earlier run, however it names itself, is never one). ValueError unless there are
    exactly ``n``: what the grader would count as a worker must be what it started."""
    if not hosts.slurm_job:
        names = hosts.self_names()
        return sorted((names.get(launcher.hostname, launcher.hostname), int(launcher.pid))
                      for launcher_set in cluster.engines.values()
                      for launcher in getattr(launcher_set, "launchers", {}).values())
    found = hosts.probe_all("find", proctree.OWNER_VAR, str(os.getpid()))
    # the engine itself (PYTHON -m ipyparallel.engine ...), not the srun that started it,
    # whose command line names it too; started with the cluster (clocks: 1 s, as the probe's)
    engines = sorted((host, int(p["pid"])) for host, procs in found.items() for p in procs
                     if p.get("cmdline", "").split()[1:3] == ["-m", "ipyparallel.engine"]
                     and p.get("started", 0.0) >= since - 1.0)
    if len(engines) != n:
        raise ValueError(f"{len(engines)} engine processes found on the nodes for the {n} "
                         f"started ({', '.join(f'{h}:{p}' for h, p in engines) or 'none'})")
    return engines


# The cluster's own settings, read by the controller and the engines from the profile:
# - the schedulers as threads of the controller, and engines without a nanny process: 5
#   processes instead of 13, stopped in 0.7 s instead of 2.5 s (the kit signals engines itself,
#   for stack dumps, never through ipyparallel, which is the nanny's purpose);
# - a heartbeat every 0.25 s instead of every 3: an engine counts as registered at its first
#   heartbeat, so 4 engines are ready in 2.1 s instead of 6.8 s (3.6 s at one beat a second).
#   An engine is dropped after 40 missed beats: 10 s of silence, as with one beat a second
#   and ipyparallel's 10 misses. Measured: docs/benchmarks.md, "Feedback times".
_PROFILE = {"ipcontroller_config.py": "c.IPController.use_threads = True\n"
                                      "c.HeartMonitor.period = 250\n"
                                      "c.HeartMonitor.max_heartmonitor_misses = 40\n",
            "ipengine_config.py": "c.IPEngine.enable_nanny = False\n"}


def write_profile(profile: Path) -> None:
    profile.mkdir(parents=True, exist_ok=True)
    for name, text in _PROFILE.items():
        (profile / name).write_text(text)


def launched_pids(cluster) -> list[int]:
    """The processes ipyparallel's launchers started on this machine: the controller and each
    engine (or the remote shell that reaches it, or the one step that runs them all)."""
    launchers = [cluster.controller] + [launcher for engine_set in cluster.engines.values()
                                        for launcher in getattr(engine_set, "launchers",
                                                                {0: engine_set}).values()]
    return [launcher.pid for launcher in launchers
            if isinstance(getattr(launcher, "pid", None), int)]


def srun_engines() -> type:
    """ipyparallel's MPI engine launcher with ``parakit-srun-shell --tasks`` for mpiexec: the
    engines as one step of the Slurm allocation, each on its node of the placement, the step
    in the foreground for as long as they run. They are not MPI processes (no ``--mpi``)."""
    from ipyparallel.cluster.launcher import MPIEngineSetLauncher

    class SrunEngineSetLauncher(MPIEngineSetLauncher):
        @property
        def program(self) -> list[str]:
            return self.engine_cmd

    return SrunEngineSetLauncher


def engine_processes() -> list[int]:
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


def is_cluster_process(proc) -> bool:
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
