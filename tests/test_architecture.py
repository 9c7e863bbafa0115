"""The package's shape: dependencies between its subpackages point one way (no cycles)."""

from __future__ import annotations

import ast
from pathlib import Path

import shopflow

SOURCE = Path(shopflow.__file__).parent


def _subpackage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "shopflow" else None


def package_imports() -> dict[str, set[str]]:
    """Subpackage (or top-level module) -> the other ones it imports, at any level of nesting."""
    graph: dict[str, set[str]] = {}
    for path in SOURCE.rglob("*.py"):
        relative = path.relative_to(SOURCE).with_suffix("").parts
        owner = relative[0]
        targets = graph.setdefault(owner, set())
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                target = _subpackage(name)
                if target is not None and target != owner:
                    targets.add(target)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_subpackages_import_each_other_without_cycles() -> None:
    cycle = _cycle(package_imports())
    assert cycle is None, " -> ".join(cycle or [])


def test_the_warehouse_does_not_import_the_metric_sql() -> None:
    assert "metrics" not in package_imports()["warehouse"]


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
