"""Faults a long-running installation meets: a broker that goes away, a database that drops its
connections, a full or unwritable disk, and a job that kills its own process every time.

Real worker processes (``celery -A trainyard.worker worker``) with short leases
(``worker_fixtures.FAST``); never a timing assertion, only generous bounds on waits.
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
from click.testing import CliRunner
from worker_fixtures import send_pickle_slot, write_spec

from trainyard.cli import main
from trainyard.config import Settings
from trainyard.db import JobState, Store
from trainyard.errors import BrokerError
from trainyard.scheduler import operations
from trainyard.worker.local import LocalWorker, wait_until

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
                    assert wait_until(
                        lambda: bool(watcher.execute(blocked, {"db": database, "app": WORKER_APP}).all()), 60
                    ), (
                        store.get_job(job_id),
                        watcher.execute(
                            sa.text(
                                "SELECT application_name, state, wait_event_type, query FROM pg_stat_activity WHERE datname = :db"
                            ),
                            {"db": database},
                        ).all(),
                    )
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


# ---------------------------------------------------------------- Redis stopped for 30 s

OUTAGE_SECONDS = 30.0


def test_redis_stopped_for_30_s_while_jobs_are_queued_and_running(
    tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch, private_redis: Any, start_worker: Any
) -> None:
    """A private, password-protected redis-server without persistence is stopped for 30 s and started
    again empty: the workers reconnect, the reconcilers send the lost messages, every job finishes
    once. The password appears in no log, no ``trainyard show`` and no dashboard; pickle is refused."""
    monkeypatch.setenv("TRAINYARD_BROKER_URL", private_redis.url)
    env = dict(os.environ)
    settings = Settings.from_env()
    store = Store.open(settings.db_url)
    ids = [_submit(tmp_path, f"job{i}", settings, epochs=30, batch_size=4) for i in range(6)]
    workers = [start_worker("r1", env), start_worker("r2", env)]
    pids = [w.pid for w in workers]
    assert wait_until(lambda: store.count_by_state().get(JobState.RUNNING, 0) == 2, WAIT), [
        w.log_tail(40) for w in workers
    ]

    private_redis.stop()
    stopped = time.monotonic()
    with pytest.raises(BrokerError) as down:  # submitted during the outage: stored, dispatched later
        _submit(tmp_path, "during", settings, epochs=30, batch_size=4)
    assert private_redis.password not in str(down.value)
    (during,) = [j.id for j in store.list_jobs() if j.name == "during"]
    time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - stopped)))
    private_redis.start()  # same port, no data: every message that waited in it is gone

    jobs = _finished(store, [*ids, during], workers)
    for job in jobs:
        assert job.state is JobState.SUCCEEDED and job.attempts == 1, job
        assert _epochs(store, job.id) == list(range(1, 31))
    assert [w.pid for w in workers] == pids and all(w.alive() for w in workers)  # reconnected, not restarted
    assert "Connection to broker lost" in "".join(w.log_tail(2000) for w in workers)

    # A pickle message on this broker is refused, never loaded.
    marker = tmp_path / "pickle-was-loaded"
    send_pickle_slot(settings, marker)
    assert wait_until(lambda: "untrusted content" in "".join(w.log_tail(2000) for w in workers), 60)
    assert not marker.exists()

    # The password: in no worker log, no CLI screen, no dashboard.
    screens = [
        CliRunner().invoke(main, args).output
        for args in (
            ["show", str(ids[0])],
            ["show", str(ids[0]), "--json"],
            ["jobs"],
            ["dashboard", "--once"],
            ["dashboard", "--json"],
            ["reconcile"],
        )
    ]
    logs = [w.log_path.read_text(errors="replace") for w in workers]
    assert all(private_redis.password not in text for text in screens + logs)
    assert any(":***@" in text or ":**@" in text for text in logs)  # the URL is shown, redacted


# ---------------------------------------------------------------- a lease lost mid-run, resumed elsewhere


def test_a_lease_lost_mid_run_then_resumed_elsewhere_leaves_no_gap_in_the_epochs(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """The first owner's lease expires while it trains (a starved or paused worker); the job is
    requeued and resumed by another owner from the backup. The backup must never hold epochs the
    store does not: the resumed run's epochs continue the stored ones, with no gap (found by the
    concurrent-submit load test, where a starved worker lost its lease)."""
    from datetime import timedelta

    from trainyard.db import utcnow
    from trainyard.worker import runner

    settings = Settings.from_env()
    store = Store.open(settings.db_url)
    (job,) = operations.submit(
        [write_spec(tmp_path, "lost", epochs=100_000, batch_size=64)], settings=settings, dispatch=False
    )

    def run(owner: str) -> threading.Thread:
        claimed = store.claim_next(owner, settings.lease_seconds)
        assert claimed is not None and claimed.id == job.id
        thread = threading.Thread(target=runner.run_job, args=(store, claimed, owner, settings), daemon=True)
        thread.start()
        return thread

    first = run("first@test/1")
    assert wait_until(lambda: store.get_job(job.id).epochs_done >= 20, WAIT)
    assert [j.id for j in store.requeue_expired(utcnow() + timedelta(seconds=600))] == [job.id]
    first.join(120)
    assert not first.is_alive()

    second = run("second@test/2")
    stored = store.get_job(job.id).epochs_done
    assert wait_until(lambda: store.get_job(job.id).epochs_done >= stored + 20, WAIT)
    store.request_cancel(job.id)
    second.join(120)
    done = store.get_job(job.id)
    assert done.state is JobState.CANCELLED and done.attempts == 2, done
    assert _epochs(store, job.id) == list(range(1, done.epochs_done + 1))
