"""``parakit-srun-shell``: a remote shell for the nodes of the Slurm allocation the grader runs
in, used as ``ssh`` is (``--hosts slurm``): ``parakit-srun-shell [OPTIONS] NODE [--] COMMAND...``
runs COMMAND with ``/bin/sh`` on NODE as a step of the allocation.

Options before NODE are ssh's (``-x`` from MPICH's launcher, ``-tt``): they are ignored. The
step takes no CPU from the job (``--overlap``: the grader's own steps, each MPI launcher's proxy
and each probe, run beside the ranks they watch) and is one task on that one node. The job is
``SLURM_JOB_ID``, or ``PARAKIT_SLURM_JOB_ID`` where the grader removed Slurm's variables from
a graded child's environment (so that MPICH's mpiexec does not start ranks through srun of its
own accord). Only the standard library: it runs before anything of the kit is imported.

``parakit-srun-shell --copy [NODE:]SRC [NODE:]DST`` stands in for ``scp`` (ipyparallel fetches
an engine's log with it): the allocation's nodes share the work folder, so it copies here.

``parakit-srun-shell --tasks NODEFILE -n N COMMAND...`` runs N copies of COMMAND as **one** step
of the allocation, task K on the node named on line K of NODEFILE (Slurm's arbitrary
distribution), in the foreground for as long as they run: the kit's ipyparallel engines, as
ipyparallel's MPI launcher starts them (its ``mpiexec -n N``). A process started in the
background by a step that then ends is ended with it where Slurm tracks steps by cgroup
(``proctrack/cgroup``, most clusters), so engines must not be started the ssh way there.
"""

from __future__ import annotations

import os
import shutil
import sys

JOB_VARS = ("SLURM_JOB_ID", "PARAKIT_SLURM_JOB_ID")


def srun_argv(argv: list[str], environ: dict[str, str]) -> list[str]:
    """The srun command line for ``argv`` (this program's arguments); ValueError says what is
    missing."""
    args = list(argv)
    while args and args[0].startswith("-") and args[0] != "--":
        args.pop(0)
    if not args:
        raise ValueError("usage: parakit-srun-shell [SSH OPTIONS] NODE [--] COMMAND...")
    node, command = args[0], args[1:]
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        raise ValueError(f"no command to run on {node}")
    return ["srun", f"--jobid={_job(environ)}", "--overlap", "--nodes=1", "--ntasks=1",
            f"--nodelist={node}", "--quiet", "--unbuffered", "--kill-on-bad-exit=1",
            "/bin/sh", "-c", " ".join(command)]


def tasks_argv(nodefile: str, argv: list[str], environ: dict[str, str]) -> list[str]:
    """The srun command line for ``-n N COMMAND...``, the tasks placed as ``nodefile`` says
    (it must exist: one node name a line, a line a task); ValueError says what is wrong."""
    if len(argv) < 3 or argv[0] != "-n" or not argv[1].isdigit():
        raise ValueError("usage: parakit-srun-shell --tasks NODEFILE -n N COMMAND...")
    n, command = int(argv[1]), argv[2:]
    try:
        with open(nodefile) as f:
            nodes = f.read().split()
    except OSError as exc:
        raise ValueError(f"--tasks {nodefile}: {exc.strerror}") from None
    if len(nodes) < n:
        raise ValueError(f"--tasks {nodefile}: {len(nodes)} node(s) for {n} tasks")
    return ["srun", f"--jobid={_job(environ)}", "--overlap", f"--ntasks={n}",
            f"--nodes={len(set(nodes[:n]))}", "--distribution=arbitrary", "--quiet",
            "--unbuffered", *command]


def _job(environ: dict[str, str]) -> str:
    job = next((environ[v] for v in JOB_VARS if environ.get(v)), "")
    if not job:
        raise ValueError("not inside a Slurm allocation (no SLURM_JOB_ID): run it in salloc "
                         "or sbatch")
    return job


def copy(src: str, dst: str) -> None:
    """scp's ``[HOST:]SRC [HOST:]DST`` on a file system every node shares."""
    shutil.copyfile(src.partition(":")[2] or src, dst.partition(":")[2] or dst)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--copy"]:
        try:
            copy(*argv[-2:])
        except (OSError, TypeError) as exc:
            print(f"parakit-srun-shell --copy: {exc}", file=sys.stderr)
            return 1
        return 0
    env = dict(os.environ)
    try:
        if argv[:1] == ["--tasks"] and len(argv) > 1:
            command = tasks_argv(argv[1], argv[2:], env)
            env["SLURM_HOSTFILE"] = argv[1]  # where --distribution=arbitrary puts each task
        else:
            command = srun_argv(argv, env)
    except ValueError as exc:
        print(f"parakit-srun-shell: {exc}", file=sys.stderr)
        return 255  # ssh's status when the host cannot be reached
    # The step's own variables (SLURM_STEP_ID...) would make srun start a step inside this
    # one's, and the batch step's layout (SLURM_NNODES...) would override the one asked for:
    # a step of the job, as the command line says, is what is wanted.
    env = {k: v for k, v in env.items()
           if not k.startswith(("SLURM_STEP", "SLURM_SRUN_COMM", "SLURM_NTASKS", "SLURM_NPROCS",
                                "SLURM_NNODES", "SLURM_DISTRIBUTION", "SLURM_TASKS_PER_NODE"))}
    try:
        os.execvpe(command[0], command, env)
    except OSError as exc:
        print(f"parakit-srun-shell: cannot run srun: {exc.strerror}", file=sys.stderr)
        return 255


if __name__ == "__main__":
    sys.exit(main())
