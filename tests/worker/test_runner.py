"""A claimed job trained by the worker's runner in this process (no Celery): every way a job ends."""

from __future__ import annotations

import multiprocessing
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from worker_fixtures import write_spec

from trainyard.config import Settings
from trainyard.db import JobState, Store, Submission, utcnow
from trainyard.queue import reconcile, transport
from trainyard.specs import data_fingerprint, load_data, load_spec
from trainyard.worker import child, runner

pytestmark = pytest.mark.slow


def _queue(store: Store, spec_path: Path, *, fingerprint: str | None = "auto", **overrides: Any) -> int:
    """Queue a job the way submit does: the spec document plus the data fingerprint taken now."""
    spec = load_spec(spec_path, overrides=[f"{k}={v}" for k, v in overrides.items()])
    if fingerprint == "auto":
        fingerprint = data_fingerprint(spec)
    (job,) = store.add_jobs([Submission(spec=spec.document(), data_fingerprint=fingerprint)])
    return job.id


def _train(store: Store, settings: Settings, owner: str = "test@host/1") -> tuple[Any, JobState | None]:
    job = store.claim_next(owner, settings.lease_seconds)
    assert job is not None
    return job, runner.run_job(store, job, owner, settings)


def _diabetes_csv(folder: Path) -> Path:
    from sklearn.datasets import load_diabetes

    frame = load_diabetes(as_frame=True).frame
    path = folder / "diabetes.csv"
    frame.to_csv(path, index=False)
    return path


def _csv_spec(folder: Path, csv: Path) -> Path:
    path = write_spec(folder, "from_csv", epochs=2)
    path.write_text(path.read_text().replace("source: builtin:diabetes", f"source: {csv}"))
    return path


def test_success_stores_every_epoch_once_and_the_model_whose_test_mse_is_reported(
    tmp_path: Path, settings: Settings
) -> None:
    import keras

    store = Store.open(settings.db_url)
    job_id = _queue(store, write_spec(tmp_path, "ok", epochs=3))
    _, state = _train(store, settings)
    assert state is JobState.SUCCEEDED
    job = store.get_job(job_id)
    assert job.state is JobState.SUCCEEDED and job.epochs_done == 3
    assert [e.epoch for e in store.epochs(job_id)] == [1, 2, 3]
    assert job.model_path == str(settings.artifact_root / "jobs" / str(job_id) / "model.keras")
    assert not (settings.artifact_root / "jobs" / str(job_id) / "backup").exists() or not any(
        (settings.artifact_root / "jobs" / str(job_id) / "backup").iterdir()
    )
    # The test MSE in the store is the MSE of the saved model's predictions on the test rows.
    spec = load_spec(write_spec(tmp_path, "ok", epochs=3))
    test = load_data(spec).test
    model = keras.saving.load_model(job.model_path)
    predicted = model.predict(test.x, verbose=0)
    predicted = predicted["y"] if isinstance(predicted, dict) else predicted
    mse = float(np.mean((np.asarray(predicted).reshape(-1) - test.y["y"].reshape(-1)) ** 2))
    assert job.test_mse["y"] == pytest.approx(mse, rel=1e-4)
    assert list(settings.artifact_root.glob("jobs/*/attempt-*")) == []


def test_divergence_fails_the_job_naming_the_epoch(tmp_path: Path, settings: Settings) -> None:
    store = Store.open(settings.db_url)
    job_id = _queue(store, write_spec(tmp_path, "nan", epochs=3, lr=1e12))
    _, state = _train(store, settings)
    job = store.get_job(job_id)
    assert state is JobState.FAILED and job.state is JobState.FAILED
    assert "epoch 1" in (job.error or "") and ("nan" in job.error or "inf" in job.error)
    assert job.model_path is None


def test_cancel_requested_before_the_first_batch_cancels(tmp_path: Path, settings: Settings) -> None:
    store = Store.open(settings.db_url)
    job_id = _queue(store, write_spec(tmp_path, "cancel", epochs=50))
    job = store.claim_next("test@host/1", settings.lease_seconds)
    store.request_cancel(job_id)
    assert runner.run_job(store, job, "test@host/1", settings) is JobState.CANCELLED
    done = store.get_job(job_id)
    assert done.state is JobState.CANCELLED and done.epochs_done < 50
    assert not (settings.artifact_root / "jobs" / str(job_id) / "model.keras").exists()


