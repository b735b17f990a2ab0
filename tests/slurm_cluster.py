"""A throwaway Slurm cluster on this machine, from Debian's packages: the kit's own tests
(the ``slurm`` fixture) and benchmarks grade on it. Also a command:

    python tests/slurm_cluster.py install              # Debian's packages, where missing (root)
    python tests/slurm_cluster.py up DIR [--nodes 3]   # prints: export SLURM_CONF=DIR/slurm.conf
    python tests/slurm_cluster.py down DIR

What runs, all as root, each started here in the foreground and stopped by its pid (written
to ``DIR/pids``): MariaDB on a loopback port with its data in DIR, ``slurmdbd`` on it (job
accounting: ``sacct`` is how submitit follows jobs, as on real clusters), ``munged`` on a
socket of its own in DIR (so that clusters side by side do not share one), ``slurmctld``, and
one ``slurmd`` per node (``slurmd -N nodeK``, each on a port of its own: several "nodes" on one
machine). With ``hosts=True`` (``up --separate-hosts``) each slurmd runs inside a simulated host
of its own (``tests/simcluster.py``: its hostname, /tmp, /dev/shm and process table), so that
a job's steps on node2 see themselves on node2, as across real machines. No systemd;
``proctrack/linuxproc`` (or ``up --proctrack cgroup``: each step a cgroup of the machine's v1
hierarchy, as most clusters track steps), ``task/none``. Every daemon carries
``PARAKIT_SLURM=DIR`` in its environment, and so do the job steps it starts: what outlives a
stop is found by it and ended.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from parakit.controller.processes import proctree

try:
    from tests import simcluster
except ImportError:  # run as a script: tests/ is on the path
    import simcluster

PACKAGES = {"slurmctld": "slurmctld", "slurmd": "slurmd", "sbatch": "slurm-client",
            "slurmdbd": "slurmdbd", "munged": "munge", "mariadbd": "mariadb-server"}
MARK = "PARAKIT_SLURM"  # in every daemon's environment, and its job steps'
SBIN = ("/usr/sbin", "/usr/bin", "/sbin", "/bin")
MUNGE_KEY = Path("/etc/munge/munge.key")


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path=os.pathsep.join(SBIN))


def missing() -> list[str]:
    """The Debian packages of the cluster that are not installed."""
    return sorted({pkg for cmd, pkg in PACKAGES.items() if _which(cmd) is None})


def unavailable() -> str:
    """'' where a cluster can be started here, else why not."""
    if not sys.platform.startswith("linux"):
        return "a Slurm test cluster needs Linux"
    if os.geteuid() != 0:
        return "a Slurm test cluster runs its daemons as root (run the tests as root, as CI does)"
    if missing():
        return (f"Slurm is not installed (Debian packages {' '.join(missing())}): "
                "python tests/slurm_cluster.py install")
    return ""


def install() -> str:
    """Install the missing packages with apt-get (root); '' or why it could not."""
    need = missing()
    if not need:
        return ""
    if os.geteuid() != 0 or _which("apt-get") is None:
        return f"cannot install {' '.join(need)}: needs root and apt-get"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "install", "-y", "-qq", *need],
                ["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *need]):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode == 0 and cmd[1] == "install":
            break
    return "" if not missing() else f"apt-get could not install {' '.join(missing())}: " \
        f"{done.stderr.strip()[-500:]}"


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class Cluster:
    """``nodes`` slurmd nodes of ``cpus`` CPUs each, in partition ``debug``, under ``root``."""

    def __init__(self, root: Path, nodes: int = 1, cpus: int | None = None,
                 memory_mb: int = 8000, hosts: bool = False, shared: tuple[Path, ...] = (),
                 proctrack: str = "linuxproc"):
        """``hosts``: each node a simulated host, which sees ``root`` and ``shared`` (they may
        be under /tmp) as this machine does. ``proctrack``: ``linuxproc`` (a step is its
        processes' parentage: a process that leaves it for init survives the step) or
        ``cgroup`` (a step is a cgroup, v1 here: everything in it ends with the step, as on
        most production clusters)."""
        self.root = Path(root).resolve()
        self.sim = None
        if hosts:  # the hosts' own files outside /tmp, which each host has its own of
            sim_root = Path(tempfile.mkdtemp(prefix="parakit-slurm-hosts-", dir="/var/tmp"))
            self.root.mkdir(parents=True, exist_ok=True)
            (self.root / "hosts").write_text(str(sim_root))
            self.sim = simcluster.SimCluster([f"node{k + 1}" for k in range(nodes)], sim_root,
                                             [self.root, *shared])
        self.nodes, self.cpus = nodes, cpus or os.cpu_count() or 1
        self.memory_mb, self.proctrack = memory_mb, proctrack
        self.conf = self.root / "slurm.conf"
        self.names = [f"node{k + 1}" for k in range(nodes)]
        self.procs: list[subprocess.Popen] = []

    @property
    def env(self) -> dict[str, str]:
        """What a client (sbatch, squeue, submitit) needs to reach this cluster."""
        return {"SLURM_CONF": str(self.conf)}

    # -- start -------------------------------------------------------------------------
    def start(self, timeout: float = 60, attempts: int = 3) -> Cluster:
        """Start every daemon; again on fresh ports (up to ``attempts`` times) if a port chosen
        free was taken before its daemon bound it (by another cluster or test starting beside
        this one)."""
        why = unavailable()
        if why:
            raise RuntimeError(why)
        for attempt in range(1, attempts + 1):
            for sub in ("log", "state", "spool", "db"):
                (self.root / sub).mkdir(parents=True, exist_ok=True)
            for old in (self.root / "log").iterdir():  # this attempt's logs only
                old.unlink()
            try:
                self._start(timeout)
                return self
            except BaseException as exc:
                self.stop()
                if not (isinstance(exc, RuntimeError) and attempt < attempts
                        and self._port_was_taken()):
                    raise
        return self

    def _port_was_taken(self) -> bool:
        return any("Address already in use" in log.read_text(errors="replace")
                   for log in (self.root / "log").iterdir() if log.is_file())

    def _start(self, timeout: float) -> None:
        mysql, dbd, ctld, *node_ports = _free_ports(3 + self.nodes)
        self._write_configs(mysql, dbd, ctld, node_ports)
        db = self.root / "db"
        if not (db / "mysql").exists():
            _run(["mariadb-install-db", "--no-defaults", f"--datadir={db}", "--user=root",
                  "--auth-root-authentication-method=normal", "--skip-test-db"])
        self._daemon("mariadb", ["mariadbd", "--no-defaults", f"--datadir={db}", "--user=root",
                                 f"--socket={self.root / 'mysql.sock'}", "--bind-address=127.0.0.1",
                                 f"--port={mysql}", "--skip-name-resolve",
                                 "--innodb-buffer-pool-size=32M",
                                 f"--pid-file={self.root / 'mysql.pid'}"])
        self._wait(lambda: _listening(mysql), timeout, "MariaDB")
        self._daemon("munged", ["munged", "-F", "--force", f"--socket={self.root / 'munge.sock'}",
                                f"--pid-file={self.root / 'munged.pid'}",
                                f"--seed-file={self.root / 'munge.seed'}",
                                f"--key-file={self._key()}",
                                f"--log-file={self.root / 'log' / 'munged.log'}"])
        self._wait(lambda: (self.root / "munge.sock").exists(), timeout, "munged")
        self._daemon("slurmdbd", ["slurmdbd", "-D"])
        self._wait(lambda: _listening(dbd), timeout, "slurmdbd")
        self._daemon("slurmctld", ["slurmctld", "-D", "-i"])
        self._wait(lambda: self.client(["scontrol", "ping"]).returncode == 0, timeout,
                   "slurmctld")
        if self.sim is not None:
            self.sim.start()
        for name in self.names:
            slurmd = [_which("slurmd") or "slurmd", "-D", "-N", name]
            if self.sim is not None:  # the daemon, and every step it starts, on its own host
                slurmd = ["nsenter", "-t", str(self.sim.anchors[name].pid), "-u", "-m", "-p",
                          "--", *slurmd]
            self._daemon(f"slurmd-{name}", slurmd)
        self._wait(lambda: self.idle_nodes() == self.nodes, timeout, "the slurmd nodes")

    def _key(self) -> Path:
        if not MUNGE_KEY.exists():
            _run(["mungekey", "--create", "--keyfile", str(MUNGE_KEY)])
        return MUNGE_KEY

    def _write_configs(self, mysql: int, dbd: int, ctld: int, node_ports: list[int]) -> None:
        r, munge = self.root, self.root / "munge.sock"
        dbd_conf = r / "slurmdbd.conf"  # slurmdbd reads it beside SLURM_CONF; root only (600)
        dbd_conf.write_text("\n".join([
            "AuthType=auth/munge", f"AuthInfo=socket={munge}", "DbdHost=localhost",
            "DbdAddr=127.0.0.1", f"DbdPort={dbd}", "SlurmUser=root",
            "StorageType=accounting_storage/mysql", "StorageHost=127.0.0.1",
            f"StoragePort={mysql}", "StorageUser=root", "StorageLoc=slurm_acct",
            f"LogFile={r / 'log' / 'slurmdbd.log'}", f"PidFile={r / 'slurmdbd.pid'}", ""]))
        dbd_conf.chmod(0o600)
        host = socket.gethostname()
        lines = [
            "ClusterName=parakit", f"SlurmctldHost={host}(127.0.0.1)", f"SlurmctldPort={ctld}",
            "SlurmUser=root", "SlurmdUser=root", "AuthType=auth/munge",
            f"AuthInfo=socket={munge}", "CredType=cred/munge",
            f"ProctrackType=proctrack/{self.proctrack}", "TaskPlugin=task/none",
            "MpiDefault=none",
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_CPU",
            "SchedulerType=sched/backfill", f"StateSaveLocation={r / 'state'}",
            f"SlurmdSpoolDir={r / 'spool' / '%n'}", f"SlurmctldPidFile={r / 'slurmctld.pid'}",
            f"SlurmdPidFile={r / 'slurmd-%n.pid'}",
            f"SlurmctldLogFile={r / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={r / 'log' / 'slurmd-%n.log'}",
            "AccountingStorageType=accounting_storage/slurmdbd",
            "AccountingStorageHost=127.0.0.1", f"AccountingStoragePort={dbd}",
            f"AccountingStoragePass={munge}",  # for slurmdbd: the munge socket to use
            "JobAcctGatherType=jobacct_gather/none", "ReturnToService=2",
            "SlurmdParameters=config_overrides",  # nodes declare CPUs the machine may lack
            "MinJobAge=60", "KillWait=5", "InactiveLimit=0", "MessageTimeout=30",
        ]
        for name, port in zip(self.names, node_ports, strict=True):
            lines.append(f"NodeName={name} NodeHostname={name if self.sim else host} "
                         f"NodeAddr=127.0.0.1 Port={port} "
                         f"CPUs={self.cpus} RealMemory={self.memory_mb} State=UNKNOWN")
        lines.append("PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP")
        self.conf.write_text("\n".join(lines) + "\n")
        # read beside slurm.conf: the cgroup plugins' settings (the v1 hierarchy this machine
        # mounts; nothing constrained, only tracked)
        (r / "cgroup.conf").write_text("CgroupPlugin=cgroup/v1\nCgroupMountpoint=/sys/fs/cgroup\n"
                                       "ConstrainCores=no\nConstrainRAMSpace=no\n")

    def _daemon(self, name: str, cmd: list[str]) -> None:
        log = open(self.root / "log" / f"{name}.out", "ab")  # noqa: SIM115  (the daemon's)
        env = {**os.environ, **self.env, MARK: str(self.root)}
        proc = subprocess.Popen([_which(cmd[0]) or cmd[0], *cmd[1:]], stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                cwd=self.root, start_new_session=True)
        log.close()
        self.procs.append(proc)
        with open(self.root / "pids", "a") as f:
            f.write(f"{proc.pid} {name}\n")

    def _wait(self, ready, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dead = [p for p in self.procs if p.poll() is not None]
            if dead:
                raise RuntimeError(f"{what}: a daemon ended at start ({dead[0].args[0]}, exit "
                                   f"{dead[0].returncode}); see {self.root / 'log'}")
            if ready():
                return
            time.sleep(0.2)
        raise RuntimeError(f"{what} not ready within {timeout:g} s; see {self.root / 'log'}")

    # -- use ---------------------------------------------------------------------------
    def client(self, cmd: list[str], timeout: float = 60,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """A Slurm client command against this cluster (``env``: more variables)."""
        return subprocess.run(cmd, env={**os.environ, **self.env, **(env or {})},
                              capture_output=True, text=True, timeout=timeout)

    def batch(self, command: str, *sbatch_args: str, timeout: float = 300) -> tuple[str, str]:
        """``command`` run as a batch job (``sbatch --wrap``) and waited for: its final state
        (COMPLETED, FAILED...) and its output. Polled here: ``sbatch --wait`` looks every 30 s
        or so."""
        self._batches = getattr(self, "_batches", 0) + 1
        out = self.root / f"batch-{self._batches}.out"
        sub = self.client(["sbatch", "--parsable", "-o", str(out), *sbatch_args, "--wrap",
                           command])
        if sub.returncode:
            raise RuntimeError(f"sbatch: {sub.stderr.strip()}")
        job, state = sub.stdout.strip().split(";")[0], ""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            shown = self.client(["scontrol", "-o", "show", "job", job]).stdout
            state = next((w.split("=", 1)[1] for w in shown.split() if w.startswith("JobState=")),
                         "")
            if state and state not in ("PENDING", "RUNNING", "COMPLETING", "CONFIGURING"):
                break
            time.sleep(0.3)
        else:
            self.client(["scancel", job])
            state = f"TIMEOUT after {timeout:g} s (cancelled)"
        return state, out.read_text() if out.exists() else ""

    def idle_nodes(self) -> int:
        out = self.client(["sinfo", "-h", "-N", "-o", "%N %t"]).stdout.split("\n")
        return sum(1 for line in out if line.split()[-1:] == ["idle"])

    def jobs(self) -> list[str]:
        """The jobs the controller still knows as pending or running."""
        return self.client(["squeue", "-h", "-o", "%i %T"]).stdout.split("\n")[:-1]

    # -- stop --------------------------------------------------------------------------
    def stop(self) -> None:
        """Cancel every job, then end each daemon by its pid, and the job steps left (they
        are reparented to init)."""
        if self.procs and all(p.poll() is None for p in self.procs):
            _cancel_all(self.conf)
        _end([proc.pid for proc in self.procs])
        for proc in self.procs:
            proc.wait()
        self.procs = []
        (self.root / "pids").unlink(missing_ok=True)
        _end_left(self.root)
        if self.proctrack == "cgroup":
            self._remove_cgroups()
        if self.sim is not None:
            self.sim.stop()
            shutil.rmtree(self.sim.root, ignore_errors=True)

    def _remove_cgroups(self) -> None:
        """The nodes' cgroups (``slurm_NODE`` in each v1 hierarchy, as slurmd names them where
        several run on one machine), deepest first, once empty: the daemons leave them."""
        for name in self.names:
            for top in Path("/sys/fs/cgroup").glob(f"*/slurm_{name}"):
                for d in sorted((p for p in top.rglob("*") if p.is_dir()),
                                key=lambda p: -len(p.parts)) + [top]:
                    try:
                        d.rmdir()
                    except OSError:
                        pass  # processes still in it, or not ours to remove


def _cancel_all(conf: Path, timeout: float = 5) -> None:
    """Cancel every job of the cluster and wait (bounded) until none is pending or running
    (those completing are ended with the daemons)."""
    env = {**os.environ, "SLURM_CONF": str(conf)}

    def jobs() -> str:
        return subprocess.run(["squeue", "-h", "-o", "%i", "-t", "PD,R,CF,S,RQ"], env=env,
                              capture_output=True, text=True, timeout=30).stdout.strip()

    try:
        subprocess.run(["scancel", "--full", "--user", "root"], env=env, capture_output=True,
                       timeout=30)
        deadline = time.monotonic() + timeout
        while jobs() and time.monotonic() < deadline:
            time.sleep(0.3)
    except (OSError, subprocess.SubprocessError):
        pass  # a controller already gone: the job steps are ended below


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _run(cmd: list[str]) -> None:
    done = subprocess.run([_which(cmd[0]) or cmd[0], *cmd[1:]], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd)}: {done.stderr.strip()[-500:]}")


def _end(pids: list[int], grace: float = 10) -> None:
    """TERM to all at once (a daemon takes 1-3 s to stop), KILL to those left after ``grace``."""
    procs = []
    for pid in pids:
        try:
            procs.append(psutil.Process(pid))
        except psutil.Error:
            pass
    proctree.terminate(procs, grace)


def remains(root: Path) -> list[psutil.Process]:
    """What is left of the cluster under ``root``: processes carrying its mark, and job steps
    (``slurmstepd`` clears its environment, but keeps the node's log in ``root`` open), each
    with every process below it."""
    root_text = str(Path(root).resolve())
    found: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter():
        try:
            ours = proc.environ().get(MARK) == root_text or any(
                f.path.startswith(root_text + os.sep) for f in proc.open_files())
            if ours:
                for each in [proc, *proc.children(recursive=True)]:
                    found[each.pid] = each
        except psutil.Error:
            continue
    found.pop(os.getpid(), None)
    return list(found.values())


def _end_left(root: Path) -> None:
    proctree.terminate(remains(root), grace=0.2)


def down(root: Path) -> None:
    """Stop a cluster started by ``up`` in another process: by the pids it wrote."""
    root = root.resolve()
    pids = root / "pids"
    if pids.exists():
        _cancel_all(root / "slurm.conf")
        _end([int(line.split()[0]) for line in pids.read_text().splitlines()])
        pids.unlink()
    _end_left(root)
    if (root / "hosts").is_file():  # simulated hosts: end their inits, remove their files
        sim_root = Path((root / "hosts").read_text())
        for pidfile in (sim_root / "hosts").glob("*.pid"):
            try:
                init = psutil.Process(int(pidfile.read_text()))
                if simcluster.MARKER in init.cmdline():
                    init.kill()
            except (psutil.Error, ValueError):
                pass
        shutil.rmtree(sim_root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    sub.add_parser("install")
    up = sub.add_parser("up")
    up.add_argument("dir", type=Path)
    up.add_argument("--nodes", type=int, default=1)
    up.add_argument("--cpus", type=int, default=None)
    up.add_argument("--separate-hosts", action="store_true",
                    help="each node a simulated host (needs root; stopped with the cluster)")
    up.add_argument("--proctrack", choices=("linuxproc", "cgroup"), default="linuxproc",
                    help="how Slurm tracks a step's processes (cgroup: as most clusters)")
    sub.add_parser("down").add_argument("dir", type=Path)
    args = parser.parse_args(argv)
    if args.what == "install":
        why = install()
        print(why or "Slurm is installed", file=sys.stderr if why else sys.stdout)
        return 1 if why else 0
    if args.what == "down":
        down(args.dir)
        return 0
    cluster = Cluster(args.dir, args.nodes, args.cpus, hosts=args.separate_hosts,
                      proctrack=args.proctrack)
    try:
        cluster.start()
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 1
    # the daemons stay when this command ends (started in sessions of their own)
    print(f"export SLURM_CONF={cluster.conf}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
