"""Exercise 1: hello MPI, run as a program and called as a function, at every process count.

Each rank's processor name must be the host it ran on: as the grader saw it (a function's
ranks), or where mpiexec places it (``--hosts``), or this machine."""

from __future__ import annotations

import re
import socket

import pytest

from parakit.controller.processes.observe import HOST as HERE_NAME
from parakit.controller.session.outcome import Outcome
from parakit.controller.verdicts.checks import fail, require_ok
from problems import hello

LINE = re.compile(r"^Hello from (?P<host>\S+)\. (?P<rank>\d+) of (?P<size>\d+)$")
HERE = {socket.gethostname(), socket.gethostname().split(".")[0], socket.getfqdn()}


def expected_hosts(settings, workers: int, outcome: Outcome | None = None) -> list[set[str]]:
    """The names each rank's processor may have: the host it ran on (a function's run: as
    the grader saw it, or as the rank said), else where mpiexec puts it (--hosts), else this
    machine; an empty set (any) under a launcher of the user's that places ranks itself."""
    if outcome is not None and sorted(outcome.pids) == list(range(workers)):
        return [HERE if outcome.pids[r][0] == HERE_NAME else {outcome.pids[r][0]}
                for r in range(workers)]
    if settings.mpiexec and not settings.hosts.several:
        return [set()] * workers  # a launcher of the user's (srun) places them: any host
    if not settings.hosts.several:
        return [HERE] * workers
    names = settings.hosts.self_names()
    return [{host, names.get(host, host)} for host in settings.hosts.placement(workers)]


def _check_greetings(lines: list[str], workers: int, context: str,
                     hosts: list[set[str]]) -> dict[str, int]:
    """Every rank exactly once, the right size, the processor name of the host it ran on;
    returns how many ranks each processor name had."""
    seen: dict[int, int] = {}
    per_host: dict[str, int] = {}
    for line in lines:
        m = LINE.match(line.strip())
        if not m:
            fail(f"{context}: unexpected line {line.strip()!r}; every line must read "
                 f"'Hello from <processor>. <rank> of <size>', e.g. "
                 f"{_example(hosts, workers)!r}")
        rank, size = int(m["rank"]), int(m["size"])
        if size != workers:
            fail(f"{context}: {line.strip()!r} says size {size}, but {workers} processes ran")
        if rank < workers and hosts[rank] and m["host"] not in hosts[rank]:
            fail(f"{context}: rank {rank} says processor {m['host']!r}, but it ran on "
                 f"{' / '.join(sorted(hosts[rank]))}; use MPI.Get_processor_name()")
        seen[rank] = seen.get(rank, 0) + 1
        per_host[m["host"]] = per_host.get(m["host"], 0) + 1
    if sorted(seen) != list(range(workers)) or any(n > 1 for n in seen.values()):
        fail(f"{context}: expected one greeting from each rank 0..{workers - 1}; "
             + _which_ranks(seen, workers))
    return per_host


def _example(hosts: list[set[str]], workers: int, rank: int = 0) -> str:
    """A rank's greeting as it should read (its host's name where the grader knows it)."""
    host = min(hosts[rank], key=len) if rank < len(hosts) and hosts[rank] else "<processor>"
    return f"Hello from {host}. {rank} of {workers}"


def _ranks(ranks: list[int]) -> str:
    return f"rank{'s' * (len(ranks) > 1)} {', '.join(map(str, ranks))}"


def _which_ranks(seen: dict[int, int], workers: int) -> str:
    """Which ranks greeted wrongly ('rank 0 greeted 2 times; rank 1 missing'), and the likely
    cause where the greetings show one (only rank 0; every rank the same number of times)."""
    missing = [r for r in range(workers) if r not in seen]
    twice = {r: n for r, n in sorted(seen.items()) if n > 1}
    extra = sorted(r for r in seen if r >= workers)
    if not missing and not extra and set(twice) == set(seen) and len(set(twice.values())) == 1:
        return (f"every rank greeted {twice[0]} times: print the greeting once per process, "
                "not in a loop over the ranks")
    parts = [f"rank {r} greeted {n} times" for r, n in twice.items()]
    parts += [f"{_ranks(missing)} missing"] if missing else []
    parts += [f"{_ranks(extra)} out of range"] if extra else []
    if set(seen) == {0} and workers > 1:
        parts.append("only rank 0 greeted: every process prints its own greeting, not rank 0 "
                     "alone" if seen[0] == 1 else "every greeting says rank 0: each process "
                     "greets with its own rank, comm.Get_rank()")
    return "; ".join(parts)


