"""Exercise 1: hello MPI.

Run it as ``mpiexec -n 4 python -m reference.hello``: every process prints one greeting,
then rank 0 prints how many processes each host got.
"""

from mpi4py import MPI

from problems.hello import per_host


def greeting(comm: MPI.Comm) -> str:
    """Return ``"Hello from {processor}. {rank} of {size}"`` for the calling process."""
    return f"Hello from {MPI.Get_processor_name()}. {comm.Get_rank()} of {comm.Get_size()}"


if __name__ == "__main__":
    # One print per process, flushed at once: mpiexec forwards whole lines from every rank.
    print(greeting(MPI.COMM_WORLD), flush=True)
    # Then rank 0 says how many processes each machine got (given: problems/hello.py).
    summary = per_host(MPI.COMM_WORLD)
    if summary:
        print(summary, flush=True)
