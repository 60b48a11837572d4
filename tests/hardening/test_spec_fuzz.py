"""A property-based fuzzer over job specs: hypothesis mutates valid specs (the four in specs/, one on
CSV files, one with every section) and submits each result into a real SQLite store.

Every result is either one queued job, or a :class:`SpecError` whose every problem has a path, with
the store unchanged: never another exception, never a half-stored job.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trainyard.config import Settings
from trainyard.db import Store
from trainyard.errors import SpecError
from trainyard.scheduler import operations

REPO = Path(__file__).resolve().parents[2]

CSV_SPEC: dict[str, Any] = {
    "name": "from_files",
    "data": {"train": "train.csv", "valid": "valid.csv"},
    "inputs": {"wide": {"columns": ["a"]}, "deep": {"columns": ["a", "b"], "normalize": True}},
    "layers": [
        {"name": "h", "type": "Dense", "units": 3, "activation": "relu", "input": "deep"},
        {"name": "drop", "type": "Dropout", "rate": 0.1},
        {"name": "cat", "type": "Concatenate", "input": ["wide", "drop"]},
    ],
    "outputs": {
        "y": {"input": "cat", "target": "y", "loss": "mean_squared_error", "weight": 0.5},
        "z": {"input": "h", "target": ["y", "b"], "loss": "mean_absolute_error"},
    },
    "training": {"optimizer": {"name": "adam", "learning_rate": 0.01}, "epochs": 3, "batch_size": 4, "seed": 1},
}

BASES = [yaml.safe_load((REPO / "specs" / name).read_text()) for name in sorted((REPO / "specs").glob("*.yaml"))]
BASES.append(CSV_SPEC)

#: Values a spec written in a hurry may hold anywhere.
ODD = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(
        [
            "Dense",
            "Lambda",
            "relu",
            "os.system",
            "../../etc/passwd",
            "builtin:nope",
            "${HOME}",
            "Concatenate",
            "features",
            "h",
            "y",
            "target",
            "mse",
            "adam",
            "-1",
            "1e9",
            "",
            " ",
        ]
    ),
    st.lists(st.integers(min_value=-3, max_value=5), max_size=3),
    st.dictionaries(
        st.sampled_from(["class_name", "module", "name", "units", "type", "config"]), st.text(max_size=5), max_size=3
    ),
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place inside a document: mapping keys and list indexes."""
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, prefix + (index,))
    return found


@st.composite
def mutated_specs(draw: st.DrawFn) -> dict[str, Any]:
    doc = copy.deepcopy(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        places = [p for p in _paths(doc) if p]
        path = draw(st.sampled_from(places))
        parent: Any = doc
        for step in path[:-1]:
            parent = parent[step]
        last = path[-1]
        action = draw(st.sampled_from(["replace", "delete", "add", "duplicate", "rename"]))
        if action == "replace":
            parent[last] = draw(ODD)
        elif action == "delete":
            del parent[last]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.sampled_from(["extra", "units", "input", "type", "activation", "columns", "split"]))] = draw(
                ODD
            )
        elif action == "duplicate" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[last]))
        elif action == "rename" and isinstance(parent, dict):
            parent[draw(st.text(min_size=0, max_size=8))] = parent.pop(last)
    return doc


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("fuzz")
    rows = "a,b,y\n" + "".join(f"{i},{i % 5},{3 * i % 11}\n" for i in range(30))
    (folder / "train.csv").write_text(rows)
    (folder / "valid.csv").write_text(rows)
    return folder


def _count(store: Store) -> tuple[int, ...]:
    jobs = store.list_jobs()
    return (len(jobs), sum(len(store.epochs(j.id)) for j in jobs))


@pytest.mark.slow
def test_mutated_specs_give_a_job_or_a_spec_error_with_paths(
    workdir: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("TRAINYARD_HOME", str(home))
    monkeypatch.delenv("TRAINYARD_DB_URL", raising=False)
    monkeypatch.delenv("TRAINYARD_DATA_ROOTS", raising=False)
    monkeypatch.chdir(workdir)  # relative CSV paths of dict specs resolve here, the default data root
    config = Settings.from_env()
    store = Store.open(config.db_url)
    outcomes = {"job": 0, "error": 0}

    # Every base is valid: the mutations, not the bases, make the errors.
    for base in BASES:
        operations.submit([copy.deepcopy(base)], dispatch=False, settings=config)

    @settings(
        max_examples=600,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(mutated_specs())
    def check(doc: dict[str, Any]) -> None:
        before = _count(store)
        try:
            jobs = operations.submit([doc], dispatch=False, settings=config)
        except SpecError as exc:
            assert exc.problems, exc
            assert all(p.path for p in exc.problems), exc.problems
            assert _count(store) == before  # nothing stored, not even part of a job
            outcomes["error"] += 1
            return
        assert len(jobs) == 1 and _count(store) == (before[0] + 1, before[1])
        stored = store.get_job(jobs[0].id).spec_document
        assert stored is not None and not _has_non_finite(stored)
        outcomes["job"] += 1

    check()
    print("fuzzer outcomes:", outcomes)
    assert outcomes["error"] > 50 and outcomes["job"] > 0, outcomes  # the fuzzer reached both sides


def _has_non_finite(node: Any) -> bool:
    if isinstance(node, float):
        return not math.isfinite(node)
    if isinstance(node, dict):
        return any(_has_non_finite(v) for v in node.values())
    if isinstance(node, list):
        return any(_has_non_finite(v) for v in node)
    return False
