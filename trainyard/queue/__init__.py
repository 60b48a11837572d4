"""The broker stage, between the scheduler and the workers: the transport, the slots, the reconciler.

The contract of a broker message, written once here: a message is a *slot*. The task
``trainyard.train_next(hint_job_id)`` claims the best queued job in the store (priority, then
age), not necessarily the hinted one. So priorities hold on every broker, a duplicate message is
harmless (it finds nothing to claim, or trains another queued job once), and the broker never has
to be exact: the reconciler only keeps the number of messages waiting in the broker at least the
number of queued jobs. The store, not the broker, is the truth about every job.

* :mod:`trainyard.queue.transport`: which kombu transport a broker URL means (Redis, or the
  embedded SQLite broker), connections, :func:`check_broker`, :func:`queue_size`, and the broker
  part of the workers' Celery configuration.
* :mod:`trainyard.queue.slots`: :func:`dispatch` sends one slot per job with a plain kombu producer
  (the message Celery's ``send_task`` would build) and marks the jobs dispatched.
* :mod:`trainyard.queue.reconciler`: :func:`reconcile`, one pass that takes expired leases back and
  sends the slots the broker lacks.

The scheduler (``submit``, ``retry``) and the workers (their parent process runs the reconciler)
both stand on this package; it imports neither of them, nor Celery, nor TensorFlow.
"""

from __future__ import annotations

from trainyard.queue.reconciler import Report, reconcile
from trainyard.queue.slots import TRAIN_NEXT, dispatch, send_slots
from trainyard.queue.transport import check_broker, is_embedded, queue_size

__all__ = ["TRAIN_NEXT", "Report", "check_broker", "dispatch", "is_embedded", "queue_size", "reconcile", "send_slots"]
