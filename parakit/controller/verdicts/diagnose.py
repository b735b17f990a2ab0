"""What went wrong in a run that did not return, in a student's words: where each process of a
hung run was (its stack dump), why a process died (MPICH's and POSIX's clues), which stub a
program died in. Everything here reads text that graded code could have written, so it only
quotes: source lines of the graded package, never other files."""

from __future__ import annotations

import re
import signal
from pathlib import Path

from parakit.controller.processes.launch import Child
from parakit.controller.processes.observe import HOST
from parakit.controller.session.runtime import Target, read_job_file

HARNESS = Path(__file__).resolve().parents[2]  # parakit/: the runner and what it imports
_FRAME = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+) in (?P<func>\S+)')


def read_stacks(jobdir: Path, target: Target) -> str:
    """One line per process that dumped its stack: where it was, in the graded code if possible.

    faulthandler prints the innermost frame first; we name the first frame inside the graded
    package (with its source line), else the innermost frame.
    """
    lines = []
    for path in sorted(jobdir.glob("stack-*.txt")):
        text = read_job_file(path).splitlines()
        if len(text) < 2:
            continue
        label, frames = text[0], [m for m in map(_FRAME.search, text[1:]) if m]
        host = path.stem.removeprefix("stack-").rpartition("-")[0]
        if host and host != HOST:
            label += f" on {host}"
        if not frames:
            continue
        inside = [m for m in frames if Path(m["file"]).resolve().is_relative_to(target.directory)]
        m = (inside or frames)[0]
        where = f"{_display_path(m['file'], target)}:{m['line']} in {m['func']}"
        harness = [f for f in frames if Path(f["file"]).resolve().is_relative_to(HARNESS)]
        if not inside and harness:
            # Not the student's line: a rank that had returned (or not yet called) waits here.
            h = harness[0]
            where = f"{h['file']}:{h['line']} in {h['func']}"
            lines.append(f"  {label}: not in your code, in the grader's harness ({where}): it "
                         "had returned from your function, or had not called it yet; look at "
                         "the other processes")
            continue
        # Source lines of the graded package only: a stack file is written by graded code, and
        # could name any file the grader can read (the hidden tests).
        source = _source_line(m["file"], int(m["line"])) if inside else ""
        lines.append(f"  {label}: {where}" + (f": {source}" if source else ""))
    return "\n".join(lines)


def _display_path(file: str, target: Target) -> str:
    path = Path(file).resolve()
    if path.is_relative_to(target.directory):
        return f"{target.display}/{path.relative_to(target.directory)}"
    return file


def _source_line(file: str, line: int) -> str:
    try:
        return read_job_file(Path(file)).splitlines()[line - 1].strip()[:300]
    except IndexError:
        return ""


def output_section(child: Child) -> str:
    """The tails of a run's stdout and stderr, headed, for a failure's details."""
    parts = []
    for name in ("stdout", "stderr"):
        text = child.output(name).strip()
        if text:
            parts.append(f"--- {name} of the graded run (last lines) ---\n{text}")
    return "\n".join(parts)


_SIGNALS = {signal.SIGSEGV: "a segmentation fault", signal.SIGKILL: "SIGKILL",
            signal.SIGXCPU: "the CPU time limit", signal.SIGABRT: "an abort (SIGABRT)",
            signal.SIGBUS: "a bus error"}
ABORT = re.compile(r"rank (?P<rank>\d+) in comm \d+\): application called MPI_Abort\(\S+, "
                    r"(?P<code>-?\d+)\)")
_EXIT_STRING = re.compile(r"EXIT STRING: (?P<what>.+?) \(signal (?P<signal>\d+)\)")


def describe_death(code: int, output: str, target: Target, cpu: int, mpi: bool) -> str:
    """Why a child ended without results, from its exit ``code`` and ``output``; ``cpu`` is
    the CPU limit (s), ``mpi`` whether it ran under mpiexec."""
    where = _crash_site(output, target)
    if m := ABORT.search(output):
        return f"rank {m['rank']} called MPI_Abort (error code {m['code']}){where}"
    if m := _EXIT_STRING.search(output):
        sig = int(m["signal"])
        if sig == signal.SIGXCPU:
            return f"a rank exceeded the CPU time limit of {cpu} s{where}"
        if sig == signal.SIGKILL:  # mpiexec kills the other ranks when one exits early
            return ("a rank ended without returning (sys.exit, os._exit, or killed with SIGKILL, "
                    "e.g. out of memory); the other ranks were stopped")
        return f"a rank was killed by {_SIGNALS.get(sig, m['what'])} (signal {sig}){where}"
    if code < 0 and -code == signal.SIGXCPU:
        return f"the process exceeded the CPU time limit of {cpu} s{where}"
    if code < 0:
        return f"the process was killed by {_SIGNALS.get(-code, f'signal {-code}')}{where}"
    if mpi:
        return (f"a rank exited with status {code} without returning (sys.exit, os._exit "
                "or a crash?); the other ranks were stopped")
    return f"the process running it exited with status {code} before sending back a result"


def _crash_site(output: str, target: Target) -> str:
    """' at student/x.py:12 in f' from the stack Python prints on a fatal error, or ''."""
    if "Fatal Python error" not in output:
        return ""
    for m in map(_FRAME.search, output[output.index("Fatal Python error"):].splitlines()):
        if m and Path(m["file"]).resolve().is_relative_to(target.directory):
            return f" at {_display_path(m['file'], target)}:{m['line']} in {m['func']}"
    return ""


def stub_in_traceback(stderr: str, target: Target) -> str:
    """``"student/hello.py greeting"`` when a program died of the stub's NotImplementedError."""
    if "NotImplementedError" not in stderr:
        return ""
    frames = [m for m in map(_TB_FRAME.search, stderr.splitlines()) if m
              and Path(m["file"]).resolve().is_relative_to(target.directory)]
    if not frames:
        return ""
    # Several ranks' tracebacks may interleave on stderr: the innermost frame of a function,
    # not a module's top level, names the stub.
    inner = [m for m in frames if m["func"] != "<module>"] or frames
    return f"{_display_path(inner[-1]['file'], target)} {inner[-1]['func']}"


_TB_FRAME = re.compile(r'File "(?P<file>[^"]+)", line \d+, in (?P<func>\S+)')
