"""The Celery application: ``celery -A trainyard.worker worker`` runs it.

Configured from :class:`~trainyard.config.Settings` when this module is imported. The worker's
parent process imports this module, so it must never import TensorFlow, Keras or
``trainyard.training``'s TensorFlow (not fork-safe: tensorflow#27074, keras#12531); pool children import them in
``worker_process_init`` (see :mod:`trainyard.worker.child`).
"""

from __future__ import annotations

from celery import Celery

from trainyard import defaults
from trainyard.config import Settings
from trainyard.queue import transport
from trainyard.queue.slots import slot_queue


def make_app(settings: Settings | None = None) -> Celery:
    """Build trainyard's Celery app for ``settings`` (from the environment by default)."""
    settings = settings or Settings.from_env()
    app = Celery("trainyard", set_as_current=False)
    app.conf.update(
        **transport.celery_conf(settings.broker_url),
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=defaults.BROKER_CONNECT_TIMEOUT_SECONDS,
        # JSON only: a pickle message could run arbitrary code in the worker.
        accept_content=["json"],
        task_serializer="json",
        result_serializer="json",
        event_serializer="json",
        result_accept_content=["json"],
        # The store, not Celery, keeps results; messages are acknowledged after the task so a
        # dead pool child's message goes back to the queue.
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_proc_alive_timeout=defaults.WORKER_PROC_ALIVE_TIMEOUT_SECONDS,
        task_default_queue=defaults.QUEUE,
        task_queues=[slot_queue()],  # the queue the plain producer of trainyard.queue.slots declares
        task_default_routing_key=defaults.QUEUE,
        task_track_started=False,
        # The embedded broker has no broadcast: no remote control, no gossip, no mingle.
        worker_enable_remote_control=not transport.is_embedded(settings.broker_url),
        worker_hijack_root_logger=True,
        include=["trainyard.worker.tasks"],
    )
    from trainyard.worker import child  # noqa: F401  (connects the pool-child signals)
    from trainyard.worker.node import NodeStep

    app.steps["worker"].add(NodeStep)
    return app


app = make_app()