@pytest.mark.points(1)
def test_hello_program(grading, settings, workers):
    """`mpiexec -n P python -m <target>.hello` prints one greeting per process, then how many
    processes each host got."""
    outcome = grading.run_module("hello", workers)
    context = f"mpiexec -n {workers} python -m {settings.target.package}.hello"
    require_ok(outcome, "")
    by_rank = {r: [line for line in text.splitlines() if line.strip()]
               for r, text in outcome.values.items()}
    lines = [line for r in sorted(by_rank) for line in by_rank[r]]
    greetings = [line for line in lines if not line.startswith(hello.PREFIX)]
    summaries = [line for line in lines if line.startswith(hello.PREFIX)]
    if len(greetings) != workers:
        ranks: dict[int, int] = {}
        for m in filter(None, (LINE.match(line.strip()) for line in greetings)):
            ranks[int(m["rank"])] = ranks.get(int(m["rank"]), 0) + 1
        fail(f"{context}: printed {len(greetings)} greeting{'s' * (len(greetings) != 1)}, "
             f"expected {workers} (one per process); {_which_ranks(ranks, workers)}:\n"
             + "\n".join(greetings[:10]))
    if grading.rt.backends["mpi"].labels_lines:
        _check_printed_by(by_rank, workers, context)
    per_host = _check_greetings(greetings, workers, context,
                                expected_hosts(settings, workers))
    if len(summaries) != 1 or hello.parse(summaries[0]) != per_host:
        shown = summaries[0] if summaries else "nothing"
        fail(f"{context}: the last line must say how many processes each host got, "
             f"'{hello.PREFIX} " + ", ".join(f"{h} {n}" for h, n in per_host.items())
             + f"' (rank 0, from problems.hello.per_host); it printed {shown!r}")


def _check_printed_by(by_rank: dict[int, list[str]], workers: int, context: str) -> None:
    """Each rank printed its own greeting: mpiexec labels every line with the rank that
    printed it (the text of a line is the graded code's to choose, the label is not)."""
    for rank, lines in sorted(by_rank.items()):
        for line in lines:
            m = LINE.match(line.strip())
            if rank < 0:
                fail(f"{context}: the line {line.strip()!r} did not come from any rank's output "
                     "(mpiexec labels each rank's lines); print with print(), one line at once")
            if m and int(m["rank"]) != rank:
                fail(f"{context}: rank {rank} printed {line.strip()!r}, a greeting for rank "
                     f"{m['rank']} (mpiexec labels every line with the rank that printed it): "
                     "each process prints its own greeting, not rank 0 for everyone")
            if line.startswith(hello.PREFIX) and rank != 0:
                fail(f"{context}: rank {rank} printed the per-host line; rank 0 prints it "
                     "(problems.hello.per_host returns it on rank 0 only)")


@pytest.mark.points(1)
def test_hello_greeting(grading, settings, workers):
    """greeting(comm) returns this rank's greeting on every rank."""
    [outcome] = grading.run("mpi", "hello", "greeting", [{"args": ()}], workers, key="greeting")
    context = f"greeting(comm) at {workers} processes"
    require_ok(outcome, context)
    hosts = expected_hosts(settings, workers, outcome)
    for rank, value in sorted(outcome.values.items()):
        if not isinstance(value, str):
            fail(f"{context}: rank {rank} returned a {type(value).__name__}, expected a str")
        m = LINE.match(value)
        if not m or int(m["rank"]) != rank:
            fail(f"{context}: rank {rank} returned {value!r}, expected "
                 f"{_example(hosts, workers, rank)!r}")
    _check_greetings(list(outcome.values.values()), workers, context, hosts)
