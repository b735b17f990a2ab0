"""Where each process of a hung run was, from its stack dump (diagnose.read_stacks): the
student's line where a process was in their code, and no line of the grader's own harness
presented as theirs where it had returned from their function (or not yet called it)."""

from __future__ import annotations

from pathlib import Path

from parakit.controller.processes.observe import HOST
from parakit.controller.session.runtime import Target
from parakit.controller.verdicts import diagnose

HARNESS_FILE = Path(diagnose.__file__).resolve().parents[2] / "worker" / "grade.py"


def test_a_rank_waiting_in_the_harness_is_not_shown_at_the_harness_line(tmp_path):
    package = tmp_path / "student"
    package.mkdir()
    (package / "matmul.py").write_text("def matmul_mpi(A, B, comm):\n    comm.Recv(buf)\n")
    target = Target(package, "student", "student")
    jobdir = tmp_path / "job"
    jobdir.mkdir()
    (jobdir / f"stack-{HOST}-100.txt").write_text(
        f'rank 0\n  File "{HARNESS_FILE}", line 40 in _finish\n'
        f'  File "{HARNESS_FILE}", line 90 in main\n')
    (jobdir / f"stack-{HOST}-101.txt").write_text(
        f'rank 1\n  File "{package / "matmul.py"}", line 2 in matmul_mpi\n'
        f'  File "{HARNESS_FILE}", line 60 in run_case\n')
    lines = diagnose.read_stacks(jobdir, target).splitlines()
    assert lines[0] == (f"  rank 0: not in your code, in the grader's harness ({HARNESS_FILE}:40 "
                        "in _finish): it had returned from your function, or had not called it "
                        "yet; look at the other processes")
    assert lines[1] == "  rank 1: student/matmul.py:2 in matmul_mpi: comm.Recv(buf)"
