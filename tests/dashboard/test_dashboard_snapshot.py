"""The snapshot reader against a real store (SQLite file and PostgreSQL), filled the way workers fill it."""

from __future__ import annotations

import re
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest
from dashboard_builders import print_to_text

import trainyard.db.store as store_module
from trainyard.dashboard.render import render
from trainyard.dashboard.snapshot import read_snapshot, snapshot_reader
from trainyard.db import JobState, Store, WorkerState, utcnow
from trainyard.db.engine import dispose_all
from trainyard.display import format_mse


def spec_doc(name: str, epochs: int) -> dict:
    return {"name": name, "training": {"epochs": epochs}, "outputs": ["main", "aux"]}


def epoch_metrics(epoch: int, main: float, aux: float) -> dict:
    return {
        "epoch": epoch,
        "loss": main + aux,
        "val_loss": 1.1 * (main + aux),
        "outputs": {"main": {"loss": main * 0.9, "val_mse": main}, "aux": {"loss": aux * 0.9, "val_mse": aux}},
    }


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    url = f"sqlite:///{tmp_path / 'store.sqlite'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    opened = Store.open(url)
    yield opened
    dispose_all()


@pytest.fixture
def busy_store(store: Store, monkeypatch: pytest.MonkeyPatch) -> dict:
    """Six jobs: three queued, one running on ``alpha`` (3 of 5 epochs), one succeeded, one failed;
    worker ``gamma`` sent its last heartbeat two minutes ago."""
    jobs = store.add_jobs([spec_doc(n, 5) for n in ("mlp", "wide_deep", "multi_input", "multi_output", "mlp2", "mlp3")])

    done = store.claim_next("beta")
    store.worker_heartbeat("beta", "cpu-box", ["/cpu:0"], WorkerState.BUSY, done.id)
    for epoch, (main, aux) in enumerate([(1.5, 2.5), (0.61234567, 1.2345678)], start=1):
        store.record_epoch(done.id, "beta", epoch_metrics(epoch, main, aux))
    store.finish(done.id, "beta", JobState.SUCCEEDED, test_mse={"main": 0.6543219, "aux": 1.3456789})

    failed = store.claim_next("beta")
    store.record_epoch(failed.id, "beta", epoch_metrics(1, 3.0, 4.0))
    store.finish(failed.id, "beta", JobState.FAILED, error="Traceback (...)\nTrainingError: epoch 2: loss is nan")
    store.worker_heartbeat("beta", "cpu-box", ["/cpu:0"], WorkerState.IDLE, None)

    running = store.claim_next("alpha")
    store.worker_heartbeat("alpha", "gpu-box", ["/gpu:0", "/gpu:1"], WorkerState.BUSY, running.id)
    for epoch, (main, aux) in enumerate([(2.0, 3.0), (0.9876543, 1.7654321), (1.0123456, 1.5432198)], start=1):
        store.record_epoch(running.id, "alpha", epoch_metrics(epoch, main, aux))

    # gamma went silent two minutes ago: its heartbeat is written with the store's clock set back
    real_now = store_module.utcnow
    monkeypatch.setattr(store_module, "utcnow", lambda: real_now() - timedelta(minutes=2))
    store.worker_heartbeat("gamma", "old-box", ["/cpu:0"], WorkerState.IDLE, None)
    monkeypatch.setattr(store_module, "utcnow", real_now)
    return {"all": jobs, "succeeded": done, "failed": failed, "running": running}


def test_the_snapshot_counts_states_and_holds_the_shown_jobs(store: Store, busy_store: dict):
    snapshot = read_snapshot(store)
    assert snapshot.count(JobState.QUEUED) == 3
    assert snapshot.count(JobState.RUNNING) == 1
    assert snapshot.count(JobState.SUCCEEDED) == 1 and snapshot.count(JobState.FAILED) == 1
    assert snapshot.total_jobs == 6
    assert snapshot.oldest_queued_at == store.get_job(busy_store["all"][3].id).created_at
    assert [r.job.id for r in snapshot.running] == [busy_store["running"].id]
    assert snapshot.running[0].worker == "alpha"
    assert [e.epoch for e in snapshot.running[0].epochs] == [1, 2, 3]
    # newest finished first
    assert [j.id for j in snapshot.recent] == [busy_store["failed"].id, busy_store["succeeded"].id]
    assert [w.name for w in snapshot.workers] == ["alpha", "beta", "gamma"]


