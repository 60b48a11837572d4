"""Sending slots with the plain kombu producer: the message is Celery's own, field by field.

A real worker training a job whose slot this producer sent is in ``tests/worker/test_worker_processes.py``
(every ``submit`` there dispatches through it): on the embedded broker, and on Redis + PostgreSQL.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest

from trainyard import defaults
from trainyard.config import Settings
from trainyard.db import Store
from trainyard.errors import BrokerError
from trainyard.queue import TRAIN_NEXT, dispatch, send_slots, transport

# A port nothing listens on: connecting fails at once.
DEAD_REDIS = "redis://:s3cret-pw@127.0.0.1:1/0"


@pytest.fixture(params=["embedded", pytest.param("redis", marks=pytest.mark.redis)])
def broker_settings(request: pytest.FixtureRequest, home: Path) -> Settings:
    env = {"TRAINYARD_HOME": str(home)}
    if request.param == "redis":
        env["TRAINYARD_BROKER_URL"] = request.getfixturevalue("redis_url")
    return Settings.from_env(env)


def _celery_send_task(settings: Settings, hint: int) -> None:
    """How slots were sent before the plain producer: the workers' own Celery app, ``send_task``."""
    from trainyard.worker.app import make_app

    app = make_app(settings)
    with transport.connection(settings.broker_url) as conn, conn.Producer() as producer:
        app.send_task(
            TRAIN_NEXT,
            args=[hint],
            queue=defaults.QUEUE,
            routing_key=defaults.QUEUE,
            producer=producer,
            serializer="json",
            retry=False,
            ignore_result=True,
        )


def _take_all(settings: Settings) -> list[Any]:
    """Every message waiting in the queue, taken off it, as a worker's consumer receives them."""
    messages = []
    with transport.connection(settings.broker_url) as conn, conn.channel() as channel:
        while (message := channel.basic_get(defaults.QUEUE, no_ack=True)) is not None:
            messages.append(message)
    return messages


def _comparable(message: Any) -> dict[str, Any]:
    """The message with what differs between any two sends (ids, sender, delivery tag) checked and masked."""
    headers = dict(message.headers)
    properties = dict(message.properties)
    task_id = headers["id"]
    uuid.UUID(task_id)
    uuid.UUID(properties.pop("reply_to"))
    assert headers["root_id"] == properties.pop("correlation_id") == task_id
    assert re.fullmatch(r"gen\d+@.+", headers["origin"])
    properties.pop("delivery_tag")
    return {
        "headers": {**headers, "id": "<id>", "root_id": "<id>", "origin": "<origin>"},
        "properties": properties,
        "content_type": message.content_type,
        "content_encoding": message.content_encoding,
        "body": message.body,
        "delivery_info": {k: message.delivery_info.get(k) for k in ("exchange", "routing_key")},
    }


def test_the_plain_producer_sends_exactly_what_celery_send_task_sends(broker_settings: Settings) -> None:
    _celery_send_task(broker_settings, 7)
    send_slots([7], broker_settings)
    celery, plain = (_comparable(m) for m in _take_all(broker_settings))

    assert plain == celery
    # and what that is: task protocol 2 in JSON, for trainyard.train_next(7), on the trainyard queue
    assert plain["headers"]["task"] == "trainyard.train_next" and plain["headers"]["lang"] == "py"
    assert plain["content_type"] == "application/json"
    assert json.loads(plain["body"]) == [[7], {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]
    assert plain["delivery_info"] == {"exchange": "", "routing_key": "trainyard"}


def test_dispatch_sends_one_message_per_job_and_marks_them(broker_settings: Settings) -> None:
    store = Store.open(broker_settings.db_url)
    jobs = store.add_jobs([{"name": f"j{i}", "training": {"epochs": 2}} for i in range(3)])
    assert transport.queue_size(broker_settings) == 0
    assert dispatch([j.id for j in jobs], broker_settings) == 3
    assert transport.queue_size(broker_settings) == 3
    assert all(j.dispatched_at is not None for j in store.get_jobs([j.id for j in jobs]))
    hints = [json.loads(m.body)[0] for m in _take_all(broker_settings)]
    assert hints == [[j.id] for j in jobs]


def test_dispatch_to_an_unreachable_broker_leaves_jobs_undispatched(home: Path) -> None:
    settings = Settings.from_env({"TRAINYARD_HOME": str(home), "TRAINYARD_BROKER_URL": DEAD_REDIS})
    store = Store.open(settings.db_url)
    (job,) = store.add_jobs([{"name": "j", "training": {"epochs": 2}}])
    with pytest.raises(BrokerError, match=r"redis://:\*\*\*@127\.0\.0\.1:1/0"):
        dispatch([job.id], settings)
    assert store.get_job(job.id).dispatched_at is None
