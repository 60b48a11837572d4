"""No module of ``trainyard.specs`` imports another in a circle, imports inside functions included."""

from __future__ import annotations

import ast
from pathlib import Path

import trainyard.specs

PACKAGE = Path(trainyard.specs.__file__).resolve().parent
NAME = "trainyard.specs"


def import_graph(sources: dict[str, str]) -> dict[str, set[str]]:
    """``{module: modules of the package it imports}`` from ``{module: source}``, every import
    statement counted wherever it is (module level, functions, ``TYPE_CHECKING`` blocks)."""
    graph: dict[str, set[str]] = {}
    for module, source in sources.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                targets.add(node.module)  # `from trainyard.specs import x` runs the package's __init__
                targets |= {f"{node.module}.{alias.name}" for alias in node.names}
        graph[module] = {t for t in targets if t in sources and t != module}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of imports (``[a, b, a]``), or None."""
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state and (found := visit(target)):
                return found
        path.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state and (found := visit(module)):
            return found
    return None


def _package_sources() -> dict[str, str]:
    sources = {}
    for path in sorted(PACKAGE.glob("*.py")):
        module = NAME if path.stem == "__init__" else f"{NAME}.{path.stem}"
        sources[module] = path.read_text()
    return sources


def test_the_specs_modules_import_each_other_without_a_circle() -> None:
    sources = _package_sources()
    assert {f"{NAME}.schema", f"{NAME}.graph", f"{NAME}.loader", f"{NAME}.builder"} <= set(sources)
    graph = import_graph(sources)
    assert find_cycle(graph) is None
    # the layering inside the package: the schema imports none of its siblings
    assert graph[f"{NAME}.schema"] == set()


def test_the_check_finds_an_import_inside_a_function_that_closes_a_circle() -> None:
    sources = _package_sources()
    sources[f"{NAME}.schema"] += "\n\ndef late():\n    from trainyard.specs.graph import resolve_graph\n"
    assert find_cycle(import_graph(sources)) == [f"{NAME}.graph", f"{NAME}.schema", f"{NAME}.graph"]
