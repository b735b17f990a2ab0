"""What the grader judges from a submission's source without running it, and what it must
leave to a run: a stub is only what certainly still is one."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from parakit.controller.session.source import any_implemented, verdict
from tests.helpers import KIT

STUB = 'def f(x):\n    """Doc."""\n    raise NotImplementedError("exercise 1: f")\n'


def _module(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mod.py"
    path.write_text(text)
    return path


def test_missing_unparsable_and_stub_modules_get_the_childs_verdict(tmp_path):
    assert verdict(tmp_path / "none.py", "sub/none.py", "f") == (
        "missing_module", "sub/none.py does not exist")
    assert verdict(_module(tmp_path, "def f(:\n    pass\n"), "sub/mod.py", "f") == (
        "import_error", "sub/mod.py has a syntax error at line 1: invalid syntax")
    assert verdict(_module(tmp_path, STUB), "sub/mod.py", "f") == (
        "not_implemented", "not implemented yet: sub/mod.py f")


@pytest.mark.parametrize("text", [
    STUB.replace("raise", "x = 1\n    raise"),  # does something first
    "import functools\n\n@functools.cache\n" + STUB,  # a decorator may replace it
    STUB + "\nf = lambda x: x\n",  # rebound later
    STUB + "\ndef f(x):\n    return x\n",  # defined again
    STUB + "\nfrom other import *\n",  # a star import may bind it
    STUB + "\nglobals()['f'] = print\n",  # bound by name
    STUB + "\nimport sys\nsetattr(sys.modules[__name__], 'f', print)\n",
    STUB + "\ndef g():\n    global f\n    f = print\n",
    "NotImplementedError = ValueError\n" + STUB,  # the raise means something else
    STUB + "\ntry:\n    pass\nexcept Exception as f:\n    pass\n",
    STUB + "\nfrom . import helpers\n",  # another module of the package may set it
    STUB + "\nfrom .helpers import g\n",
], ids=["work-before", "decorated", "rebound", "redefined", "star-import", "globals",
        "setattr", "global-statement", "shadowed-exception", "except-as", "package-import",
        "package-import-from"])
def test_whatever_may_bind_the_name_otherwise_is_run(tmp_path, text):
    assert verdict(_module(tmp_path, text), "sub/mod.py", "f") is None


def test_the_shipped_stubs_are_stubs_and_no_reference_function_is():
    for package, expected in (("student", True), ("reference", False)):
        for path in sorted((KIT / package).glob("*.py")):
            functions = [node.name for node in ast.parse(path.read_text()).body
                         if isinstance(node, ast.FunctionDef) and not node.name.startswith("_")]
            for name in functions:
                got = verdict(path, f"{package}/{path.name}", name) is not None
                assert got is expected, (package, path.name, name)


def test_a_cluster_is_wanted_only_for_code_that_can_run(tmp_path):
    assert not any_implemented(_module(tmp_path, STUB.replace("def f", "def f_ipp")), "_ipp")
    assert any_implemented(_module(tmp_path, "def f_ipp(view):\n    return 1\n"), "_ipp")
    assert not any_implemented(tmp_path / "none.py", "_ipp")
    assert not any_implemented(_module(tmp_path, "def f_ipp(:\n"), "_ipp")


def test_a_huge_module_is_not_read_by_the_grader(tmp_path):
    assert verdict(_module(tmp_path, STUB + "#" * (1 << 20) + "\n"), "sub/mod.py", "f") is None


def test_a_package_whose_init_runs_code_may_replace_the_stub(tmp_path):
    package = tmp_path / "sub"
    package.mkdir()
    (package / "__init__.py").write_text('"""Doc."""\n')
    assert verdict(_module(package, STUB), "sub/mod.py", "f") is not None
    (package / "__init__.py").write_text("from . import mod\nmod.f = print\n")
    assert verdict(package / "mod.py", "sub/mod.py", "f") is None
