"""The worker's StoreSink writes epochs in a thread of its own: all of them, in order, never behind a backup."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from worker_fixtures import write_spec

from trainyard.config import Settings
from trainyard.db import JobState, Store
from trainyard.specs import load_spec
from trainyard.training import train
from trainyard.worker.lease import Lease
from trainyard.worker.runner import StoreSink

OWNER = "test@host/1"


def _claimed(store: Store, epochs: int) -> int:
    (job,) = store.add_jobs([{"name": "sink", "training": {"epochs": epochs}}])
    assert store.claim_next(OWNER) is not None
    return job.id


def _metrics(epoch: int) -> dict:
    return {
        "epoch": epoch,
        "loss": 1.0 / epoch,
        "val_loss": 2.0 / epoch,
        "outputs": {"y": {"loss": 1.0 / epoch, "val_mse": 2.0 / epoch}},
    }


def test_every_epoch_is_stored_in_order_once_flushed(settings: Settings) -> None:
    store = Store.open(settings.db_url)
    job_id = _claimed(store, 40)
    lease = Lease(store, job_id, OWNER, 60, 30).start()
    sink = StoreSink(store, job_id, OWNER, lease)
    for epoch in range(1, 41):
        sink.on_epoch(_metrics(epoch))
    sink.flush()
    assert [e.epoch for e in store.epochs(job_id)] == list(range(1, 41))
    assert store.get_job(job_id).epochs_done == 40 and store.get_job(job_id).val_mse == {"y": 2.0 / 40}
    sink.close()
    lease.stop()


class CountingStore:
    """The real store, counting the transactions that write epochs."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.writes: list[int] = []  # epochs per write

    def record_epochs(self, job_id: int, owner: str, epochs: Any) -> int:
        self.writes.append(len(epochs))
        return self.store.record_epochs(job_id, owner, epochs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def test_epochs_that_end_close_together_are_written_in_one_transaction(settings: Settings) -> None:
    """A small model's epochs end every few milliseconds: writing each in its own transaction (and
    thread wake-up) slowed its training by half. The first epoch is written at once (progress shows),
    the next ones wait for the write interval or a flush, and a flush writes them all."""
    store = Store.open(settings.db_url)
    job_id = _claimed(store, 40)
    lease = Lease(store, job_id, OWNER, 60, 30).start()
    counting = CountingStore(store)
    sink = StoreSink(counting, job_id, OWNER, lease, write_seconds=30.0)  # type: ignore[arg-type]
    sink.on_epoch(_metrics(1))
    deadline = time.monotonic() + 10
    while not store.epochs(job_id) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [e.epoch for e in store.epochs(job_id)] == [1]
    for epoch in range(2, 41):
        sink.on_epoch(_metrics(epoch))
    time.sleep(0.2)
    assert [e.epoch for e in store.epochs(job_id)] == [1]  # waiting for the interval
    sink.flush()
    assert [e.epoch for e in store.epochs(job_id)] == list(range(1, 41))
    assert counting.writes == [1, 39]
    assert store.get_job(job_id).epochs_done == 40
    sink.close()
    lease.stop()


def test_a_lease_taken_by_another_worker_stops_the_training(settings: Settings) -> None:
    store = Store.open(settings.db_url)
    job_id = _claimed(store, 5)
    lease = Lease(store, job_id, OWNER, 60, 30).start()
    sink = StoreSink(store, job_id, OWNER, lease)
    sink.on_epoch(_metrics(1))
    sink.flush()
    store.finish(job_id, OWNER, JobState.FAILED, error="taken away")  # the job is no longer ours
    sink.on_epoch(_metrics(2))
    sink.flush()
    assert lease.lost and sink.should_stop()
    assert [e.epoch for e in store.epochs(job_id)] == [1]
    sink.close()
    lease.stop()


class SlowStore:
    """The real store, with each epoch write taking longer than an epoch of the tiny model."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def record_epochs(self, *args: Any) -> int:
        time.sleep(0.3)
        return self.store.record_epochs(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def test_a_backup_never_runs_ahead_of_the_stored_epochs(tmp_path: Path, settings: Settings) -> None:
    """Each backup (here after every epoch) finds its epoch, and every earlier one, in the store,
    even when writing an epoch takes longer than training one."""
    store = Store.open(settings.db_url)
    spec = load_spec(write_spec(tmp_path, "sink", epochs=6))
    (job,) = store.add_jobs([spec.document()])
    assert store.claim_next(OWNER) is not None
    lease = Lease(store, job.id, OWNER, 60, 30).start()
    backup = tmp_path / "backup"
    seen: list[tuple[int, list[int]]] = []

    class Watching(StoreSink):
        def on_epoch(self, metrics) -> None:  # type: ignore[no-untyped-def]
            state = backup / "state.json"
            if state.exists():  # the backup of the previous epoch, written after the last flush
                seen.append((json.loads(state.read_text())["epoch"], [e.epoch for e in store.epochs(job.id)]))
            super().on_epoch(metrics)

    sink = Watching(SlowStore(store), job.id, OWNER, lease)  # type: ignore[arg-type]
    train(spec, sink, model_path=tmp_path / "m.keras", backup_dir=backup, backup_interval=0.0)
    sink.close()
    lease.stop()
    assert [epoch for epoch, _ in seen] == [1, 2, 3, 4, 5]
    assert all(stored == list(range(1, epoch + 1)) for epoch, stored in seen)
    assert [e.epoch for e in store.epochs(job.id)] == [1, 2, 3, 4, 5, 6]
