"""Exercise 1: hello MPI.

Run it as ``mpiexec -n 4 python -m reference.hello``: every process prints one greeting.
"""

from mpi4py import MPI


def greeting(comm: MPI.Comm) -> str:
    """Return ``"Hello from {processor}. {rank} of {size}"`` for the calling process."""
    return f"Hello from {MPI.Get_processor_name()}. {comm.Get_rank()} of {comm.Get_size()}"


if __name__ == "__main__":
    # One print per process, flushed at once: mpiexec forwards whole lines from every rank.
    print(greeting(MPI.COMM_WORLD), flush=True)
