"""The reconciler against real brokers: lost messages and expired leases come back, nothing twice."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from trainyard.config import Settings
from trainyard.db import JobState, Store, utcnow
from trainyard.queue import dispatch, reconcile, transport

DOC = {"name": "j", "training": {"epochs": 2}}


def _settings(home: Path, broker_url: str | None) -> Settings:
    env = {"TRAINYARD_HOME": str(home), "TRAINYARD_MAX_ATTEMPTS": "2"}
    if broker_url:
        env["TRAINYARD_BROKER_URL"] = broker_url
    return Settings.from_env(env)


@pytest.fixture(params=["embedded", pytest.param("redis", marks=pytest.mark.redis)])
def settings(request: pytest.FixtureRequest, home: Path) -> Settings:
    if request.param == "redis":
        return _settings(home, request.getfixturevalue("redis_url"))
    return _settings(home, None)


def _purge(settings: Settings) -> None:
    with transport.connection(settings.broker_url) as conn, conn.channel() as channel:
        channel.queue_declare("trainyard", durable=True, auto_delete=False)
        channel.queue_purge("trainyard")


def test_lost_messages_are_sent_again_once(settings: Settings) -> None:
    store = Store.open(settings.db_url)
    jobs = store.add_jobs([DOC] * 3)
    ids = [j.id for j in jobs]
    dispatch(ids, settings, store=store)
    _purge(settings)  # the broker lost every message (Redis flush, broker restart)
    # Within the grace period a recently dispatched job is left alone: its message may be in flight.
    assert reconcile(store, settings).redispatched == ()
    later = utcnow() + timedelta(seconds=60)
    report = reconcile(store, settings, now=later)
    assert sorted(report.redispatched) == ids
    assert transport.queue_size(settings) == 3
    # The broker now holds a slot per queued job: nothing more is sent.
    assert reconcile(store, settings, now=later + timedelta(seconds=60)).redispatched == ()
    assert transport.queue_size(settings) == 3


def test_only_the_missing_messages_are_sent_oldest_dispatch_first(settings: Settings) -> None:
    store = Store.open(settings.db_url)
    old, new, never = (j.id for j in store.add_jobs([DOC] * 3))
    now = utcnow()
    store.mark_dispatched([old], at=now - timedelta(minutes=10))
    store.mark_dispatched([new], at=now - timedelta(minutes=1))
    dispatch([new], settings, store=store)  # one message in the broker for three queued jobs
    store.mark_dispatched([new], at=now - timedelta(minutes=1))
    report = reconcile(store, settings, now=now)
    assert (report.queued, report.in_broker) == (3, 1)
    assert list(report.redispatched) == [never, old]


def test_expired_leases_are_requeued_then_failed_after_max_attempts(settings: Settings) -> None:
    store = Store.open(settings.db_url)
    assert settings.max_attempts == 2
    (job,) = store.add_jobs([DOC], max_attempts=settings.max_attempts)
    assert store.claim_next("dead-worker/1", lease_seconds=1) is not None
    report = reconcile(store, settings, now=utcnow() + timedelta(seconds=5))
    assert report.requeued == (job.id,)
    assert report.redispatched == (job.id,)  # requeued jobs have no message: sent at once
    assert store.get_job(job.id).state is JobState.QUEUED
    assert store.claim_next("dead-worker/2", lease_seconds=1) is not None  # second and last attempt
    report = reconcile(store, settings, now=utcnow() + timedelta(seconds=5))
    assert report.failed == (job.id,), (report, store.get_job(job.id))
    failed = store.get_job(job.id)
    assert failed.state is JobState.FAILED
    assert "dead-worker/2" in (failed.error or "")


def test_unreachable_broker_is_reported_and_expired_leases_still_requeued(home: Path) -> None:
    settings = _settings(home, "redis://:pw@127.0.0.1:1/0")
    store = Store.open(settings.db_url)
    (job,) = store.add_jobs([DOC])
    store.claim_next("dead-worker/1", lease_seconds=1)
    report = reconcile(store, settings, now=utcnow() + timedelta(seconds=5))
    assert report.requeued == (job.id,)
    assert report.redispatched == ()
    assert report.broker_error and "127.0.0.1:1" in report.broker_error and ":pw@" not in report.broker_error
