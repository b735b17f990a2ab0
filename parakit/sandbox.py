"""One sandbox per grading, from bubblewrap (``bwrap``, a Debian and Ubuntu package).

A grading (one ``pytest grader`` run and everything it starts) gets its own view of the machine:

- its own process view (a PID namespace with a fresh ``/proc``): graded code cannot see, signal
  or find the job folders of another grading by its processes' command lines;
- its own ``/tmp`` and ``/dev/shm`` (empty memory file systems that vanish with it): the job
  folders, MPICH's shared memory and whatever graded code leaves there go with the sandbox;
- the whole file system read-only, except the folders it is given to write (its reports, its
  work folder); the folder holding other gradings' reports is hidden;
- a session of its own (no controlling terminal to type into) and, unless graded code must be
  run as another user (``--run-as`` needs root's privileges), no capabilities: root inside
  cannot remount what it was given read-only.

``python -m parakit.sandbox [--write DIR]... -- COMMAND...`` runs a command so, for CI
wrappers; ``parakit grade`` wraps every grading. Where bwrap is missing or the kernel refuses
unprivileged namespaces, :func:`unavailable` says why, and gradings run unsandboxed (what is
lost then: docs/robustness.md).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from parakit import KIT_ROOT

BWRAP = "bwrap"


@lru_cache(maxsize=1)
def unavailable() -> str:
    """'' if a sandbox can be made here, else the reason (said once, in full)."""
    if not sys.platform.startswith("linux"):
        return f"no sandbox on {sys.platform}: bubblewrap needs Linux namespaces"
    path = shutil.which(BWRAP)
    if path is None:
        return ("no sandbox: bubblewrap is not installed (apt-get install bubblewrap, or your "
                "distribution's package)")
    trial = subprocess.run(wrap(["true"], hide=()), capture_output=True, text=True)
    if trial.returncode != 0:
        return ("no sandbox: bubblewrap cannot make namespaces here "
                f"({trial.stderr.strip() or f'exit {trial.returncode}'}); the kernel may "
                "forbid unprivileged user namespaces, or a container may forbid them")
    return ""


Folder = str | os.PathLike


def wrap(command: Sequence[str], write: Sequence[Folder] = (), read: Sequence[Folder] = (),
         hide: Sequence[Folder] = (), privileged: bool = False) -> list[str]:
    """``command`` run in a sandbox that may write only to ``write`` (and its own /tmp and
    /dev/shm). ``read``: folders under
    /tmp it may read (they would be hidden by its own /tmp). ``hide``: folders replaced by
    empty ones (other gradings' reports). ``privileged``: keep root's capabilities (for
    ``--run-as``)."""
    argv = [BWRAP, "--die-with-parent", "--new-session", "--unshare-pid", "--as-pid-1",
            "--unshare-ipc",
            "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
            "--tmpfs", "/tmp", "--tmpfs", "/dev/shm",
            # the home folder is read-only: IPython's and matplotlib's own folders in /tmp
            "--setenv", "IPYTHONDIR", "/tmp/ipython", "--setenv", "MPLCONFIGDIR", "/tmp/mpl",
            "--unsetenv", "TMPDIR"]  # its own /tmp is the temporary folder
    for folder in [*_under_private(), *read]:
        folder = os.fspath(Path(folder).resolve())
        argv += ["--ro-bind", folder, folder]
    # after those: a hidden folder inside them (the kit's reference/ in a checkout under /tmp)
    # is covered, not uncovered again
    for folder in hide:
        argv += ["--tmpfs", os.fspath(Path(folder).resolve())]
    for folder in write:
        folder = os.fspath(Path(folder).resolve())
        argv += ["--bind", folder, folder]
    if not privileged and os.geteuid() == 0:
        argv += ["--cap-drop", "ALL"]
    return [*argv, "--", *command]


def _under_private() -> list[Path]:
    """The kit and the Python running it, where they live in what the sandbox makes its own
    (/tmp, /dev/shm: a clone and its venv in /tmp): seen read-only again inside."""
    private = [Path("/tmp").resolve(), Path("/dev/shm")]
    places = {KIT_ROOT.resolve(), Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve(),
              Path(sys.executable).resolve().parent}
    return sorted(p for p in places if any(p.is_relative_to(d) for d in private))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m parakit.sandbox",
        description="Run a command (a grading) in a sandbox of its own: its own processes, "
                    "/tmp and /dev/shm; the file system read-only but for --write folders.")
    parser.add_argument("--write", action="append", default=[], metavar="DIR",
                        help="a folder the command may write to (repeat); created if missing")
    parser.add_argument("--read", action="append", default=[], metavar="DIR",
                        help="a folder under /tmp the command may read (repeat): the sandbox's "
                             "own /tmp hides the machine's")
    parser.add_argument("--privileged", action="store_true",
                        help="keep root's capabilities (for pytest grader --run-as USER)")
    parser.add_argument("--required", action="store_true",
                        help="fail if no sandbox can be made, instead of running without one")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ARGS...")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given: python -m parakit.sandbox [--write DIR] -- COMMAND")
    why = unavailable()
    if why:
        print(f"parakit.sandbox: {why}" + ("" if args.required else "; running without one"),
              file=sys.stderr, flush=True)
        if args.required:
            return 2
        return subprocess.call(command)
    for folder in args.write:
        Path(folder).mkdir(parents=True, exist_ok=True)
    results = KIT_ROOT / "grader-results"  # pytest grader's pictures: under the kit
    results.mkdir(exist_ok=True)
    return subprocess.call(wrap(command, [*args.write, results], read=args.read,
                                privileged=args.privileged))


if __name__ == "__main__":
    sys.exit(main())
