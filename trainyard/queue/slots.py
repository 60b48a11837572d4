"""Sending slots: one ``trainyard.train_next(hint)`` message per queued job, from a plain kombu producer.

A message is a *slot* (``trainyard.queue``): the worker that receives it claims the best queued job
in the store, not necessarily the hinted one. The message is the one Celery's ``send_task`` builds
for that task (task protocol 2: the task's headers, a JSON body ``[args, kwargs, embed]``, the
``trainyard`` queue and routing key), so running workers consume it as any Celery task message; but
sending it needs neither a Celery app nor any worker code, so ``trainyard submit`` loads kombu and
not Celery. ``tests/worker/test_broker.py`` checks, field by field, that both messages agree.

The scheduler's ``submit`` and ``retry`` and the reconciler call :func:`dispatch`; nothing here
imports TensorFlow.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import kombu

from trainyard import defaults
from trainyard.config import Settings
from trainyard.queue import transport

if TYPE_CHECKING:
    from trainyard.db import Store

#: Name of the one task: "train the best queued job", a slot rather than a particular job. The
#: workers' Celery app registers its task under this name (``trainyard.worker.tasks``).
TRAIN_NEXT = "trainyard.train_next"

#: AMQP delivery mode 2: the broker keeps the message on disk (Celery's default for task messages).
_PERSISTENT = 2


def slot_queue() -> kombu.Queue:
    """The queue slots travel on, declared exactly as the workers' Celery app declares it (a durable
    queue bound to a direct exchange of the same name, with the same routing key)."""
    return kombu.Queue(defaults.QUEUE, kombu.Exchange(defaults.QUEUE, type="direct"), routing_key=defaults.QUEUE)


@dataclass(frozen=True)
class SlotMessage:
    """One ``trainyard.train_next(hint_job_id)`` task message: Celery task protocol 2."""

    body: tuple[list[Any], dict[str, Any], dict[str, Any]]  # (args, kwargs, embed)
    headers: dict[str, Any]
    properties: dict[str, Any]  # correlation_id and reply_to; kombu adds the rest when publishing


def slot_message(hint_job_id: Any, *, task_id: str | None = None, reply_to: str | None = None) -> SlotMessage:
    """The message Celery's ``send_task(TRAIN_NEXT, args=[hint_job_id], ignore_result=True)`` builds.

    ``task_id`` is a fresh uuid4 as Celery's; ``reply_to`` stands for the sending thread's oid that
    Celery puts there (no result backend reads it: results are not kept).
    """
    task_id = task_id or str(uuid.uuid4())
    args = [hint_job_id]
    headers: dict[str, Any] = {
        "lang": "py",
        "task": TRAIN_NEXT,
        "id": task_id,
        "shadow": None,
        "eta": None,
        "expires": None,
        "group": None,
        "group_index": None,
        "retries": 0,
        "timelimit": [None, None],
        "root_id": task_id,
        "parent_id": None,
        "argsrepr": repr(args),
        "kwargsrepr": "{}",
        "origin": f"gen{os.getpid()}@{socket.gethostname()}",  # Celery's anonymous node name of a sender
        "ignore_result": True,
        "replaced_task_nesting": 0,
        "stamped_headers": None,
        "stamps": {},
    }
    embed = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
    properties = {"correlation_id": task_id, "reply_to": reply_to or str(uuid.uuid4())}
    return SlotMessage(body=(args, {}, embed), headers=headers, properties=properties)


def publish(producer: kombu.Producer, message: SlotMessage, *, serializer: str = "json") -> None:
    """Publish ``message`` on the slot queue (declared first if this connection has not yet), as
    Celery does: the default exchange, routing key ``defaults.QUEUE``, persistent, no retry."""
    producer.publish(
        message.body,
        exchange="",
        routing_key=defaults.QUEUE,
        serializer=serializer,
        headers=message.headers,
        delivery_mode=_PERSISTENT,
        declare=[slot_queue()],
        retry=False,
        **message.properties,
    )


def send_slots(hint_job_ids: Iterable[int], settings: Settings) -> int:
    """Publish one ``trainyard.train_next(hint)`` message per id; return how many were sent.

    Raises :class:`~trainyard.errors.BrokerError` (broker named, password redacted) when the
    broker cannot be reached; the messages sent before the failure stay sent.
    """
    ids = [int(i) for i in hint_job_ids]
    if not ids:
        return 0
    sent = 0
    reply_to = str(uuid.uuid4())
    try:
        with transport.connection(settings.broker_url) as conn:
            transport.ensure_connected(conn)
            with conn.Producer() as producer:
                for job_id in ids:
                    publish(producer, slot_message(job_id, reply_to=reply_to))
                    sent += 1
    except Exception as exc:  # kombu/redis raise transport-specific errors; all mean "unreachable"
        raise transport.unreachable(settings, exc) from exc
    return sent


def dispatch(job_ids: Iterable[int], settings: Settings | None = None, *, store: Store | None = None) -> int:
    """Send one message per job and mark the jobs dispatched in the store; return how many were sent.

    Raises :class:`~trainyard.errors.BrokerError` naming the broker (password redacted) when it is
    unreachable. Jobs stay ``queued`` in the store either way, so the reconciler sends the
    missing messages once the broker is back.
    """
    settings = settings or Settings.from_env()
    ids = [int(i) for i in job_ids]
    if not ids:
        return 0
    sent = send_slots(ids, settings)
    if store is None:
        from trainyard.db import Store

        store = Store.open(settings.db_url)
    store.mark_dispatched(ids)
    return sent
