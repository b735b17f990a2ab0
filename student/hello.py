"""Exercise 1: hello MPI.

Run it as ``mpiexec -n 4 python -m student.hello``: every process prints one greeting.
"""

from mpi4py import MPI


def greeting(comm: MPI.Comm) -> str:
    """Return ``"Hello from {processor}. {rank} of {size}"`` for the calling process.

    ``processor`` is ``MPI.Get_processor_name()``, ``rank`` and ``size`` come from ``comm``.
    """
    raise NotImplementedError("exercise 1: greeting")


if __name__ == "__main__":
    print(greeting(MPI.COMM_WORLD), flush=True)
