"""The job store goes away while a job trains, and a paused worker comes back after its job moved on.

Real worker processes (``celery -A trainyard.worker worker``) on Redis, real PostgreSQL servers:
a private one that the outage test stops and starts (the shared server stays up for everything
else), the shared one for the paused owner. Never a timing assertion, only generous bounds on waits.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from worker_fixtures import write_spec

from trainyard.config import Settings
from trainyard.db import JobState, Store
from trainyard.db.engine import dispose_all
from trainyard.scheduler import operations
from trainyard.worker.local import LocalWorker, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

WAIT = 300.0


def _finished(store: Store, job_id: int, workers: list[LocalWorker]) -> Any:
    done = wait_until(lambda: store.get_job(job_id).state.is_finished, WAIT, interval=0.5)
    job = store.get_job(job_id)
    assert done, (job, "\n".join(w.log_tail(80) for w in workers))
    return job


def _resumed_after(workers: list[LocalWorker], job_id: int) -> list[int]:
    """The epochs each resumed attempt of the job started after, from the workers' logs."""
    text = "".join(w.log_path.read_text(errors="replace") for w in workers)
    return [int(n) for n in re.findall(rf"job {job_id}: resumed after epoch (\d+)", text)]


# ---------------------------------------------------------------- PostgreSQL stopped for longer than the retry window

#: How long the worker retries a store write before it calls the attempt interrupted (the default is
#: 20 s; shortened here so that the outage below outlasts it in a few seconds), and the outage.
RETRY_SECONDS = 4.0
OUTAGE_SECONDS = 12.0


def test_postgres_stopped_longer_than_the_retry_window_interrupts_the_attempt_and_the_job_resumes(
    tmp_path: Path, env: dict[str, str], redis_url: str, private_postgres: Any, start_worker: Any
) -> None:
    """The issue's probe, shortened: the default lease (60 s), a backup every epoch, and the store
    stopped for longer than the worker retries a write. The attempt is interrupted, not failed: the
    backup stays, the job is handed back once the store answers (its attempt not counted), and the
    next attempt resumes from the backup; every epoch is stored once."""
    store_env = {
        "TRAINYARD_DB_URL": private_postgres.url,
        "TRAINYARD_BROKER_URL": redis_url,
        "TRAINYARD_LEASE_SECONDS": "60",
        "TRAINYARD_HEARTBEAT_SECONDS": "5",
        "TRAINYARD_BACKUP_SECONDS": "0",
        "TRAINYARD_STORE_RETRY_SECONDS": str(RETRY_SECONDS),
    }
    worker_env = {**env, **store_env}
    settings = Settings.from_env(worker_env)
    store = Store.open(settings.db_url)
    epochs = 60
    (job,) = operations.submit([write_spec(tmp_path, "outage", epochs=epochs, batch_size=2)], settings=settings)
    worker = start_worker("outage", worker_env)
    try:
        assert wait_until(lambda: store.get_job(job.id).epochs_done >= 5, WAIT), worker.log_tail(60)
        private_postgres.stop()
        stopped = time.monotonic()
        interrupted = wait_until(lambda: "store cannot be reached" in worker.log_tail(400), 120)
        time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - stopped)))
    finally:
        if not private_postgres.running():
            private_postgres.start()
    assert interrupted, worker.log_tail(80)
    dispose_all()  # this process's pooled connections died with the server

    done = _finished(store, job.id, [worker])
    assert done.state is JobState.SUCCEEDED, (done, worker.log_tail(80))
    assert done.attempts == 1, done  # handed back: the interrupted attempt was not counted
    assert [e.epoch for e in store.epochs(job.id)] == list(range(1, epochs + 1))
    resumed = _resumed_after([worker], job.id)
    assert resumed and resumed[-1] >= 5, worker.log_tail(80)
    assert Path(done.model_path or "").is_file()
    assert not (Path(settings.artifact_root) / "jobs" / str(job.id) / "backup").exists()
    assert worker.alive()
