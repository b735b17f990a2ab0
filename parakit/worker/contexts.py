"""What a graded function receives as its last argument, one opener per backend.

The grading runner and the bench runner open these the same way, so a function is graded and
timed in the same surroundings: an MPI communicator, a ``multiprocessing.Pool`` of P workers, or
an ipyparallel view on P engines (direct or load-balanced).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


def mpi_world():
    """``MPI.COMM_WORLD`` (imported here: only MPI runs pay for ``MPI_Init``)."""
    from mpi4py import MPI

    return MPI.COMM_WORLD


@contextmanager
def pool(workers: int, initializer: Callable | None = None, initargs: tuple = ()) -> Iterator:
    """A pool of ``workers`` processes; leaving the block terminates them."""
    import multiprocessing

    with multiprocessing.Pool(workers, initializer, initargs) as p:
        yield p


@contextmanager
def kept_open(pool) -> Iterator[None]:
    """The pool's ``close``, ``join`` and ``terminate`` do nothing while the graded function
    has it: a correct function that closes and joins its pool before returning would end the
    workers before the grader reads their CPU time. The runner ends the pool afterwards."""
    names = ("close", "join", "terminate")
    for name in names:
        setattr(pool, name, lambda *args, **kwargs: None)
    try:
        yield
    finally:
        for name in names:
            delattr(pool, name)


class NotEnoughEngines(RuntimeError):
    """The cluster has fewer engines than the run needs."""


@contextmanager
def ipp_engines(connection_file: str, workers: int, timeout: float) -> Iterator[tuple[Any, list]]:
    """A client of the cluster and the ids of the ``workers`` engines to use (the lowest);
    the client is closed on leaving."""
    import ipyparallel as ipp

    client = ipp.Client(connection_file, timeout=timeout)
    try:
        try:
            client.wait_for_engines(workers, timeout=timeout)
        except TimeoutError:
            raise NotEnoughEngines(
                f"the ipyparallel cluster has {len(client.ids)} engines, {workers} are needed: "
                "start more (ipcluster start -n N) or lower --workers") from None
        yield client, sorted(client.ids)[:workers]
    finally:
        client.close()


def ipp_view(client, targets: list, balanced: bool):
    """A load-balanced view (tasks go to whichever engine is free) or a direct one."""
    return client.load_balanced_view(targets) if balanced else client[targets]


def engine_setup(sys_path: list[str], fresh: list[str], trace_dir: str | None,
                 stacks: tuple[str, str] | None = None, preload: str | None = None) -> list:
    """Run on each ipyparallel engine before a run; returns the engine's [host, pid].

    ``sys_path`` entries first on the path (the graded package importable), the modules in
    ``fresh`` forgotten (imported again as they are on disk now), tracing into ``trace_dir``
    (None: off), and with ``stacks = (jobdir, label)`` a stack dump on SIGUSR1 as in every
    graded process. ``preload`` is imported now, so that a timed call does not pay for it.
    Self-contained (imports inside), so that it can be shipped by value too.
    """
    import faulthandler
    import importlib
    import os
    import signal
    import socket
    import sys

    from problems import trace

    for entry in reversed(sys_path):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    for name in fresh:
        sys.modules.pop(name, None)
    trace.set_directory(trace_dir)
    if stacks is not None:
        path = os.path.join(stacks[0], f"stack-{socket.gethostname()}-{os.getpid()}.txt")
        if getattr(sys, "_parakit_stack_path", None) != path:
            file = open(path, "w")  # noqa: SIM115  (kept open for faulthandler)
            file.write(f"{stacks[1]}\n")
            file.flush()
            sys._parakit_stack_file = file
            sys._parakit_stack_path = path
            faulthandler.register(signal.SIGUSR1, file=file, all_threads=False)
    if preload:
        importlib.import_module(preload)
    return [socket.gethostname(), os.getpid()]


def engine_untrace() -> None:
    """Run on each engine: tracing off (a user's cluster outlives the run that traced)."""
    from problems import trace

    trace.set_directory(None)
