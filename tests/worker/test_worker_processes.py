"""Real ``celery -A trainyard.worker worker`` processes, on the embedded broker and on Redis + PostgreSQL.

Each worker start costs seconds of TensorFlow import, so each test walks through several scenarios
with the same workers. Leases are 3 s, reconciler passes 1 s apart (``worker_fixtures.FAST``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from worker_fixtures import write_spec

from trainyard.config import Settings
from trainyard.db import JobState, Store
from trainyard.queue import send_slots, transport
from trainyard.scheduler import operations
from trainyard.worker.local import LocalWorker, wait_until

pytestmark = pytest.mark.slow

#: Generous bounds for a 2-core machine shared with other work; never a timing assertion.
WAIT = 240.0


def _submit(folder: Path, name: str, settings: Settings, priority: int = 0, **spec: Any) -> int:
    (job,) = operations.submit([write_spec(folder, name, **spec)], priority=priority, settings=settings)
    return job.id


def _wait_finished(store: Store, ids: list[int], worker_logs: list[LocalWorker]) -> list[Any]:
    finished = wait_until(lambda: all(j.state.is_finished for j in store.get_jobs(ids)), WAIT)
    jobs = store.get_jobs(ids)
    assert finished, (jobs, "\n".join(w.log_tail(60) for w in worker_logs))
    return jobs


def _wait_epochs(store: Store, job_id: int, epochs: int) -> Any:
    assert wait_until(lambda: store.get_job(job_id).epochs_done >= epochs, WAIT), store.get_job(job_id)
    return store.get_job(job_id)


def _epochs(store: Store, job_id: int) -> list[int]:
    return [e.epoch for e in store.epochs(job_id)]


def _maps(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


class Evil:
    """Unpickling this creates ``marker``: proof that a worker deserialized pickle."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (os.system, (f"touch {self.marker}",))


def _send_pickle(settings: Settings, marker: Path) -> None:
    from trainyard.queue import TRAIN_NEXT
    from trainyard.worker.app import app

    with transport.connection(settings.broker_url) as conn, conn.Producer() as producer:
        app.send_task(TRAIN_NEXT, args=[Evil(marker)], queue="trainyard", producer=producer, serializer="pickle")


def test_embedded_broker_priorities_duplicates_pickle_divergence_and_graceful_handback(
    tmp_path: Path, env: dict[str, str], settings: Settings, start_worker: Any
) -> None:
    store = Store.open(settings.db_url)
    low = _submit(tmp_path, "low", settings, priority=0)
    high = _submit(tmp_path, "high", settings, priority=5)
    nan = _submit(tmp_path, "diverges", settings, priority=1, lr=1e12)
    marker = tmp_path / "pickle-was-loaded"
    _send_pickle(settings, marker)

    w1 = start_worker("w1", env)
    jobs = {j.id: j for j in _wait_finished(store, [low, high, nan], [w1])}

    # Priorities: all three were queued before the worker started; the highest ran first.
    assert sorted(jobs, key=lambda i: jobs[i].started_at) == [high, nan, low]
    for job_id in (low, high):
        job = jobs[job_id]
        assert job.state is JobState.SUCCEEDED, (job.state, job.error)
        assert job.attempts == 1 and _epochs(store, job_id) == [1, 2]
        assert set(job.test_mse) == {"y"} and Path(job.model_path or "").is_file()
    assert jobs[nan].state is JobState.FAILED and "epoch 1" in (jobs[nan].error or "")

    # JSON only: the pickle message was refused, never loaded.
    assert not marker.exists()
    assert wait_until(lambda: "untrusted content" in w1.log_tail(400), 30), w1.log_tail(60)

    # TensorFlow lives in the pool child, never in the worker's parent process.
    import psutil

    children = psutil.Process(w1.pid).children()
    assert children and all("tensorflow" in _maps(c.pid) for c in children)
    assert "tensorflow" not in _maps(w1.pid)

    # The same message delivered twice: the job is not trained again.
    send_slots([high, high], settings)
    assert wait_until(
        lambda: transport.queue_size(settings) == 0 and w1.log_tail(400).count("nothing to claim") >= 2, 60
    )
    again = store.get_job(high)
    assert again.attempts == 1 and _epochs(store, high) == [1, 2]

    # SIGTERM while training: the job is handed back (no attempt used), and another worker resumes it.
    long = _submit(tmp_path, "long", settings, epochs=150, batch_size=2)
    _wait_epochs(store, long, 2)
    assert w1.stop() == 0
    handed = store.get_job(long)
    assert handed.state is JobState.QUEUED and handed.attempts == 0 and handed.epochs_done >= 2, handed
    assert any(w.name.startswith("w1@") and w.state.value == "stopped" for w in store.list_workers())
    w2 = start_worker("w2", env)
    (done,) = _wait_finished(store, [long], [w2])
    assert done.state is JobState.SUCCEEDED and done.attempts == 1, (done.state, done.attempts, done.error)
    assert _epochs(store, long) == list(range(1, 151))
    assert "resumed after epoch" in w2.log_tail(400)


