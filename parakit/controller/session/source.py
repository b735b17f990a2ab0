"""What the grader reads from a submission's source without running it: a module that is
missing or does not parse, and functions still as the kit shipped them (stubs).

Starting a job for these costs a launcher, imports and often an ipyparallel cluster, only to
read the same verdict back. The module is read as text, never imported. A function is a stub
when its module defines it once at the top level with no decorator and a body that is only a
docstring and ``raise NotImplementedError(...)``, and nothing in the module could bind the
name otherwise. Whatever the rules are unsure of is run and judged as usual: calling a
finished function a stub would cost a student points, while calling a stub finished only
costs time.
"""

from __future__ import annotations

import ast
import warnings
from pathlib import Path

from parakit import wire
from parakit.worker import IMPORT_ERROR, MISSING_MODULE, NOT_IMPLEMENTED

MAX_SOURCE = 1 << 20  # bytes: a larger module is not read here, the child judges it

# Names through which a module can bind a global without naming it in a statement.
_DYNAMIC = {"globals", "setattr", "exec", "eval", "vars", "__import__", "import_module",
            "__dict__", "__getattr__", "sys"}


def verdict(module_file: Path, display: str, function: str) -> tuple[str, str] | None:
    """(status, message) as the graded child would report them, for a module that is missing
    or does not parse, or a function that is a stub; None when it has to run to be judged.
    ``display`` names the module in messages (``student/matmul.py``)."""
    if not Path(module_file).is_file():
        return MISSING_MODULE, f"{display} does not exist"
    source = _source(module_file)
    if source is None:  # not read into the grader (too large, not a plain file): run it
        return None
    try:
        with warnings.catch_warnings():  # e.g. invalid escapes: the child's to report
            warnings.simplefilter("ignore")
            compile(source, str(module_file), "exec", dont_inherit=True)
    except SyntaxError as exc:
        return IMPORT_ERROR, f"{display} has a syntax error at line {exc.lineno}: {exc.msg}"
    except (ValueError, RecursionError, MemoryError):  # nested too deep to read: the child's
        return None
    if is_stub(module_file, function):
        return NOT_IMPLEMENTED, f"not implemented yet: {display} {function}"
    return None


def is_stub(module_file: Path, function: str) -> bool:
    """Whether ``function`` of ``module_file`` is certainly still a stub."""
    tree = _parse(module_file)
    if tree is None:  # unreadable: the job says what is wrong
        return False
    defs = [node for node in tree.body
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == function]
    if len(defs) != 1 or defs[0].decorator_list or not _raises_not_implemented(defs[0]):
        return False
    package = Path(module_file).parent
    return not _may_rebind(tree, function, defs[0], package.name) \
        and not _package_runs_code(package / "__init__.py")


def _package_runs_code(init: Path) -> bool:
    """Whether the package's ``__init__.py`` does anything but document itself: it runs first
    and could replace the module's functions."""
    if not init.exists():
        return False
    tree = _parse(init)
    if tree is None:
        return True
    return any(not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))
               for node in tree.body)


def _raises_not_implemented(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        body = body[1:]  # the docstring
    if len(body) != 1 or not isinstance(body[0], ast.Raise) or body[0].exc is None:
        return False
    exc = body[0].exc.func if isinstance(body[0].exc, ast.Call) else body[0].exc
    return isinstance(exc, ast.Name) and exc.id == "NotImplementedError"


def _may_rebind(tree: ast.Module, function: str, the_def: ast.AST, package: str) -> bool:
    """Whether anything but ``the_def`` could bind ``function``, or ``NotImplementedError``
    mean something else: another binding or a ``global`` of either name, a star import, an
    import of the module's own package (whose modules could set its names), or any use of
    the dynamic ways to set a module's names."""
    names = {function, "NotImplementedError"}
    for node in ast.walk(tree):
        if node is the_def:
            continue
        if isinstance(node, ast.Name) and (node.id in _DYNAMIC or node.id in names
                                           and not isinstance(node.ctx, ast.Load)):
            return True
        bound: list[str | None] = []
        if isinstance(node, ast.Attribute) and node.attr in _DYNAMIC:
            return True
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
                      | ast.ExceptHandler | ast.MatchAs | ast.MatchStar):
            bound = [node.name]
        elif isinstance(node, ast.Global | ast.Nonlocal):
            bound = list(node.names)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            bound = [a.asname or a.name.split(".")[0] for a in node.names]
            if any(a.name == "*" or a.name in _DYNAMIC for a in node.names):
                return True
            own = (node.module or "").split(".")[0] if isinstance(node, ast.ImportFrom) \
                else None
            if getattr(node, "level", 0) or own == package or \
                    any(a.name.split(".")[0] == package for a in node.names):
                return True
        if names & set(bound):
            return True
    return False


def any_implemented(module_file: Path, marker: str) -> bool:
    """Whether some top-level function of ``module_file`` whose name contains ``marker`` is
    not certainly a stub (an unreadable module counts as implemented: it may be)."""
    source = _source(module_file)
    if source is None:  # missing, or too large to read here (then it may run)
        return Path(module_file).is_file()
    try:
        tree = ast.parse(source)
    except (ValueError, SyntaxError):  # nothing of it can run
        return False
    except (RecursionError, MemoryError):  # nested too deep to read here: it may run
        return True
    names = [node.name for node in tree.body
             if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and marker in node.name]
    return any(not is_stub(module_file, name) for name in names)


def _source(path: Path) -> bytes | None:
    """A module's bytes, or None when it is not read here: graded code chooses what the file
    is (a pipe that would block, a link, gigabytes), so a regular file of at most
    ``MAX_SOURCE`` bytes only."""
    try:
        return wire.read_untrusted(Path(path), MAX_SOURCE)
    except (OSError, wire.WireError):
        return None


def _parse(path: Path) -> ast.Module | None:
    """A module's syntax tree, or None if it cannot be read here (see ``_source``), does not
    parse, or is nested too deep for the parser (a 20,000-deep expression): never an error
    that would stop the grading session."""
    source = _source(path)
    if source is None:
        return None
    try:
        return ast.parse(source)
    except (ValueError, SyntaxError, RecursionError, MemoryError):
        return None
