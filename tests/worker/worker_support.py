"""Helpers shared by the worker tests: tiny specs and the fast-lease environment."""

from __future__ import annotations

from pathlib import Path

#: Short leases and fast loops so that a killed worker's job comes back within seconds.
FAST = {
    "TRAINYARD_LEASE_SECONDS": "3",
    "TRAINYARD_HEARTBEAT_SECONDS": "0.5",
    "TRAINYARD_RECONCILE_SECONDS": "1",
    "TRAINYARD_BACKUP_SECONDS": "0",  # a backup every epoch: a killed job always has one to resume from
    "TF_CPP_MIN_LOG_LEVEL": "2",
}

TINY_SPEC = """\
name: {name}
data:
  source: builtin:diabetes
  split: {{valid: 0.2, test: 0.2, seed: 1}}
inputs: [age, sex, bmi, bp, s1, s2, s3, s4, s5, s6]
layers:
  - {{type: Dense, units: 8, activation: relu}}
outputs:
  y: {{target: target, loss: mean_squared_error}}
training:
  optimizer: {{name: adam, learning_rate: {lr}}}
  epochs: {epochs}
  batch_size: {batch_size}
"""


def write_spec(folder: Path, name: str, epochs: int = 2, lr: float = 0.01, batch_size: int = 32) -> Path:
    """A tiny spec on scikit-learn's diabetes data: one hidden layer, one output ``y``."""
    path = folder / f"{name}.yaml"
    path.write_text(TINY_SPEC.format(name=name, epochs=epochs, lr=lr, batch_size=batch_size))
    return path
