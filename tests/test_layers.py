"""The package's import graph has no circle and never points from a lower layer up to a higher one.

Imports inside functions count: a lazy import is still a dependency. The layers, lowest first, are
the pipeline of ``docs/architecture.md``; a module may import its own layer and the layers below it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "trainyard"

#: Lowest first. Each entry is a top-level module or subpackage of trainyard.
LAYERS: list[set[str]] = [
    {"errors", "defaults", "metrics"},
    {"config"},
    {"db"},
    {"specs"},
    {"training"},
    {"queue"},
    {"scheduler"},
    {"worker"},
    {"display"},
    {"dashboard"},
    {"cli", "__main__", ""},  # "" is trainyard/__init__.py: the public API lazily reaches the scheduler
]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}
SOURCES = {name: path.read_text() for name, path in MODULES.items()}


def _imports(name: str, source: str) -> set[str]:
    """The trainyard modules ``name`` imports anywhere in its source (``from pkg import sub`` is ``pkg.sub``)."""
    found: set[str] = set()
    package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:  # `import trainyard.db.store as s` names a module
                target = target.rpartition(".")[0]
            if target.startswith("trainyard") and target != name:
                found.add(target)
    return found


def import_graph(sources: dict[str, str]) -> dict[str, set[str]]:
    """``{module: trainyard modules it imports}`` for the given sources."""
    return {name: _imports(name, source) for name, source in sources.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles found by a depth-first walk (each as ``[a, b, a]``)."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        state[module] = 1
        stack.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycles.append([*stack[stack.index(target) :], target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)
    return cycles


GRAPH = import_graph(SOURCES)


def _layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else ""
    for rank, members in enumerate(LAYERS):
        if top in members:
            return rank
    raise AssertionError(f"{module}: not in any layer of tests/test_layers.py; give it one")


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_only_point_down_or_sideways(module: str) -> None:
    upward = sorted(target for target in GRAPH[module] if _layer(target) > _layer(module))
    assert not upward, f"{module} (layer {_layer(module)}) imports higher layers: {upward}"


def test_there_is_no_import_cycle() -> None:
    cycles = find_cycles(GRAPH)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(cycle) for cycle in cycles)


def test_an_import_inside_a_function_that_closes_a_circle_is_found() -> None:
    sources = dict(SOURCES)
    sources["trainyard.specs.schema"] += "\n\ndef late():\n    from trainyard.specs.graph import resolve_graph\n"
    assert ["trainyard.specs.graph", "trainyard.specs.schema", "trainyard.specs.graph"] in find_cycles(
        import_graph(sources)
    )


def test_an_upward_import_is_found() -> None:
    sources = dict(SOURCES)
    sources["trainyard.db.store"] += "\n\ndef late():\n    from trainyard.dashboard import render\n"
    assert "trainyard.dashboard.render" in import_graph(sources)["trainyard.db.store"]
    assert _layer("trainyard.dashboard.render") > _layer("trainyard.db.store")
