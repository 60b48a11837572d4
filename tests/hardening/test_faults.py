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


# ---------------------------------------------------------------- a job that always crashes its process


def test_a_job_that_kills_its_process_every_time_fails_after_the_attempt_limit(
    tmp_path: Path, env: dict[str, str], start_worker: Any
) -> None:
    """Each attempt's pool child is killed with SIGKILL, as the kernel's out-of-memory killer would:
    the job ends ``failed`` with the reason after ``max_attempts`` starts, and the worker lives on."""
    settings = Settings.from_env()
    store = Store.open(settings.db_url)
    doomed = _submit(tmp_path, "oom", settings, epochs=5000, batch_size=2)
    worker = start_worker("crashy", env)
    killed: set[str] = set()

    def kill_each_attempt() -> bool:
        job = store.get_job(doomed)
        owner = job.lease_owner or ""
        if job.state is JobState.RUNNING and owner and owner not in killed:
            os.kill(int(owner.rsplit("/", 1)[1]), signal.SIGKILL)
            killed.add(owner)
        return job.state.is_finished

    assert wait_until(kill_each_attempt, WAIT), (store.get_job(doomed), worker.log_tail(80))
    job = store.get_job(doomed)
    assert job.state is JobState.FAILED and job.attempts == job.max_attempts == 3, job
    assert len(killed) == 3 and "worker lost 3 times" in (job.error or ""), (killed, job.error)

    # The worker (its parent process) lives on and trains the next job.
    after = _submit(tmp_path, "after", settings, epochs=2)
    (done,) = _finished(store, [after], [worker])
    assert done.state is JobState.SUCCEEDED and worker.alive()


# ---------------------------------------------------------------- full or unwritable disk

#: RLIMIT_FSIZE of the worker in the disk-full test: a file may not grow past this many bytes.
FILE_SIZE_LIMIT = 8 * 2**20


def test_a_full_or_unwritable_artifact_disk_fails_the_job_with_the_reason_and_the_worker_lives_on(
    tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch, start_worker: Any
) -> None:
    artifacts = tmp_path / "artifacts"
    artifacts.write_text("a file where the artifact folder should be\n")  # unwritable, even for root
    monkeypatch.setenv("TRAINYARD_ARTIFACT_ROOT", str(artifacts))
    settings = Settings.from_env()
    store = Store.open(settings.db_url)
    # The worker's files may not grow past 8 MiB: what a full disk does to the first big write.
    worker = start_worker("disk", dict(os.environ), wrap=["prlimit", f"--fsize={FILE_SIZE_LIMIT}", "--"])

    unwritable = _submit(tmp_path, "unwritable", settings, epochs=2)
    (job,) = _finished(store, [unwritable], [worker])
    assert job.state is JobState.FAILED, job
    assert job.error == f"cannot write the job's files in {artifacts}/jobs/{unwritable}: Not a directory", job.error
    assert job.attempts == 1 and worker.alive()

    artifacts.unlink()
    artifacts.mkdir()
    big = write_spec(tmp_path, "big", epochs=2)
    big.write_text(big.read_text().replace("units: 8", "units: 2048}\n  - {type: Dense, units: 2048"))
    (too_big,) = operations.submit([big], settings=settings)
    (job,) = _finished(store, [too_big.id], [worker])
    assert job.state is JobState.FAILED, job
    assert job.error == f"cannot write the job's files in {artifacts}/jobs/{too_big.id}: File too large", job.error
    assert job.attempts == 1 and worker.alive()

    fits = _submit(tmp_path, "fits", settings, epochs=2)
    (job,) = _finished(store, [fits], [worker])
    assert job.state is JobState.SUCCEEDED and Path(job.model_path or "").is_file(), job
    assert worker.alive()
