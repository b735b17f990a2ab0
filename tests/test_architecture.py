"""The shape of the house, checked on the source (docs/architecture.md draws it).

- the import graph of the kit's own code (grader, parakit, problems) has no cycle;
- the worker side (``parakit.worker``: code that runs inside graded processes) imports nothing
  of the controller side, only the shared formats (``parakit.wire``, ``parakit.workloads``)
  and ``problems``; the shared formats and ``problems`` import nothing above them;
- no product module imports a test module (``tests`` or a grader test);
- no product file is longer than MAX_LINES.

Every import statement counts, also those inside functions and under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

KIT = Path(__file__).resolve().parent.parent
PACKAGES = ("grader", "parakit", "problems")
MAX_LINES = 300
WORKER = "parakit.worker"
SHARED = {"parakit.wire", "parakit.workloads"}  # formats both sides read and write


def module_files() -> dict[str, Path]:
    """Module name -> file, for every module of the kit's packages."""
    found = {}
    for package in PACKAGES:
        for path in sorted((KIT / package).rglob("*.py")):
            parts = list(path.relative_to(KIT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The kit's modules (and ``tests...``) that module ``name`` imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, up level - 1
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            # "from parakit import wire" imports the module parakit.wire
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                       for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known and not target.startswith("tests"):
                target = target.rpartition(".")[0]  # "parakit.wire.X" -> the module
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    known = set(files)
    return {name: imports_of(name, path, known) for name, path in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle of ``graph`` as a path that ends where it starts ([] if none)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return []


def test_the_checks_see_imports_and_cycles():
    graph = import_graph()
    assert "parakit.controller.session.jobs" in graph["parakit.controller.session.grading"]
    assert "parakit.wire" in graph["parakit.worker.grade"]  # "from parakit import wire"
    assert "problems.trace" in graph["problems.mandelbrot"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []


def test_the_import_graph_has_no_cycle():
    cycle = find_cycle(import_graph())
    assert not cycle, "import cycle: " + " -> ".join(cycle)


def test_the_worker_side_imports_nothing_of_the_controller_side():
    graph = import_graph()
    allowed = SHARED | {WORKER}
    wrong = {f"{name} imports {dep}" for name, deps in graph.items() if name.startswith(WORKER)
             for dep in deps
             if not (dep in allowed or dep.startswith(WORKER + ".") or dep.startswith("problems"))}
    assert not wrong, sorted(wrong)


@pytest.mark.parametrize("bottom", ["problems", *sorted(SHARED)])
def test_the_shared_layers_import_nothing_above_them(bottom):
    graph = import_graph()
    above = {f"{name} imports {dep}" for name, deps in graph.items()
             if name == bottom or name.startswith(bottom + ".")
             for dep in deps if not (dep.startswith("problems") or dep in SHARED)}
    assert not above, sorted(above)


def test_no_product_module_imports_a_test_module():
    graph = import_graph()
    wrong = {f"{name} imports {dep}" for name, deps in graph.items() for dep in deps
             if dep.startswith("tests") or dep.startswith("grader.test_")}
    assert not wrong, sorted(wrong)


def test_product_files_are_short():
    long = {str(path.relative_to(KIT)): n for path in module_files().values()
            if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"over {MAX_LINES} lines (split them by idea): {long}"