@pytest.mark.redis
@pytest.mark.postgres
def test_two_workers_on_redis_and_postgres_survive_a_flush_a_kill_and_a_cancel(
    tmp_path: Path,
    env: dict[str, str],
    redis_url: str,
    pg_url: str,
    monkeypatch: pytest.MonkeyPatch,
    start_worker: Any,
) -> None:
    import redis

    monkeypatch.setenv("TRAINYARD_BROKER_URL", redis_url)
    monkeypatch.setenv("TRAINYARD_DB_URL", pg_url)
    env = dict(os.environ)
    settings = Settings.from_env()
    store = Store.open(settings.db_url)

    # Jobs queued, then every message lost: the workers' reconcilers send them again.
    short = [_submit(tmp_path, f"short{i}", settings) for i in range(4)]
    assert transport.queue_size(settings) == 4
    # FLUSHDB of the test's database: what FLUSHALL does to a broker, without touching other tests' data.
    redis.Redis.from_url(redis_url).flushdb()
    assert transport.queue_size(settings) == 0

    w1 = start_worker("w1", env)
    w2 = start_worker("w2", env)
    workers = {"w1": w1, "w2": w2}
    for job in _wait_finished(store, short, [w1, w2]):
        assert job.state is JobState.SUCCEEDED and job.attempts == 1, (job.state, job.attempts, job.error)
        assert _epochs(store, job.id) == [1, 2]  # two workers, one queue, one store: each job once
    assert wait_until(lambda: {w.name.split("@")[0] for w in store.list_workers()} >= {"w1", "w2"}, 30)

    # kill -9 of the worker training a job: it resumes on the other worker, every epoch stored once.
    long = _submit(tmp_path, "long", settings, epochs=150, batch_size=2)
    running = _wait_epochs(store, long, 2)
    victim = (running.lease_owner or "").split("@")[0]
    survivor = workers["w2" if victim == "w1" else "w1"]
    workers[victim].kill()
    (done,) = _wait_finished(store, [long], [survivor])
    assert done.state is JobState.SUCCEEDED and done.attempts == 2, (done.state, done.attempts, done.error)
    assert (done.lease_owner or "").split("@")[0] != victim
    assert _epochs(store, long) == list(range(1, 151))
    assert "resumed after epoch" in survivor.log_tail(400)

    # Cancel of a running job: it ends cancelled and the worker takes the next job.
    doomed = _submit(tmp_path, "doomed", settings, epochs=5000, batch_size=2)
    _wait_epochs(store, doomed, 1)
    # The dashboard sees the worker busy with it (parent-process heartbeat).
    assert wait_until(
        lambda: any(w.current_job_id == doomed and w.state.value == "busy" for w in store.list_workers()), 60
    )
    operations.cancel([doomed], settings=settings)
    after = _submit(tmp_path, "after", settings)
    cancelled, finished = _wait_finished(store, [doomed, after], [survivor])
    assert cancelled.state is JobState.CANCELLED and cancelled.epochs_done < 5000
    assert finished.state is JobState.SUCCEEDED


def test_multi_replica_worker_matches_single_device_training(
    tmp_path: Path, env: dict[str, str], settings: Settings, start_worker: Any
) -> None:
    """A worker whose process has two logical CPU devices trains with MirroredStrategy over both;
    its metrics match single-device training of the same spec (run here, in the test process)."""
    from trainyard.worker import runner

    store = Store.open(settings.db_url)
    spec = write_spec(tmp_path, "mirrored", epochs=3, batch_size=16)
    (mirrored,) = operations.submit([spec], settings=settings)
    worker = start_worker("mirror", {**env, "TRAINYARD_LOGICAL_CPUS": "2"})
    (done,) = _wait_finished(store, [mirrored.id], [worker])
    assert done.state is JobState.SUCCEEDED, (done.state, done.error)
    assert "2 replicas (MirroredStrategy)" in worker.log_tail(400)
    worker.stop()

    (single,) = operations.submit([spec], settings=settings, dispatch=False)
    claimed = store.claim_next("here@test/1", settings.lease_seconds)
    assert claimed is not None and claimed.id == single.id
    assert runner.run_job(store, claimed, "here@test/1", settings) is JobState.SUCCEEDED
    pairs = list(zip(store.epochs(mirrored.id), store.epochs(single.id), strict=True))
    assert len(pairs) == 3
    for a, b in pairs:
        assert a.loss == pytest.approx(b.loss, rel=2e-3)
        assert a.outputs["y"]["val_mse"] == pytest.approx(b.outputs["y"]["val_mse"], rel=2e-3)
    assert store.get_job(mirrored.id).test_mse["y"] == pytest.approx(store.get_job(single.id).test_mse["y"], rel=2e-3)
