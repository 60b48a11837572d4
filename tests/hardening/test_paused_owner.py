"""A worker paused past its lease (SIGSTOP: a frozen VM, a swapped-out host) comes back after its job
moved on to another worker. Real worker processes on Redis and PostgreSQL; only generous bounds on waits.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
from worker_fixtures import write_spec

from trainyard.config import Settings
from trainyard.db import JobState, Store
from trainyard.scheduler import operations
from trainyard.worker.local import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

WAIT = 300.0
EPOCHS = 400


def _pid(owner: str | None) -> int:
    return int((owner or "/0").rsplit("/", 1)[1])


def test_a_paused_owner_that_comes_back_neither_fails_the_job_nor_spoils_its_backup(
    tmp_path: Path, env: dict[str, str], pg_url: str, redis_url: str, start_worker: Any
) -> None:
    """Two workers, a 6 s lease, a backup every epoch. The owner's training process is stopped right
    after an epoch is stored (so, often, while it writes that epoch's backup), the other worker takes
    the job over and resumes it from the backup, then the first one is let go again: it sees it lost
    the job and stops, and the job succeeds with every epoch stored once. (Before backups had
    per-run file names, the new owner failed the job on the old owner's lock of the shared
    temporary file, three times out of three.)"""
    worker_env = {
        **env,
        "TRAINYARD_DB_URL": pg_url,
        "TRAINYARD_BROKER_URL": redis_url,
        "TRAINYARD_LEASE_SECONDS": "6",
        "TRAINYARD_HEARTBEAT_SECONDS": "1",
        "TRAINYARD_BACKUP_SECONDS": "0",
    }
    settings = Settings.from_env(worker_env)
    store = Store.open(settings.db_url)
    (job,) = operations.submit([write_spec(tmp_path, "paused", epochs=EPOCHS, batch_size=2)], settings=settings)
    workers = [start_worker("first", worker_env), start_worker("second", worker_env)]
    logs = lambda: "\n".join(w.log_tail(60) for w in workers)  # noqa: E731

    assert wait_until(lambda: store.get_job(job.id).epochs_done >= 3, WAIT), logs()
    stored = store.get_job(job.id).epochs_done
    assert wait_until(lambda: store.get_job(job.id).epochs_done > stored, WAIT, interval=0.01), logs()
    first = store.get_job(job.id)
    paused = _pid(first.lease_owner)
    os.kill(paused, signal.SIGSTOP)  # right after an epoch is stored: often inside its backup
    try:
        taken = wait_until(
            lambda: (
                (j := store.get_job(job.id)).state is JobState.RUNNING
                and j.lease_owner not in (None, first.lease_owner)
                and j.epochs_done >= first.epochs_done + 3
            ),
            WAIT,
        )
        assert taken, (store.get_job(job.id), logs())
    finally:
        os.kill(paused, signal.SIGCONT)
    new_owner = store.get_job(job.id).lease_owner

    assert wait_until(lambda: store.get_job(job.id).state.is_finished, WAIT, interval=0.5), logs()
    done = store.get_job(job.id)
    assert done.state is JobState.SUCCEEDED, (done, logs())
    assert done.attempts == 2 and done.lease_owner == new_owner, done
    assert [e.epoch for e in store.epochs(job.id)] == list(range(1, EPOCHS + 1))
    assert Path(done.model_path or "").is_file()
    text = "".join(w.log_path.read_text(errors="replace") for w in workers)
    assert f"job {job.id}: resumed after epoch" in text, logs()
    assert "lost its lease" in text, logs()  # the paused owner noticed, and wrote nothing more
    assert "cannot write the job's files" not in text and "Traceback" not in text, logs()
    assert not (settings.artifact_root / "jobs" / str(job.id) / "backup").exists()
    assert all(w.alive() for w in workers)
