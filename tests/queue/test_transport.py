"""The broker transport without worker processes: configuration, queue sizes, unreachable brokers,
and the warning filters of the program using it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import kombu
import pytest

from trainyard.config import Settings
from trainyard.errors import BrokerError
from trainyard.queue import check_broker, send_slots, transport

# A port nothing listens on: connecting fails at once.
DEAD_REDIS = "redis://:s3cret-pw@127.0.0.1:1/0"


def test_embedded_broker_is_a_sqlite_file_in_the_home(settings: Settings) -> None:
    conf = transport.celery_conf(settings.broker_url)
    assert conf["broker_url"] == f"trainyard+sqlite:///{settings.home / 'broker.sqlite'}"
    assert kombu.Connection(conf["broker_url"]).transport_cls == "trainyard"  # any kombu client parses it
    assert conf["broker_transport_options"] == {}  # kombu would pass any option to create_engine


def test_redis_gets_a_long_visibility_timeout_and_rediss_verifies_certificates() -> None:
    plain = transport.celery_conf("redis://:pw@cache:6379/0")
    assert plain["broker_transport_options"]["visibility_timeout"] >= 24 * 3600
    assert plain["broker_use_ssl"] is None
    tls = transport.celery_conf("rediss://:pw@cache:6380/0")
    import ssl

    assert tls["broker_use_ssl"] == {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    # ssl_* query parameters are the user's choice; kombu reads them from the URL
    assert transport.celery_conf("rediss://cache:6380/0?ssl_cert_reqs=optional")["broker_use_ssl"] is None


@pytest.mark.redis
def test_queue_size_on_redis_counts_waiting_messages(redis_url: str, home: object) -> None:
    settings = Settings.from_env({"TRAINYARD_HOME": str(home), "TRAINYARD_BROKER_URL": redis_url})
    assert transport.queue_size(settings) == 0  # no queue yet
    check_broker(settings)
    assert send_slots([1, 2], settings) == 2
    assert transport.queue_size(settings) == 2
    import redis

    redis.Redis.from_url(redis_url).flushdb()  # this test's database only: the server is shared
    assert transport.queue_size(settings) == 0
    assert send_slots([3], settings) == 1  # the queue and its binding are declared again
    assert transport.queue_size(settings) == 1


def test_unreachable_broker_is_named_without_its_password(home: object) -> None:
    settings = Settings.from_env({"TRAINYARD_HOME": str(home), "TRAINYARD_BROKER_URL": DEAD_REDIS})
    for call in (
        lambda: check_broker(settings),
        lambda: send_slots([1], settings),
        lambda: transport.queue_size(settings),
    ):
        with pytest.raises(BrokerError) as caught:
            call()
        message = str(caught.value)
        assert "redis://:***@127.0.0.1:1/0" in message
        assert "s3cret-pw" not in message


def test_is_embedded_is_the_one_test_of_the_embedded_broker(home: Path) -> None:
    assert transport.is_embedded(Settings.from_env().broker_url)  # the default: no server needed
    for url in ("sqla+sqlite:///b.sqlite", "sqlalchemy+sqlite:///b.sqlite", "trainyard+sqlite:///b.sqlite"):
        assert transport.is_embedded(url), url
    for url in ("redis://127.0.0.1:6379/0", "rediss://:pw@cache:6380/0", "amqp://guest@rabbit//"):
        assert not transport.is_embedded(url), url


#: A program with warning filters of its own: every warning shown (none hidden by a filter of
#: trainyard's), every one collected. It imports trainyard, then uses the embedded broker.
USER_PROGRAM = """
import warnings
warnings.resetwarnings()
warnings.simplefilter("always")
warnings.filterwarnings("error", message="a filter of the program's own")
mine = list(warnings.filters)
shown = []
warnings.showwarning = lambda message, category, *rest, **kw: shown.append(f"{category.__name__}: {message}")

import trainyard, trainyard.scheduler, trainyard.queue, trainyard.worker
assert warnings.filters == mine, ("importing trainyard changed the filters", warnings.filters[:3])

from trainyard.config import Settings
from trainyard.queue import check_broker, queue_size, send_slots

