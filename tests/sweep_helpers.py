"""Sweeps in a store without workers, for the tests of sweeps and of what shows them: a sweep file
beside a tiny spec, and trials "trained" by claiming them and recording made-up epochs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from worker_fixtures import write_spec

from trainyard.db import JobRecord, JobState, Store
from trainyard.sweeps import advance, load_sweep, store_sweep


def sweep_file(folder: Path, body: str, epochs: int = 4) -> Path:
    write_spec(folder, "tiny", epochs=epochs)
    path = folder / "sweep.yaml"
    path.write_text("spec: tiny.yaml\n" + body)
    return path


def submit(store: Store, path: Path) -> int:
    plan = load_sweep(path, (path.parent,), "the test folder", build=False)
    return store_sweep(store, plan.name, plan.definition, plan.spec, plan.context).id


def queued(store: Store, sweep_id: int) -> list[int]:
    return [job for progress in advance(store, sweep_id) for job in progress.queued]


def fake_loss(params: dict[str, Any]) -> float:
    """A made-up validation MSE, smallest near learning rate 0.01 and width 16."""
    lr = float(params.get("training.optimizer.learning_rate", 0.01))
    units = float(params.get("layers[0].units", 16))
    return 1000 * abs(lr - 0.01) + abs(units - 16) + 1.0


def train_next(store: Store, epochs: int | None = None, state: JobState = JobState.SUCCEEDED) -> JobRecord:
    """Claim the next queued trial and 'train' it: its epochs' MSE falls towards ``fake_loss``."""
    job = store.claim_next("w1/1")
    assert job is not None and job.params is not None
    final = fake_loss(job.params)
    for k in range(1, (epochs or job.epochs_total) + 1):
        store.record_epoch(
            job.id, "w1/1", {"epoch": k, "loss": 1.0, "outputs": {"y": {"val_mse": final * (1 + 1 / k)}}}
        )
    store.finish(job.id, "w1/1", state)
    return store.get_job(job.id)


def drain(store: Store, sweep_id: int) -> None:
    """Train the sweep's trials one at a time, asking for more as they end, until it is finished."""
    while True:
        advance(store, sweep_id)
        if store.count_jobs(JobState.QUEUED) == 0:
            return
        train_next(store)
