"""The broker side without worker processes: configuration, dispatch, queue sizes, unreachable brokers."""

from __future__ import annotations

import subprocess
import sys

import kombu
import pytest

from trainyard.config import Settings
from trainyard.db import Store
from trainyard.errors import BrokerError
from trainyard.worker import broker
from trainyard.worker.app import make_app
from trainyard.worker.dispatch import check_broker, dispatch, send_slots

# A port nothing listens on: connecting fails at once.
DEAD_REDIS = "redis://:s3cret-pw@127.0.0.1:1/0"


def test_importing_the_worker_app_imports_no_tensorflow() -> None:
    code = (
        "import sys, trainyard.worker, trainyard.worker.tasks, trainyard.worker.dispatch; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras') or m == 'trainyard.training']; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_app_accepts_json_only_and_acknowledges_late(settings: Settings) -> None:
    conf = make_app(settings).conf
    assert conf.accept_content == ["json"]
    assert (conf.task_serializer, conf.result_serializer) == ("json", "json")
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert conf.worker_proc_alive_timeout >= 60
    assert conf.task_default_queue == "trainyard"


def test_embedded_broker_is_a_sqlite_file_in_the_home(settings: Settings) -> None:
    conf = broker.celery_conf(settings.broker_url)
    assert conf["broker_url"] == f"trainyard+sqlite:///{settings.home / 'broker.sqlite'}"
    assert kombu.Connection(conf["broker_url"]).transport_cls == "trainyard"  # any kombu client parses it
    assert conf["broker_transport_options"] == {}  # kombu would pass any option to create_engine


def test_redis_gets_a_long_visibility_timeout_and_rediss_verifies_certificates() -> None:
    plain = broker.celery_conf("redis://:pw@cache:6379/0")
    assert plain["broker_transport_options"]["visibility_timeout"] >= 24 * 3600
    assert plain["broker_use_ssl"] is None
    tls = broker.celery_conf("rediss://:pw@cache:6380/0")
    import ssl

    assert tls["broker_use_ssl"] == {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    # ssl_* query parameters are the user's choice; kombu reads them from the URL
    assert broker.celery_conf("rediss://cache:6380/0?ssl_cert_reqs=optional")["broker_use_ssl"] is None


def test_dispatch_sends_one_message_per_job_and_marks_them(settings: Settings) -> None:
    store = Store.open(settings.db_url)
    jobs = store.add_jobs([{"name": f"j{i}", "training": {"epochs": 2}} for i in range(3)])
    assert broker.queue_size(settings) == 0
    assert dispatch([j.id for j in jobs], settings) == 3
    assert broker.queue_size(settings) == 3
    assert all(j.dispatched_at is not None for j in store.get_jobs([j.id for j in jobs]))


@pytest.mark.redis
def test_queue_size_on_redis_counts_waiting_messages(redis_url: str, home: object) -> None:
    settings = Settings.from_env({"TRAINYARD_HOME": str(home), "TRAINYARD_BROKER_URL": redis_url})
    assert broker.queue_size(settings) == 0  # no queue yet
    check_broker(settings)
    assert send_slots([1, 2], settings) == 2
    assert broker.queue_size(settings) == 2
    import redis

    redis.Redis.from_url(redis_url).flushall()
    assert broker.queue_size(settings) == 0
    assert send_slots([3], settings) == 1  # the queue and its binding are declared again
    assert broker.queue_size(settings) == 1


def test_unreachable_broker_is_named_without_its_password(home: object) -> None:
    settings = Settings.from_env({"TRAINYARD_HOME": str(home), "TRAINYARD_BROKER_URL": DEAD_REDIS})
    for call in (
        lambda: check_broker(settings),
        lambda: send_slots([1], settings),
        lambda: broker.queue_size(settings),
    ):
        with pytest.raises(BrokerError) as caught:
            call()
        message = str(caught.value)
        assert "redis://:***@127.0.0.1:1/0" in message
        assert "s3cret-pw" not in message


def test_dispatch_to_an_unreachable_broker_leaves_jobs_undispatched(home: object) -> None:
    settings = Settings.from_env({"TRAINYARD_HOME": str(home), "TRAINYARD_BROKER_URL": DEAD_REDIS})
    store = Store.open(settings.db_url)
    (job,) = store.add_jobs([{"name": "j", "training": {"epochs": 2}}])
    with pytest.raises(BrokerError):
        dispatch([job.id], settings)
    assert store.get_job(job.id).dispatched_at is None
