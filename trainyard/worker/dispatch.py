"""Putting jobs on the broker: one message (a slot) per queued job.

The scheduler's ``submit`` and ``retry`` and the reconciler call :func:`dispatch`; it never
imports TensorFlow.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from trainyard import defaults
from trainyard.config import Settings
from trainyard.worker import broker
from trainyard.worker.broker import check_broker

if TYPE_CHECKING:
    from trainyard.db import Store

__all__ = ["check_broker", "dispatch", "send_slots"]


def send_slots(hint_job_ids: Iterable[int], settings: Settings) -> int:
    """Publish one ``trainyard.train_next(hint)`` message per id; return how many were sent.

    Raises :class:`~trainyard.errors.BrokerError` (broker named, password redacted) when the
    broker cannot be reached; the messages sent before the failure stay sent.
    """
    from trainyard.worker.app import TRAIN_NEXT, app

    ids = [int(i) for i in hint_job_ids]
    if not ids:
        return 0
    sent = 0
    try:
        with broker.connection(settings.broker_url) as conn:
            conn.ensure_connection(max_retries=1, interval_start=0.5, timeout=defaults.BROKER_CONNECT_TIMEOUT_SECONDS)
            with conn.Producer() as producer:
                for job_id in ids:
                    app.send_task(
                        TRAIN_NEXT,
                        args=[job_id],
                        queue=defaults.QUEUE,
                        routing_key=defaults.QUEUE,
                        producer=producer,
                        serializer="json",
                        retry=False,
                        ignore_result=True,
                    )
                    sent += 1
    except Exception as exc:  # kombu/redis raise transport-specific errors; all mean "unreachable"
        raise broker.unreachable(settings, exc) from exc
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
