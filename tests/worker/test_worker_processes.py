"""Real ``celery -A trainyard.worker worker`` processes, on the embedded broker and on Redis + PostgreSQL.

Every slot here is sent by the plain kombu producer of ``trainyard.queue.slots`` (``submit`` and the
reconciler): the workers train what it sends. One test per behaviour; since each worker start costs
seconds of TensorFlow import, the tests of a broker share its workers (module-scoped ``yard`` and
``cluster``), each test submitting jobs of its own. Leases are 3 s, reconciler passes 1 s apart
(``worker_fixtures.FAST``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
from worker_fixtures import FAST, send_pickle_slot, write_spec

from trainyard.config import Settings
from trainyard.db import JobRecord, JobState, Store
from trainyard.queue import send_slots, transport
from trainyard.scheduler import operations
from trainyard.worker.local import LocalWorker, wait_until

pytestmark = pytest.mark.slow

#: Generous bounds for a 2-core machine shared with other work; never a timing assertion.
WAIT = 240.0


@dataclass
class Yard:
    """A store, a broker and the workers on them, shared by the tests of one module."""

    settings: Settings
    env: dict[str, str]
    store: Store
    folder: Path
    workers: dict[str, LocalWorker] = field(default_factory=dict)
    early: dict[str, int] = field(default_factory=dict)  # jobs queued before the first worker started

    def submit(self, name: str, priority: int = 0, **spec: Any) -> int:
        (job,) = operations.submit([write_spec(self.folder, name, **spec)], priority=priority, settings=self.settings)
        return job.id

    def start(self, name: str) -> LocalWorker:
        worker = LocalWorker(f"{name}@%h", self.settings.home / "logs" / f"{name}.log", env=self.env).start()
        self.workers[name] = worker
        return worker

    def alive(self) -> list[LocalWorker]:
        return [w for w in self.workers.values() if w.alive()]

    def logs(self) -> str:
        return "".join(w.log_tail(2000) for w in self.workers.values())

    def finished(self, ids: list[int]) -> list[JobRecord]:
        done = wait_until(lambda: all(j.state.is_finished for j in self.store.get_jobs(ids)), WAIT)
        jobs = self.store.get_jobs(ids)
        assert done, (jobs, "\n".join(w.log_tail(60) for w in self.workers.values()))
        return jobs

    def epochs_done(self, job_id: int, epochs: int) -> JobRecord:
        assert wait_until(lambda: self.store.get_job(job_id).epochs_done >= epochs, WAIT), self.store.get_job(job_id)
        return self.store.get_job(job_id)

    def epochs(self, job_id: int) -> list[int]:
        return [e.epoch for e in self.store.epochs(job_id)]

    def stop(self) -> None:
        for worker in self.workers.values():
            worker.stop(timeout=30)


def _yard(folder: Path, **urls: str) -> Yard:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINYARD_")}
    env.update(FAST, TRAINYARD_HOME=str(folder / "home"), **urls)
    settings = Settings.from_env(env)
    return Yard(settings, env, Store.open(settings.db_url), folder)


def _maps(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


# ---------------------------------------------------------------- the embedded broker, one worker


@pytest.fixture(scope="module")
def yard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Yard]:
    """The embedded broker and worker ``w1``, started once three jobs wait (priorities 0, 5 and 1)."""
    yard = _yard(tmp_path_factory.mktemp("embedded"))
    yard.early = {
        "low": yard.submit("low", priority=0),
        "high": yard.submit("high", priority=5),
        "diverges": yard.submit("diverges", priority=1, lr=1e12),
    }
    yard.start("w1")
    try:
        yield yard
    finally:
        yard.stop()


def test_the_highest_priority_job_waiting_runs_first_and_each_is_trained_once(yard: Yard) -> None:
    early = yard.early
    jobs = {j.id: j for j in yard.finished(list(early.values()))}
    assert sorted(jobs, key=lambda i: jobs[i].started_at) == [early["high"], early["diverges"], early["low"]]
    for job_id in (early["low"], early["high"]):
        job = jobs[job_id]
        assert job.state is JobState.SUCCEEDED, (job.state, job.error)
        assert job.attempts == 1 and yard.epochs(job_id) == [1, 2]
        assert set(job.test_mse) == {"y"} and Path(job.model_path or "").is_file()


def test_a_diverging_job_fails_naming_its_epoch(yard: Yard) -> None:
    (job,) = yard.finished([yard.early["diverges"]])
    assert job.state is JobState.FAILED and "epoch 1: loss is" in (job.error or ""), (job.state, job.error)


def test_a_pickle_message_is_refused_never_loaded(yard: Yard, tmp_path: Path) -> None:
    marker = tmp_path / "pickle-was-loaded"
    refused = yard.logs().count("untrusted content")
    send_pickle_slot(yard.settings, marker)
    assert wait_until(lambda: yard.logs().count("untrusted content") > refused, 60), yard.logs()[-3000:]
    assert not marker.exists()


def test_tensorflow_lives_in_the_pool_children_never_in_the_parent(yard: Yard) -> None:
    (worker,) = yard.alive()

    def children_have_tensorflow() -> bool:
        children = psutil.Process(worker.pid).children()
        return bool(children) and all("tensorflow" in _maps(c.pid) for c in children)

    assert wait_until(children_have_tensorflow, WAIT), worker.log_tail(60)
    assert "tensorflow" not in _maps(worker.pid)


def test_the_same_message_delivered_twice_trains_nothing_again(yard: Yard) -> None:
    (done,) = yard.finished([yard.submit("once")])
    assert done.state is JobState.SUCCEEDED, (done.state, done.error)
    unclaimed = yard.logs().count("nothing to claim")

    send_slots([done.id, done.id], yard.settings)

    assert wait_until(
        lambda: transport.queue_size(yard.settings) == 0 and yard.logs().count("nothing to claim") >= unclaimed + 2, 60
    ), yard.logs()[-3000:]
    again = yard.store.get_job(done.id)
    assert again.attempts == 1 and yard.epochs(done.id) == [1, 2]


def test_sigterm_hands_a_running_job_back_and_the_next_worker_resumes_it(yard: Yard) -> None:
    (stopping,) = yard.alive()
    long = yard.submit("long", epochs=150, batch_size=2)
    yard.epochs_done(long, 2)

    assert stopping.stop() == 0
    handed = yard.store.get_job(long)
    assert handed.state is JobState.QUEUED and handed.attempts == 0 and handed.epochs_done >= 2, handed
    assert any(w.name.startswith("w1@") and w.state.value == "stopped" for w in yard.store.list_workers())

    after = yard.start("w2")  # the reconciler of this worker sends the slot the stopping one did not
    (done,) = yard.finished([long])
    assert done.state is JobState.SUCCEEDED and done.attempts == 1, (done.state, done.attempts, done.error)
    assert yard.epochs(long) == list(range(1, 151))
    assert "resumed after epoch" in after.log_tail(400)


# ---------------------------------------------------------------- Redis and PostgreSQL, two workers


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, module_redis_url: str, module_pg_url: str) -> Iterator[Yard]:
    """Workers ``w1`` and ``w2`` on one Redis queue and one PostgreSQL store, started after the
    broker lost the slots of four queued jobs."""
    yard = _yard(
        tmp_path_factory.mktemp("cluster"), TRAINYARD_BROKER_URL=module_redis_url, TRAINYARD_DB_URL=module_pg_url
    )
    lost = [yard.submit(f"short{i}") for i in range(4)]
    assert transport.queue_size(yard.settings) == 4
    # FLUSHDB of the test run's database: what FLUSHALL does to a broker, without touching other runs' data.
    import redis

    redis.Redis.from_url(module_redis_url).flushdb()
    assert transport.queue_size(yard.settings) == 0
    yard.early = {f"short{i}": job_id for i, job_id in enumerate(lost)}
    yard.start("w1")
    yard.start("w2")
    try:
        yield yard
    finally:
        yard.stop()
        from trainyard.db.engine import dispose_all

        dispose_all()  # before the database is dropped under our pooled connections


@pytest.mark.redis
@pytest.mark.postgres
def test_slots_lost_by_the_broker_are_sent_again_and_each_job_trains_once(cluster: Yard) -> None:
    for job in cluster.finished(list(cluster.early.values())):
        assert job.state is JobState.SUCCEEDED and job.attempts == 1, (job.state, job.attempts, job.error)
        assert cluster.epochs(job.id) == [1, 2]  # two workers, one queue, one store: each job once


@pytest.mark.redis
@pytest.mark.postgres
def test_a_worker_killed_mid_training_loses_nothing_the_other_resumes_its_job(cluster: Yard) -> None:
    assert len(cluster.alive()) == 2
    long = cluster.submit("long", epochs=150, batch_size=2)
    running = cluster.epochs_done(long, 2)
    victim = (running.lease_owner or "").split("@")[0]
    survivor = next(w for name, w in cluster.workers.items() if name != victim and w.alive())

    cluster.workers[victim].kill()

    (done,) = cluster.finished([long])
    assert done.state is JobState.SUCCEEDED and done.attempts == 2, (done.state, done.attempts, done.error)
    assert (done.lease_owner or "").split("@")[0] != victim
    assert cluster.epochs(long) == list(range(1, 151))
    assert "resumed after epoch" in survivor.log_tail(400)


@pytest.mark.redis
@pytest.mark.postgres
def test_a_cancelled_running_job_ends_cancelled_and_its_worker_takes_the_next(cluster: Yard) -> None:
    doomed = cluster.submit("doomed", epochs=5000, batch_size=2)
    cluster.epochs_done(doomed, 1)
    # The dashboard sees the worker busy with it (parent-process heartbeat).
    assert wait_until(
        lambda: any(w.current_job_id == doomed and w.state.value == "busy" for w in cluster.store.list_workers()), 60
    )
    operations.cancel([doomed], settings=cluster.settings)
    after = cluster.submit("after")
    cancelled, finished = cluster.finished([doomed, after])
    assert cancelled.state is JobState.CANCELLED and cancelled.epochs_done < 5000
    assert finished.state is JobState.SUCCEEDED


# ---------------------------------------------------------------- several replicas in one process


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
    assert wait_until(lambda: store.get_job(mirrored.id).state.is_finished, WAIT), worker.log_tail(60)
    done = store.get_job(mirrored.id)
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
