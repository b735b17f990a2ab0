"""A simulated cluster on one machine, for the ``multihost`` tests.

Each "host" is a set of Linux namespaces around a small init process:

- UTS: its own hostname (``MPI.Get_processor_name()`` and ``socket.gethostname()`` say it);
- PID: its own process table, so pids repeat across hosts as on a real cluster, and an orphan
  stays on its host (under its init) instead of coming back to the grader;
- mount: its own ``/tmp`` (an empty tmpfs; what the cluster shares stays visible, even a
  checkout under /tmp), its own ``/dev/shm`` and ``/proc``, and an ``/etc/hosts`` that names
  every simulated host and this machine, each at an address of its own on loopback (this
  machine 127.0.0.1, the hosts 127.0.0.2, 127.0.0.3...: MPICH's launcher takes a host whose
  address is its own host's for itself, and starts its ranks there without the remote shell).

The network namespace is this machine's: hosts reach each other, and the machine, over
loopback only. ``rsh`` in the cluster's folder stands in for ``ssh HOST COMMAND``: it runs the
command on that host with ``nsenter``; ``rcp`` stands in for ``scp``. Everything else (the
checkout, the venv, the shared work folder) is the machine's file system, as a cluster's shared
home would be. Making namespaces needs root; :func:`unavailable` says why it cannot be done.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

KIT = Path(__file__).resolve().parent.parent
MARKER = "parakit-simulated-host"  # on the command line of every host's init: found if left

# PID 1 of a simulated host: name it, give it its own /tmp and /etc/hosts, say it is ready, and
# reap orphans until it is killed (a PID namespace ends with its init).
_INIT = r"""
import os, socket, subprocess, sys, time
marker, name, hosts, ready, keep, *shared = sys.argv[1:]
socket.sethostname(name)
def mount(*args):
    subprocess.run(["mount", *args], check=True)
# What the cluster shares but lives under /tmp (a checkout there) stays visible at its path.
under_tmp = [p for p in shared if p == "/tmp" or p.startswith("/tmp/")]
for i, path in enumerate(under_tmp):
    os.makedirs(f"{keep}/{i}", exist_ok=True)
    mount("--bind", path, f"{keep}/{i}")
mount("-t", "tmpfs", "tmpfs", "/tmp")
mount("-t", "tmpfs", "tmpfs", "/dev/shm")  # a host's shared memory is its own
for i, path in enumerate(under_tmp):
    os.makedirs(path, exist_ok=True)
    mount("--bind", f"{keep}/{i}", path)
mount("--bind", hosts, "/etc/hosts")
open(ready, "w").close()
while True:
    try:
        os.wait()
    except ChildProcessError:
        time.sleep(0.2)
"""

# ssh HOST COMMAND... -> the command run by /bin/sh on HOST (options before HOST are ignored,
# as are "--" before the command: ssh and its callers pass both).
_RSH = """#!/bin/sh
while [ $# -gt 0 ]; do case "$1" in -*) shift;; *) break;; esac; done
host=$1; shift
[ "$1" = "--" ] && shift
pidfile="{hosts}/$host.pid"
# The hosts share one kernel, so UCX (the MPICH wheel's transport) would take them for one
# node and map memory across PID namespaces; between real hosts it uses the network: TCP.
export UCX_TLS=tcp,self
if [ ! -f "$pidfile" ]; then echo "rsh: no simulated host $host" >&2; exit 255; fi
exec nsenter -t "$(cat "$pidfile")" -u -m -p -- /bin/sh -c "$*"
"""


# scp [options] SRC DST with HOST:PATH operands -> cp: the hosts share this machine's files but
# /tmp (nothing the kit copies lives there).
_RCP = """#!/bin/sh
while [ $# -gt 2 ]; do shift; done
exec cp "${1#*:}" "${2#*:}"
"""


def _pid_namespace(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def unavailable() -> str:
    """Why namespaces cannot be made here ('' when they can)."""
    if not sys.platform.startswith("linux"):
        return "simulated hosts need Linux namespaces"
    if os.geteuid() != 0:
        return "simulated hosts need root (unshare --pid --mount --uts)"
    missing = [tool for tool in ("unshare", "nsenter", "mount") if shutil.which(tool) is None]
    if missing:
        return f"simulated hosts need {', '.join(missing)} (util-linux)"
    probe = subprocess.run(["unshare", "--uts", "--mount", "--pid", "--fork", "--mount-proc",
                            "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"cannot make namespaces here: {probe.stderr.strip()}"
    return ""


class SimCluster:
    """Hosts ``names``, with their files in ``root`` (a folder outside /tmp: the hosts share it)."""

    def __init__(self, names: list[str], root: Path, shared: list[Path] = ()):
        """``shared``: paths the hosts see as this machine does even under /tmp (a cluster's
        shared home); the kit's checkout and Python are always among them."""
        self.names, self.root = list(names), Path(root)
        self.shared = [str(Path(p).resolve()) for p in
                       [*shared, KIT, Path(sys.prefix), Path(sys.base_prefix)]]
        self.rsh, self.rcp = self.root / "rsh", self.root / "rcp"
        self.anchors: dict[str, psutil.Process] = {}  # host -> its init (this machine's pid)
        self._unshare: list[subprocess.Popen] = []

    def start(self) -> SimCluster:
        hosts_dir = self.root / "hosts"
        hosts_dir.mkdir(parents=True, exist_ok=True)
        me = socket.gethostname()
        table = f"127.0.0.1 localhost\n127.0.0.1 {me}\n" + "".join(
            f"127.0.0.{k + 2} {n}\n" for k, n in enumerate(self.names))
        for name in self.names:
            (hosts_dir / f"{name}.hosts").write_text(table)
            ready = hosts_dir / f"{name}.ready"
            ready.unlink(missing_ok=True)
            proc = subprocess.Popen(
                ["unshare", "--uts", "--mount", "--pid", "--fork", "--mount-proc",
                 "--propagation", "private", sys.executable, "-c", _INIT, MARKER, name,
                 str(hosts_dir / f"{name}.hosts"), str(ready), str(self.root / "keep" / name),
                 *self.shared],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True)
            self._unshare.append(proc)
            deadline = time.monotonic() + 20
            while not ready.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"simulated host {name} did not start")
                time.sleep(0.02)
            init = psutil.Process(proc.pid).children()[0]
            self.anchors[name] = init
            (hosts_dir / f"{name}.pid").write_text(str(init.pid))
        self.rsh.write_text(_RSH.format(hosts=hosts_dir))
        self.rcp.write_text(_RCP)
        for script in (self.rsh, self.rcp):
            script.chmod(0o755)
        return self

    def run(self, host: str, command: str, **kwargs) -> subprocess.CompletedProcess:
        """``command`` run by the shell on ``host``, as ssh would."""
        return subprocess.run([str(self.rsh), host, command], capture_output=True, text=True,
                              **kwargs)

    def processes(self, host: str) -> list[psutil.Process]:
        """Every process on ``host`` but its init, in this machine's view: those in the host's
        PID namespace (started through ``rsh`` or left there as orphans)."""
        init = self.anchors[host]
        ns = _pid_namespace(init.pid)
        found = []
        for proc in psutil.process_iter():
            if proc.pid != init.pid and ns is not None and _pid_namespace(proc.pid) == ns:
                found.append(proc)
        return found

    def stop(self) -> None:
        """End every host: killing a PID namespace's init ends all in it."""
        for init in self.anchors.values():
            try:
                init.send_signal(signal.SIGKILL)
            except psutil.Error:
                pass
        for proc in self._unshare:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.anchors.clear()

    def __enter__(self) -> SimCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
