"""The package's layers, read from its source: every import (inside functions too) points to a layer
further left, and no modules import each other in a circle (docs/architecture.md).

    errors, defaults -> config -> db -> specs -> training -> queue -> scheduler -> worker -> display, dashboard -> cli

``db`` and ``specs`` do not import each other. Modules of one layer may import each other.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "trainyard"

#: Each layer's top-level names under ``trainyard``; a module may import its own layer and those before.
LAYERS: list[set[str]] = [
    {"errors", "defaults"},
    {"config"},
    {"db"},
    {"specs"},
    {"training"},
    {"queue"},
    {"scheduler", ""},  # "": the package itself, whose public API re-exports the scheduler's operations
    {"worker"},
    {"display", "dashboard"},
    {"cli", "__main__"},
]

#: Imports that go against the layers today and are being mended elsewhere (issue 12); each entry
#: is removed with its fix. A new violation fails the test; a mended one does not.
KNOWN_UPWARD = {
    # the submit-time envelope (DATA_FINGERPRINT_KEY, DATA_ROOTS_KEY) becomes a record in trainyard.db
    ("trainyard.worker.runner", "trainyard.scheduler.operations"),
}
KNOWN_CYCLES = {
    # JobSpec.from_document calls resolve_graph: building a spec from a document moves to the loader
    frozenset({"trainyard.specs.graph", "trainyard.specs.schema"}),
    # the command modules import quiet_tensorflow from the package that registers them
    frozenset({"trainyard.cli", "trainyard.cli.jobs_cmds", "trainyard.cli.spec_cmds", "trainyard.cli.worker_cmds"}),
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the trainyard modules it imports anywhere in its source (``from trainyard import
    defaults`` is an import of ``trainyard.defaults``; ``from trainyard import submit``, of the package)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                submodules = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in modules]
                targets.update(submodules)
                if len(submodules) < len(node.names):
                    targets.add(node.module)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def _top(module: str) -> str:
    """``trainyard.db.store`` -> ``db``; the package itself -> ``""``."""
    return module.split(".")[1] if "." in module else ""


def _rank(module: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if _top(module) in layer)


def _cycles(graph: dict[str, set[str]]) -> set[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: set[frozenset[str]] = set()

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.add(frozenset(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_every_import_points_to_the_same_layer_or_one_further_left() -> None:
    graph = import_graph()
    upward = {(a, b) for a, targets in graph.items() for b in targets if _rank(b) > _rank(a)}
    assert upward <= KNOWN_UPWARD, sorted(upward - KNOWN_UPWARD)


def test_db_and_specs_do_not_import_each_other() -> None:
    graph = import_graph()
    crossing = {(a, b) for a, targets in graph.items() for b in targets if {_top(a), _top(b)} == {"db", "specs"}}
    assert crossing == set()


def test_no_modules_import_each_other_in_a_circle() -> None:
    cycles = _cycles(import_graph())
    assert cycles <= KNOWN_CYCLES, [sorted(c) for c in cycles - KNOWN_CYCLES]


def test_the_queue_stands_below_the_scheduler_and_the_workers() -> None:
    """The broker stage imports neither of the stages it serves (nor Celery, checked at run time below)."""
    graph = import_graph()
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
    closure = _closure(import_graph(), "trainyard.scheduler.operations")
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
