"""Worker test fixtures: tiny specs, an environment with short leases, real worker processes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from worker_support import FAST

from trainyard.config import Settings
from trainyard.worker.local import LocalWorker


@pytest.fixture
def env(home: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The environment of this test and of the workers it starts (fast leases, temp home)."""
    for key, value in FAST.items():
        monkeypatch.setenv(key, value)
    return dict(os.environ)


@pytest.fixture
def settings(env: dict[str, str]) -> Settings:
    return Settings.from_env()


@pytest.fixture
def start_worker(home: Path) -> Iterator[object]:
    """``start_worker(name, env, concurrency=1)`` starts a real Celery worker; all are stopped after the test."""
    started: list[LocalWorker] = []

    def start(name: str, env: dict[str, str], concurrency: int = 1) -> LocalWorker:
        worker = LocalWorker(f"{name}@%h", home / "logs" / f"{name}.log", concurrency=concurrency, env=env)
        started.append(worker.start())
        return worker

    yield start
    for worker in started:
        worker.stop(timeout=30)
