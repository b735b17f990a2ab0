"""Grading from a notebook: a small notebook that calls ``check`` runs in a real kernel
(nbclient), says what it is doing and shows its progress while it runs, then the score and the
failures, and gets the numbers back."""

from __future__ import annotations

import re

import nbformat
from nbclient import NotebookClient

CELLS = [
    "from grader import check",
    'done = check("hello", target="reference")',
    "assert done.score == done.possible == 8, done",
    'todo = check("hello")',
    "assert todo.score == 0 and len(todo.failures) == 8, todo",
]


def test_a_notebook_checks_an_exercise(tmp_path):
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    shown = ["".join(o.get("text", "") for o in cell.outputs) for cell in notebook.cells]
    # what it does while it runs, its progress (coloured, as Jupyter shows it), then the score
    lines = re.sub(r"\x1b\[[0-9;]*m", "", shown[1]).splitlines()
    assert lines[0].startswith("checking reference on hello: the grading of `pytest grader`")
    assert lines[1].startswith("........") and lines[1].endswith("[100%]"), lines
    assert lines[2:] == ["hello      8 / 8", "total      8 / 8"], shown[1]
    assert "hello      0 / 8" in shown[3]
    assert ("FAILED test_hello_program[P1]: not implemented yet: student/hello.py greeting"
            in shown[3]), shown[3]