settings = Settings.from_env()
check_broker(settings)
send_slots([1, 2], settings)
assert queue_size(settings) == 2
assert warnings.filters == mine, ("the embedded broker changed the filters", warnings.filters[:3])
print([text for text in shown if "noload" in text])
"""


def test_the_embedded_broker_leaves_the_programs_warning_filters_alone_and_hides_only_kombus_warning(
    home: Path,
) -> None:
    """kombu's models use ``lazy="noload"``, deprecated in SQLAlchemy 2.1: the deprecation is
    raised once per process, when those models are first used. It is not shown, and the program's
    own filters are the same before and after importing trainyard and using the embedded broker."""
    done = subprocess.run([sys.executable, "-c", USER_PROGRAM], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


#: Waits for the moment given, then sends one slot (the first use of the broker file in this process).
FIRST_USE = """
import sys, time
from trainyard.config import Settings
from trainyard.queue import send_slots
settings = Settings.from_env()
while time.time() < float(sys.argv[1]):
    pass
send_slots([1], settings)
"""


def test_processes_opening_a_new_embedded_broker_at_once_all_reach_it(tmp_path: Path) -> None:
    """``trainyard run`` starts its worker while it submits: both open a broker file that does not
    exist yet. kombu's transport raced there ("table kombu_queue already exists", a UNIQUE failure
    on the queue's row); each of four processes starting together must now send its slot."""
    import os
    import time

    for trial in range(3):
        home = tmp_path / f"trial{trial}"
        env = {**os.environ, "TRAINYARD_HOME": str(home)}
        env.pop("TRAINYARD_BROKER_URL", None)
        at = time.time() + 4.0  # after every process has imported trainyard
        processes = [
            subprocess.Popen([sys.executable, "-c", FIRST_USE, str(at)], env=env, stderr=subprocess.PIPE, text=True)
            for _ in range(4)
        ]
        errors = [p.communicate(timeout=120)[1] for p in processes]
        assert [p.returncode for p in processes] == [0] * 4, "\n".join(e[-1500:] for e in errors if e)
        assert transport.queue_size(Settings.from_env(env)) == 4


def test_the_embedded_broker_deletes_what_it_delivers(settings: Settings) -> None:
    """kombu's SQLAlchemy transport would keep every consumed message row for ever (and scan them on
    every poll): the embedded broker's table holds only the messages still waiting."""
    import sqlalchemy as sa

    send_slots([1, 2, 3], settings)
    with transport.connection(settings.broker_url) as conn, conn.SimpleQueue(transport.defaults.QUEUE) as queue:
        for _ in range(2):
            queue.get(timeout=5).ack()
        assert transport.queue_size(settings) == 1
    database = settings.broker_url.split("///", 1)[1]
    engine = sa.create_engine(f"sqlite:///{database}")
    with engine.connect() as db:
        rows = db.execute(sa.text("SELECT COUNT(*), SUM(visible) FROM kombu_message")).one()
    engine.dispose()
    assert tuple(rows) == (1, 1)


def test_a_worker_asked_to_shut_down_stops_waiting_for_the_embedded_broker(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Celery's loop for a polling transport looks at a shutdown request only between two waits for
    a message: the embedded broker's wait ends as soon as the worker's shutdown flag is set (Celery
    sets it to the exit code, 0 included), instead of lasting its whole timeout."""
    import threading

    from celery.worker import state

    check_broker(settings)
    conn = transport.connection(settings.broker_url)
    queue = kombu.Queue("shutdown-test", kombu.Exchange("shutdown-test"), "shutdown-test")
    consumer = kombu.Consumer(conn, [queue], callbacks=[lambda body, message: message.ack()])
    consumer.consume()
    monkeypatch.setattr(state, "should_stop", 0)  # a warm shutdown with exit code 0
    outcome: list[BaseException] = []

    def wait() -> None:
        try:
            conn.drain_events(timeout=3600)  # an hour: kombu's own polling would wait it out
        except BaseException as exc:  # noqa: BLE001 - checked below
            outcome.append(exc)

    waiting = threading.Thread(target=wait, daemon=True)
    waiting.start()
    waiting.join(60)
    assert not waiting.is_alive() and len(outcome) == 1 and isinstance(outcome[0], TimeoutError)
    monkeypatch.setattr(state, "should_stop", None)
    consumer.cancel()
    conn.release()