def test_data_changed_since_submit_fails_without_training(tmp_path: Path, settings: Settings) -> None:
    store = Store.open(settings.db_url)
    csv = _diabetes_csv(tmp_path)
    job_id = _queue(store, _csv_spec(tmp_path, csv))
    with csv.open("a") as fh:
        fh.write("0,0,0,0,0,0,0,0,0,0,100\n")
    _, state = _train(store, settings)
    job = store.get_job(job_id)
    assert state is JobState.FAILED
    assert "changed since submit" in (job.error or "") and str(csv) in job.error
    assert store.epochs(job_id) == []


def test_data_that_disappeared_fails_with_the_file_named(tmp_path: Path, settings: Settings) -> None:
    store = Store.open(settings.db_url)
    csv = _diabetes_csv(tmp_path)
    job_id = _queue(store, _csv_spec(tmp_path, csv))
    csv.unlink()
    _, state = _train(store, settings)
    job = store.get_job(job_id)
    assert state is JobState.FAILED and str(csv) in (job.error or "")


def test_data_outside_the_workers_data_roots_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    monkeypatch.setenv("TRAINYARD_DATA_ROOTS", str(allowed))
    settings = Settings.from_env()
    store = Store.open(settings.db_url)
    job_id = _queue(store, _csv_spec(tmp_path, _diabetes_csv(tmp_path)))
    _, state = _train(store, settings)
    job = store.get_job(job_id)
    assert state is JobState.FAILED and "outside TRAINYARD_DATA_ROOTS" in (job.error or "")


def test_a_worker_that_lost_its_lease_writes_nothing(tmp_path: Path, settings: Settings) -> None:
    store = Store.open(settings.db_url)
    job_id = _queue(store, write_spec(tmp_path, "lost", epochs=3))
    job = store.claim_next("slow@host/1", settings.lease_seconds)
    store.requeue_expired(utcnow() + timedelta(seconds=60))  # its lease expired: queued for another
    assert runner.run_job(store, job, "slow@host/1", settings) is None
    after = store.get_job(job_id)
    assert after.state is JobState.QUEUED and store.epochs(job_id) == []
    assert not (settings.artifact_root / "jobs" / str(job_id) / "model.keras").exists()


def test_shutdown_hands_the_job_back_with_a_fresh_message(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    event = multiprocessing.get_context("fork").Event()
    event.set()
    monkeypatch.setattr(child, "HANDBACK", event)
    store = Store.open(settings.db_url)
    job_id = _queue(store, write_spec(tmp_path, "handback", epochs=50))
    _, state = _train(store, settings)
    job = store.get_job(job_id)
    assert state is None
    assert job.state is JobState.QUEUED and job.attempts == 0  # handing back uses no attempt
    assert job.dispatched_at is None and transport.queue_size(settings) == 0
    assert reconcile(store, settings).redispatched == (job_id,)  # any reconciler pass sends its slot


def test_nothing_to_claim_is_a_quiet_no_op(settings: Settings) -> None:
    assert runner.train_next("test@host", hint_job_id=42, settings=settings) is None


def test_a_trials_end_trains_the_sweeps_next_trials_in_the_same_call(tmp_path: Path, settings: Settings) -> None:
    """One slot's message trains a parallel-1 sweep to its end: each trial's end queues the next and
    the same call claims it, without waiting for the broker; the slots it overtook claim nothing."""
    from trainyard.db import SweepState
    from trainyard.scheduler import sweeps

    write_spec(tmp_path, "base", epochs=2)
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(
        "name: chained\nspec: base.yaml\nmethod: random\ntrials: 3\nparallel: 1\nseed: 3\n"
        "objective: {metric: mse, outputs: {y: 1.0}}\n"
        "parameters:\n  training.optimizer.learning_rate: {log_uniform: [0.001, 0.01]}\n"
    )
    record, queued = sweeps.submit_sweep(sweep_file, settings=settings, build=False)
    assert len(queued) == 1
    store = Store.open(settings.db_url)

    last = runner.train_next("test@host", settings=settings)

    trials = store.sweep_jobs(record.id)
    assert [j.state for j in trials] == [JobState.SUCCEEDED] * 3 and last == trials[-1].id
    assert store.get_sweep(record.id).state is SweepState.FINISHED
    assert all(len(store.epochs(j.id)) == 2 for j in trials)
    assert runner.train_next("test@host", settings=settings) is None  # a later slot: nothing left to claim
