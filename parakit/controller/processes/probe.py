"""What the controller asks a host about its processes, run on that host by the remote shell.

``python -m parakit.controller.processes.probe ACTION ...`` prints one JSON object after
``MARK``: the host's name for itself and the answer. It runs on a host of the cluster
(through ``ssh HOST``), outside every graded process, and reads that host's process table,
as ``psutil`` does here:

- ``find VAR VALUE``: the processes whose environment has ``VAR=VALUE`` (the kit tags every
  process it starts, and what they start inherits it): pid, parent, name, MPI rank (the
  launcher's ``PMI_RANK``), CPU seconds, command line, start (epoch seconds);
- ``new SINCE VAR VALUE...``: the processes of this user started at ``SINCE`` (epoch seconds)
  or later that carry one of the tags, or that are orphans (their parent is the host's init:
  what detached itself, with its environment emptied, ends there), as ``find`` describes them;
- ``killpids PID...``: end those processes, if they are this user's;
- ``cpu PID...``: CPU seconds of each process still there;
- ``signal SIGNAL VAR VALUE PID...``: send SIGNAL to those of the PIDs that are Python
  processes so tagged (stack dumps: a process without a handler would end);
- ``kill VAR VALUE``: end the processes so tagged (TERM, a short wait, KILL);
- ``shm SINCE``: remove the shared-memory files this user's processes left in the host's
  ``/dev/shm`` since ``SINCE`` (``parakit.controller.processes.shm``);
- ``serve``: answer such requests, one JSON list per line of stdin, until it closes (one
  remote shell per host for a whole grading, instead of one per question).

It imports only the standard library, psutil and ``parakit.controller.processes.shm``
(standard library only): it must run before anything else of the kit on a host that merely
shares the checkout.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys

import psutil

from parakit.controller.processes import shm
from parakit.controller.processes.cputime import cpu_seconds, times_of


def _tagged(var: str, value: str) -> list[psutil.Process]:
    me = os.getpid()
    found = []
    for proc in psutil.process_iter():
        if proc.pid == me:
            continue
        try:
            if proc.environ().get(var) == value:
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


def _cpu(proc: psutil.Process) -> float | None:
    return cpu_seconds(proc)


def _describe(proc: psutil.Process) -> dict:
    env = proc.environ()
    return {"pid": proc.pid, "ppid": proc.ppid(), "name": proc.name(),
            "rank": env.get("PMI_RANK") or env.get("OMPI_COMM_WORLD_RANK"),
            "cpu": _cpu(proc), "cmdline": " ".join(proc.cmdline())[:200],
            "started": proc.create_time()}


def _described(procs) -> list[dict]:
    out = []
    for proc in procs:
        try:
            out.append(_describe(proc))
        except (psutil.Error, OSError):
            continue
    return out


def find(var: str, value: str) -> list[dict]:
    return _described(_tagged(var, value))


def new(since: float, tags: dict[str, str]) -> list[dict]:
    me = psutil.Process()
    mine = {me.pid, *(p.pid for p in me.parents())}  # this probe and the shell that runs it
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.pid in mine or proc.uids().real != os.getuid() \
                    or proc.create_time() < since - 1.0:
                continue
            if proc.ppid() == 1 and _batch_system(proc):
                continue
            env = proc.environ()
            if proc.ppid() == 1 or any(env.get(var) == value for var, value in tags.items()):
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return _described(found)


def _batch_system(proc: psutil.Process) -> bool:
    """A job step's own daemon (Slurm's ``slurmstepd`` detaches from slurmd: init's child), as
    its program file says (a name can be set by any process, the executable cannot): with
    ``--hosts slurm`` every remote shell is a step, and where the grader runs as root it is
    this user's process."""
    try:
        return os.path.basename(proc.exe()).startswith("slurmstepd")  # Debian: slurmstepd-wlm
    except (psutil.Error, OSError):
        return False


def killpids(pids: list[int]) -> list[int]:
    procs = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            if proc.uids().real == os.getuid():
                procs.append(proc)
        except psutil.Error:
            continue
    return _end(procs)


def cpu(pids: list[int]) -> dict[str, list[float]]:
    """[CPU seconds, seconds waiting for a CPU] of each process still there."""
    return {str(pid): list(found) for pid, found in times_of(pids).items()}


def send(signum: int, var: str, value: str, pids: list[int]) -> list[int]:
    sent = []
    for proc in _tagged(var, value):
        try:
            if proc.pid in pids and proc.name().startswith(("python", "python3")):
                proc.send_signal(signum)
                sent.append(proc.pid)
        except psutil.Error:
            continue
    return sent


def kill(var: str, value: str) -> list[int]:
    return _end(_tagged(var, value))


def _end(procs: list[psutil.Process]) -> list[int]:
    for proc in procs:
        try:
            proc.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=1.0)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass
    return [p.pid for p in procs]


MARK = "parakit-probe "  # the start of an answer's line (a login shell may print others)


def serve() -> int:
    """Answer requests until stdin closes (``Hosts`` keeps one such probe per host for the
    whole grading): one JSON list ``[NONCE, ACTION, ARG...]`` per line in, one answer per line
    out, carrying the request's nonce (so that a line some other process wrote into the pipe
    beforehand is not taken for the answer)."""
    for line in sys.stdin:
        said: dict = {"host": socket.gethostname()}
        try:
            request = json.loads(line)
            said["nonce"] = str(request[0])
            said["answer"] = _answer(str(request[1]), [str(a) for a in request[2:]])
        except (ValueError, IndexError, KeyError, AttributeError, TypeError, OSError) as exc:
            said["error"] = f"{type(exc).__name__}: {exc}"  # the probe stays for the next
        print(MARK + json.dumps(said), flush=True)
    return 0


def _answer(action: str, args: list[str]) -> object:
    if action == "find":
        answer: object = find(args[0], args[1])
    elif action == "cpu":
        answer = cpu([int(a) for a in args])
    elif action == "signal":
        answer = send(getattr(signal, args[0]), args[1], args[2], [int(a) for a in args[3:]])
    elif action == "kill":
        answer = kill(args[0], args[1])
    elif action == "new":
        answer = new(float(args[0]), dict(zip(args[1::2], args[2::2], strict=True)))
    elif action == "shm":
        answer = shm.sweep(float(args[0]))
    elif action == "killpids":
        answer = killpids([int(a) for a in args])
    else:
        raise ValueError(f"unknown action {action}")
    return answer


def main(argv: list[str]) -> int:
    if argv == ["serve"]:
        return serve()
    try:
        answer = _answer(argv[0], argv[1:])
    except (ValueError, IndexError, AttributeError) as exc:
        print(f"probe: {exc}", file=sys.stderr)
        return 2
    print(MARK + json.dumps({"host": socket.gethostname(), "answer": answer}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
