"""Helpers of the results tests: jobs stored and ended through the store's worker API (no training)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from trainyard.db import JobState, Store, Submission

#: A stored spec document with two outputs, as ``JobSpec.document()`` writes one.
BASE = {
    "name": "mlp",
    "data": {"source": "builtin:diabetes", "split": {"valid": 0.2, "test": 0.2, "seed": 42}},
    "inputs": {"features": {"columns": ["age", "bmi", "bp"], "normalize": False}},
    "layers": [
        {"name": "dense_1", "type": "Dense", "input": "features", "args": {"units": 8, "activation": "relu"}},
        {"name": "dense_2", "type": "Dense", "input": "dense_1", "args": {"units": 4}},
    ],
    "outputs": {
        "y": {"input": "dense_2", "target": ["target"], "loss": "mean_squared_error", "weight": 1.0},
        "aux": {"input": "dense_2", "target": ["target"], "loss": "mean_squared_error", "weight": 0.1},
    },
    "training": {"optimizer": {"name": "adam", "learning_rate": 0.01}, "epochs": 3, "batch_size": 32, "seed": 42},
}

Play = Callable[..., int]


def document(**changes: Any) -> dict[str, Any]:
    """BASE with ``changes`` applied: ``{"training.optimizer.learning_rate": 0.1, "layers[0].args.units": 16}``."""
    doc = copy.deepcopy(BASE)
    for path, value in changes.items():
        parts = path.replace("[", ".").replace("]", "").split(".")
        target: Any = doc
        for part in parts[:-1]:
            target = target[int(part)] if part.isdigit() else target[part]
        last = parts[-1]
        if last.isdigit():
            target[int(last)] = value
        else:
            target[last] = value
    return doc


@pytest.fixture
def play() -> Play:
    """``play(store, doc, val=[...], test={...}, end=SUCCEEDED, tags=())``: one job stored, claimed,
    one epoch per value of ``val`` (the val MSE of ``y``; ``aux`` gets twice it) and ended in ``end``."""

    def run(
        store: Store,
        doc: dict[str, Any],
        val: Sequence[float] = (3.0, 2.0),
        test: dict[str, float] | None = None,
        end: JobState | None = JobState.SUCCEEDED,
        tags: Sequence[str] = (),
    ) -> int:
        (job,) = store.add_jobs([Submission(spec=doc, tags=tuple(tags))])
        if end is None:
            return job.id
        claimed = store.claim_next("results-test/1")
        assert claimed is not None and claimed.id == job.id
        for epoch, value in enumerate(val, start=1):
            outputs = {
                "y": {"loss": value + 1, "val_metrics": {"mse": value, "mae": value / 2}},
                "aux": {"loss": value + 2, "val_metrics": {"mse": 2 * value, "mae": value}},
            }
            store.record_epoch(
                job.id, "results-test/1", {"epoch": epoch, "loss": value + 3, "val_loss": value, "outputs": outputs}
            )
        store.finish(
            job.id,
            "results-test/1",
            end,
            error=None if end is JobState.SUCCEEDED else "stopped",
            test_mse=test if test is not None else {"y": val[-1] + 0.5, "aux": 2 * val[-1] + 0.5},
        )
        return job.id

    return run
