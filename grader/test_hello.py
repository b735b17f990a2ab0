"""Exercise 1: hello MPI, run as a program and called as a function, at every process count."""

from __future__ import annotations

import re
import socket

import pytest

from parakit.controller.checks import fail, require_ok

LINE = re.compile(r"^Hello from (?P<host>\S+)\. (?P<rank>\d+) of (?P<size>\d+)$")
HOSTS = {socket.gethostname(), socket.gethostname().split(".")[0], socket.getfqdn()}


def _check_greetings(lines: list[str], workers: int, context: str) -> None:
    """Every rank exactly once, the right size, this host's processor name."""
    seen: dict[int, int] = {}
    for line in lines:
        m = LINE.match(line.strip())
        if not m:
            fail(f"{context}: unexpected line {line.strip()!r}; every line must read "
                 f"'Hello from <processor>. <rank> of <size>'")
        rank, size = int(m["rank"]), int(m["size"])
        if size != workers:
            fail(f"{context}: {line.strip()!r} says size {size}, but {workers} processes ran")
        if m["host"] not in HOSTS:
            fail(f"{context}: processor name {m['host']!r} is not this host's "
                 f"({socket.gethostname()!r}); use MPI.Get_processor_name()")
        seen[rank] = seen.get(rank, 0) + 1
    missing = sorted(set(range(workers)) - set(seen))
    twice = sorted(r for r, n in seen.items() if n > 1)
    extra = sorted(r for r in seen if r >= workers)
    if missing or twice or extra:
        fail(f"{context}: expected one greeting from each rank 0..{workers - 1}; "
             f"missing ranks {missing}, repeated {twice}, out of range {extra}")


@pytest.mark.points(1)
def test_hello_program(grading, settings, workers):
    """`mpiexec -n P python -m <target>.hello` prints one greeting per process."""
    outcome = grading.run_module("hello", workers)
    context = f"mpiexec -n {workers} python -m {settings.target.package}.hello"
    require_ok(outcome, "")
    lines = [line for line in outcome.value.splitlines() if line.strip()]
    if len(lines) != workers:
        fail(f"{context}: printed {len(lines)} lines, expected {workers} (one per process):\n"
             + "\n".join(lines[:10]))
    _check_greetings(lines, workers, context)


@pytest.mark.points(1)
def test_hello_greeting(grading, workers):
    """greeting(comm) returns this rank's greeting on every rank."""
    [outcome] = grading.run("mpi", "hello", "greeting", [{"args": ()}], workers, key="greeting")
    context = f"greeting(comm) at {workers} processes"
    require_ok(outcome, context)
    for rank, value in sorted(outcome.values.items()):
        if not isinstance(value, str):
            fail(f"{context}: rank {rank} returned a {type(value).__name__}, expected a str")
        m = LINE.match(value)
        if not m or int(m["rank"]) != rank:
            fail(f"{context}: rank {rank} returned {value!r}, expected "
                 f"'Hello from <processor>. {rank} of {workers}'")
    _check_greetings(list(outcome.values.values()), workers, context)
