"""The package's import graph has no circle and never points from a lower layer up to a higher one.

Imports inside functions count: a lazy import is still a dependency. The layers, lowest first, are
the pipeline of ``docs/architecture.md``; a module may import its own layer and the layers below it.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "trainyard"

#: Lowest first. Each entry is a top-level module or subpackage of trainyard.
LAYERS: list[set[str]] = [
    {"errors", "defaults", "metrics", "lineage"},
    {"config"},
    {"db"},
    {"specs"},
    {"training"},
    {"sweeps"},
    {"queue"},
    {"scheduler"},
    {"worker"},
    {"display"},
    {"dashboard", "results"},
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
    cycles = find_cycles(import_graph(sources))
    assert any(
        cycle[0] == cycle[-1] and {"trainyard.specs.graph", "trainyard.specs.schema"} <= set(cycle) for cycle in cycles
    )


def test_an_upward_import_is_found() -> None:
    sources = dict(SOURCES)
    sources["trainyard.db.store"] += "\n\ndef late():\n    from trainyard.dashboard import render\n"
    assert "trainyard.dashboard.render" in import_graph(sources)["trainyard.db.store"]
    assert _layer("trainyard.dashboard.render") > _layer("trainyard.db.store")


def _top(module: str) -> str:
    """``trainyard.db.store`` -> ``db``; the package itself -> ``""``."""
    return module.split(".")[1] if "." in module else ""


def test_db_and_specs_do_not_import_each_other() -> None:
    graph = GRAPH
    crossing = {(a, b) for a, targets in graph.items() for b in targets if {_top(a), _top(b)} == {"db", "specs"}}
    assert crossing == set()


def test_the_queue_stands_below_the_scheduler_and_the_workers() -> None:
    """The broker stage imports neither of the stages it serves (nor Celery, checked at run time below)."""
    graph = GRAPH
    queue = {m for m in graph if m.startswith("trainyard.queue")}
    assert queue >= {"trainyard.queue.transport", "trainyard.queue.slots", "trainyard.queue.reconciler"}
    reached = {t for m in queue for t in graph[m]}
    assert not {t for t in reached if t.startswith(("trainyard.scheduler", "trainyard.worker", "trainyard.cli"))}


def _closure(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        for other in graph[todo.pop()]:
            if other not in seen:
                seen.add(other)
                todo.append(other)
    return seen


def test_submit_can_reach_no_worker_code_in_the_source() -> None:
    """Every trainyard module ``trainyard.scheduler.submit`` may import, at any depth and inside any
    function, is below the workers: sending a slot does not need them."""
    closure = _closure(GRAPH, "trainyard.scheduler.operations")
    assert "trainyard.queue.slots" in closure
    assert (
        sorted(m for m in closure if m.startswith(("trainyard.worker", "trainyard.cli", "trainyard.dashboard"))) == []
    )


def test_a_real_submit_loads_neither_worker_code_nor_celery(tmp_path: Path) -> None:
    """What ``trainyard submit`` really imports: a spec validated (TensorFlow), stored and its slot sent
    on the embedded broker, in a fresh process; then no ``trainyard.worker`` and no ``celery`` module
    is loaded (kombu is: it carries the message)."""
    spec = tmp_path / "mlp.yaml"
    spec.write_text(
        "name: mlp\ndata: {source: 'builtin:diabetes'}\ninputs: [age, sex, bmi]\n"
        "layers: [{type: Dense, units: 2}]\noutputs: {y: {target: target}}\ntraining: {epochs: 1}\n"
    )
    code = (
        "import sys, trainyard\n"
        "from trainyard.queue import queue_size\n"
        f"(job,) = trainyard.submit([{str(spec)!r}])\n"
        "assert queue_size() == 1, 'the slot was not sent'\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(('trainyard.worker', 'celery')) or m == 'celery')\n"
        "assert 'kombu' in sys.modules\n"
        "print(loaded)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINYARD_")}
    env.update(TRAINYARD_HOME=str(tmp_path / "home"), TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
