"""Exercise 1's last line: how many processes each machine got.

"In a distributed environment, the processor name will further inform you that your MPI
execution was spawned across machine boundaries, and how many processes are allocated per
machine." Rank 0 gathers every rank's processor name and says it in one line.
"""

from __future__ import annotations

from collections import Counter

PREFIX = "Processes per host:"


def per_host(comm) -> str | None:
    """On rank 0, ``"Processes per host: node1 2, node2 2"`` (hosts in rank order); None on
    the other ranks. Collective: every rank must call it."""
    from mpi4py import MPI

    names = comm.gather(MPI.Get_processor_name(), root=0)
    if names is None:
        return None
    counts = Counter(names)  # insertion order: the order of the ranks
    return PREFIX + " " + ", ".join(f"{host} {n}" for host, n in counts.items())


def parse(line: str) -> dict[str, int] | None:
    """The counts of a ``per_host`` line (None if it is not one)."""
    if not line.startswith(PREFIX):
        return None
    counts = {}
    for item in line[len(PREFIX):].split(","):
        host, _, n = item.strip().rpartition(" ")
        if not host or not n.isdigit():
            return None
        counts[host] = int(n)
    return counts
