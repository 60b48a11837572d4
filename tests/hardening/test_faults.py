"""Faults a long-running installation meets: a broker that goes away, a database that drops its
connections, a full or unwritable disk, and a job that kills its own process every time.

Real worker processes (``celery -A trainyard.worker worker``) with short leases
(``worker_support.FAST``); never a timing assertion, only generous bounds on waits.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from trainyard.config import Settings
from trainyard.db import JobState, Store
from trainyard.scheduler import operations
from trainyard.worker.local import LocalWorker, wait_until
from worker_support import write_spec

pytestmark = pytest.mark.slow

WAIT = 240.0


def _submit(folder: Path, name: str, settings: Settings, **spec: Any) -> int:
    (job,) = operations.submit([write_spec(folder, name, **spec)], settings=settings)
    return job.id


def _finished(store: Store, ids: list[int], workers: list[LocalWorker], wait: float = WAIT) -> list[Any]:
    done = wait_until(lambda: all(j.state.is_finished for j in store.get_jobs(ids)), wait)
    jobs = store.get_jobs(ids)
    assert done, (jobs, "\n".join(w.log_tail(80) for w in workers))
    return jobs


def _epochs(store: Store, job_id: int) -> list[int]:
    return [e.epoch for e in store.epochs(job_id)]


# ---------------------------------------------------------------- PostgreSQL drops the connection

WORKER_APP = "trainyard-hardening-worker"
EPOCHS = 200


@pytest.mark.postgres
def test_terminated_postgres_backends_mid_write_lose_and_double_no_metric(
    tmp_path: Path, env: dict[str, str], pg_url: str, monkeypatch: pytest.MonkeyPatch, start_worker: Any
) -> None:
    """The worker's own backends are terminated while they write an epoch (held on a table lock
    so the kill lands inside the transaction); the worker retries and every epoch is stored once."""
    monkeypatch.setenv("TRAINYARD_DB_URL", pg_url)
    settings = Settings.from_env()
    store = Store.open(pg_url)
    job_id = _submit(tmp_path, "pg", settings, epochs=EPOCHS, batch_size=2)
    # The worker's connections carry an application name: the test terminates only those, in its own database.
    worker_env = {**env, "TRAINYARD_DB_URL": f"{pg_url}?application_name={WORKER_APP}", "TRAINYARD_LEASE_SECONDS": "30"}
    worker = start_worker("pgdrop", worker_env)
    assert wait_until(lambda: store.get_job(job_id).epochs_done >= 2, WAIT), worker.log_tail(60)

    database = sa.engine.make_url(pg_url).database
    admin = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT")
    blocked = sa.text(
        "SELECT pid FROM pg_stat_activity WHERE datname = :db AND application_name = :app AND wait_event_type = 'Lock'"
    )
    kills = 0
    try:
        with admin.connect() as watcher:
            for _ in range(3):
                with sa.create_engine(pg_url).connect() as locker:
                    locker.execute(sa.text("LOCK TABLE epoch_metrics IN EXCLUSIVE MODE"))  # record_epoch waits here
                    assert wait_until(lambda: bool(watcher.execute(blocked, {"db": database, "app": WORKER_APP}).all()), 60), (
                        store.get_job(job_id), watcher.execute(sa.text("SELECT application_name, state, wait_event_type, query FROM pg_stat_activity WHERE datname = :db"), {"db": database}).all())
                    for (pid,) in watcher.execute(blocked, {"db": database, "app": WORKER_APP}).all():
                        kills += watcher.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
                    locker.rollback()
    finally:
        admin.dispose()
    assert kills >= 3

    (job,) = _finished(store, [job_id], [worker])
    assert job.state is JobState.SUCCEEDED and job.attempts == 1, (job, worker.log_tail(80))
    assert _epochs(store, job_id) == list(range(1, EPOCHS + 1))
    assert worker.alive()