def test_the_frame_shows_the_mse_values_stored_for_every_output(store: Store, busy_store: dict):
    snapshot = read_snapshot(store)
    text = print_to_text(render(snapshot, utcnow(), 160), 160)
    running = busy_store["running"]
    epochs = store.epochs(running.id)
    lines = text.splitlines()
    row = next(i for i, line in enumerate(lines) if f"#{running.id} {running.name}" in line)
    for offset, output in enumerate(["main", "aux"]):
        latest = epochs[-1].val_mse[output]
        best = min(e.val_mse[output] for e in epochs)
        assert lines[row + offset].split()[-4:-1] == [output, format_mse(latest), format_mse(best)]
    assert "3/5" in lines[row] and "alpha" in lines[row]

    done = store.get_job(busy_store["succeeded"].id)
    row = next(i for i, line in enumerate(lines) if f"#{done.id} {done.name}" in line)
    for offset, output in enumerate(["main", "aux"]):
        assert lines[row + offset].split()[-3:] == [
            output,
            format_mse(done.val_mse[output]),
            format_mse(done.test_mse[output]),
        ]
    assert "succeeded" in lines[row]
    failed = busy_store["failed"]
    row = next(i for i, line in enumerate(lines) if f"#{failed.id} {failed.name}" in line)
    assert "failed" in lines[row]
    assert "TrainingError: epoch 2: loss is nan" in lines[row + 1]  # the error's last line, under its job

    gamma = next(line for line in lines if "gamma" in line)
    # two minutes since its heartbeat, plus the seconds this test took to get here on a loaded machine
    assert "lost" in gamma and re.search(r"\b2m0\ds ago", gamma), gamma
    alpha = next(line for line in lines if line.strip().startswith("alpha"))
    assert "busy" in alpha and f"#{running.id}" in alpha and "lost" not in alpha


def test_the_json_snapshot_carries_the_stored_values(store: Store, busy_store: dict):
    data = read_snapshot(store).to_json()
    running = busy_store["running"]
    epochs = store.epochs(running.id)
    (shown,) = data["running"]
    assert shown["id"] == running.id and shown["epochs_done"] == 3 and shown["worker"] == "alpha"
    assert shown["outputs"]["main"]["val_mse_by_epoch"] == [e.val_mse["main"] for e in epochs]
    assert shown["outputs"]["aux"]["val_mse"] == epochs[-1].val_mse["aux"]
    done = store.get_job(busy_store["succeeded"].id)
    recent = {job["id"]: job for job in data["recent"]}
    assert recent[done.id]["outputs"]["main"] == {"val_mse": done.val_mse["main"], "test_mse": done.test_mse["main"]}
    assert recent[busy_store["failed"].id]["error"].endswith("loss is nan")
    assert {w["name"]: w["lost"] for w in data["workers"]} == {"alpha": False, "beta": False, "gamma": True}
    assert data["queue"]["counts"] == {
        "queued": 3,
        "running": 1,
        "succeeded": 1,
        "failed": 1,
        "cancelled": 0,
        "pruned": 0,
    }


def test_it_reads_only_what_it_shows(store: Store, busy_store: dict):
    snapshot = read_snapshot(store, recent=1, max_running=0)
    assert [j.id for j in snapshot.recent] == [busy_store["failed"].id]
    assert snapshot.running == () and snapshot.running_not_shown == 1


def test_an_empty_store(store: Store):
    snapshot = read_snapshot(store)
    assert snapshot.total_jobs == 0 and snapshot.oldest_queued_at is None
    assert snapshot.workers == () and snapshot.running == () and snapshot.recent == ()
    assert "No jobs in the store yet" in print_to_text(render(snapshot, utcnow(), 80), 80)


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
def test_reading_needs_no_write_lock_on_sqlite(tmp_path: Path, busy_store: dict, store: Store):
    # A worker in the middle of a write transaction holds the lock; the dashboard reads anyway.
    writer = sqlite3.connect(str(tmp_path / "store.sqlite"), isolation_level=None, timeout=0)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("UPDATE jobs SET priority = priority")
        snapshot = read_snapshot(store)
        writer.execute("ROLLBACK")
    finally:
        writer.close()
    assert snapshot.count(JobState.QUEUED) == 3


def test_jobs_of_a_worker_with_several_pool_processes_are_attributed_to_it(store: Store):
    first, second, _ = store.add_jobs([spec_doc("a", 3), spec_doc("b", 3), spec_doc("c", 3)])
    store.claim_next("celery@box/101")
    store.claim_next("celery@box/102")
    store.worker_heartbeat("celery@box", "box", ["/cpu:0"], WorkerState.BUSY, first.id)  # names one job only
    snapshot = read_snapshot(store)
    assert {r.job.id: r.worker for r in snapshot.running} == {first.id: "celery@box", second.id: "celery@box"}
    row = next(
        line for line in print_to_text(render(snapshot, utcnow(), 160), 160).splitlines() if "celery@box " in line
    )
    assert f"#{first.id}, #{second.id}" in row


def test_the_reader_waits_for_the_store_to_be_created(tmp_path: Path):
    path = tmp_path / "later" / "store.sqlite"
    read = snapshot_reader(f"sqlite:///{path}")
    assert read().total_jobs == 0 and not path.parent.exists()  # nothing created by reading
    try:
        Store.open(f"sqlite:///{path}").add_jobs([spec_doc("mlp", 3)])  # the first submit
        snapshot = read()
        assert snapshot.count(JobState.QUEUED) == 1 and snapshot.source == f"sqlite:///{path}"
    finally:
        dispose_all()
