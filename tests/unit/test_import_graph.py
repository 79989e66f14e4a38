"""The import graph of include/leadflow, read statically: no module imports one that imports it back
(also through others, also from inside a function), the packages stay layered, and only the
Airflow adapter imports Airflow.

An import inside a function counts like one at the top: it defers the cycle to the call, it does
not remove it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

INCLUDE = Path(__file__).resolve().parents[2] / "include"
PACKAGE = INCLUDE / "leadflow"

# Modules that may import Airflow, and why.
AIRFLOW_IMPORTERS = {
    "leadflow.airflow_adapter": "the library's one way into Airflow",
    # Airflow loads the provider's hook classes by name (airflow_provider.py) and they subclass its
    # BaseHook, so the class statement itself needs Airflow.
    "leadflow.airflow_hooks": "the provider's hook classes",
}
# Package cycles not yet undone, each with what closes it. Add none: move the shared code instead.
KNOWN_PACKAGE_CYCLES: set[frozenset[str]] = set()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(INCLUDE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imported_names(module: str, path: Path) -> set[str]:
    """Every module name an import statement anywhere in the file names (`from a import b` gives
    `a.b` when that is a module, else `a`)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
                package = package[: len(package) - node.level + 1]
                base = ".".join(package + ([node.module] if node.module else []))
            for alias in node.names:
                names.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    return names


def _leadflow_module(name: str) -> str | None:
    """The leadflow module an imported name lives in (its longest known prefix), None outside."""
    parts = name.split(".")
    while parts and ".".join(parts) not in MODULES:
        parts.pop()
    return ".".join(parts) or None


def _graph() -> dict[str, set[str]]:
    graph = {}
    for module, path in MODULES.items():
        targets = {_leadflow_module(name) for name in _imported_names(module, path)}
        graph[module] = {t for t in targets if t and t != module}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (as a path that returns to its start) per strongly connected group of nodes."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = set()
            while not group or member != node:
                member = stack.pop()
                group.add(member)
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_path_around(graph, group) for group in groups]


def _path_around(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    """A shortest way from the group's first node back to itself, through the group."""
    start = min(group)
    paths = {target: [start, target] for target in graph[start] & group}
    frontier = list(paths)
    while start not in paths:
        nxt = []
        for node in frontier:
            for target in sorted(graph[node] & group):
                if target not in paths:
                    paths[target] = paths[node] + [target]
                    nxt.append(target)
        frontier = nxt
    return paths[start]


def _package(module: str) -> str:
    """leadflow.push.writer -> leadflow.push; a top-level module is its own node."""
    return ".".join(module.split(".")[:2])


def test_the_graph_sees_function_local_and_relative_imports():
    graph = _graph()
    assert "leadflow.airflow_adapter" in graph["leadflow.dag_support"]  # a top-level import
    assert "leadflow.crm.write_core" in graph["leadflow.dag_support"]  # inside permanent_errors()
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]


def test_no_module_imports_one_that_imports_it_back():
    cycles = _cycles(_graph())
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(cycle) for cycle in cycles)


def test_packages_are_layered_without_cycles():
    packages: dict[str, set[str]] = {}
    for module, targets in _graph().items():
        packages.setdefault(_package(module), set()).update(
            _package(t) for t in targets if _package(t) != _package(module))
    cycles = [c for c in _cycles(packages) if frozenset(c) not in KNOWN_PACKAGE_CYCLES]
    assert not cycles, "package cycles: " + "; ".join(" -> ".join(cycle) for cycle in cycles)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_only_the_adapter_imports_airflow(module):
    names = _imported_names(module, MODULES[module])
    if any(name == "airflow" or name.startswith("airflow.") for name in names):
        assert module in AIRFLOW_IMPORTERS, f"{module} imports Airflow: ask leadflow.airflow_adapter instead"
