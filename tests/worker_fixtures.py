"""Worker test fixtures and helpers, one copy for every test folder (registered by ``tests/conftest.py``).

``env`` (short leases and fast loops) and its ``settings``, ``start_worker`` (real ``celery -A trainyard.worker worker``
processes, stopped after the test), and the tiny specs of :func:`write_spec`. Test modules import
the helpers with ``from worker_fixtures import FAST, write_spec``: ``tests/`` is on ``sys.path``
(``pythonpath`` in pyproject's pytest settings).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from trainyard.config import Settings
from trainyard.queue import slots, transport
from trainyard.worker.local import LocalWorker

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

#: ``start_worker(name, env, concurrency=1, wrap=None)``: ``wrap`` prefixes the command (``["nice", "-n", "10"]``).
StartWorker = Callable[..., LocalWorker]


def write_spec(folder: Path, name: str, epochs: int = 2, lr: float = 0.01, batch_size: int = 32) -> Path:
    """A tiny spec on scikit-learn's diabetes data: one hidden layer, one output ``y``."""
    path = folder / f"{name}.yaml"
    path.write_text(TINY_SPEC.format(name=name, epochs=epochs, lr=lr, batch_size=batch_size))
    return path


class Evil:
    """Unpickling this creates ``marker``: proof that a worker deserialized pickle."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (os.system, (f"touch {self.marker}",))


def send_pickle_slot(settings: Settings, marker: Path) -> None:
    """A slot as an attacker would send it: the task message of a real slot, but pickled, with an
    argument whose unpickling creates ``marker``. Workers accept JSON only and must refuse it."""
    with transport.connection(settings.broker_url) as conn, conn.Producer() as producer:
        slots.publish(producer, slots.slot_message(Evil(marker)), serializer="pickle")


@pytest.fixture
def env(home: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The environment of this test and of the workers it starts (fast leases, temp home)."""
    for key, value in FAST.items():
        monkeypatch.setenv(key, value)
    return dict(os.environ)


@pytest.fixture
def settings(env: dict[str, str]) -> Settings:
    """The settings of that environment."""
    return Settings.from_env()


@pytest.fixture
def start_worker(home: Path) -> Iterator[StartWorker]:
    """``start_worker(name, env, concurrency=1, wrap=None)`` starts a real Celery worker named
    ``<name>@<host>``, logging to ``$TRAINYARD_HOME/logs/<name>.log``; all are stopped after the test."""
    started: list[LocalWorker] = []

    def start(name: str, env: dict[str, str], concurrency: int = 1, wrap: Sequence[str] | None = None) -> LocalWorker:
        worker = LocalWorker(f"{name}@%h", home / "logs" / f"{name}.log", concurrency=concurrency, env=env)
        if wrap:
            worker.argv = [*wrap, *worker.argv]
        started.append(worker.start())
        return worker

    yield start
    for worker in started:
        worker.stop(timeout=30)


def article_spec(path: Path | str, overrides: Sequence[str] = ()) -> Any:
    """A spec of ``specs/`` as the article trained it: no standardization of inputs or targets, plain
    SGD. The example specs add both (they make the models learn); tests that compare with the
    article's own Keras script (its layers, plain ``model.fit``) use this."""
    from trainyard.specs import load_spec

    spec = load_spec(path, check_data=False)
    plain = [f"inputs.{name}.normalize=false" for name in spec.inputs if spec.inputs[name].normalize]
    plain += [f"outputs.{name}.normalize=false" for name in spec.outputs]
    return load_spec(path, overrides=[*plain, "training.optimizer=sgd", *overrides])
