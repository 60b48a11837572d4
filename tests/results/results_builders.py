"""Spec documents for the results tests: the stored form, with a few fields changed."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

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
