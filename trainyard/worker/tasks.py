"""The one Celery task, kept thin: it hands over to :mod:`trainyard.worker.runner` in the pool child."""

from __future__ import annotations

from celery import Task
from celery.exceptions import Reject

from trainyard.queue.slots import TRAIN_NEXT
from trainyard.worker.app import app


@app.task(name=TRAIN_NEXT, bind=True, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def train_next(self: Task, hint_job_id: int | None = None) -> int | None:
    """Claim the best queued job (not necessarily ``hint_job_id``) and train it; None if none is queued.

    A message is a slot (``trainyard.queue``): a duplicate delivery finds nothing to claim and
    returns quietly, so no job is ever trained twice because of the broker.
    """
    from trainyard.worker import child, runner

    if child.handback_requested():
        # This worker is shutting down but still consuming: keep the slot for another worker.
        raise Reject("worker shutting down", requeue=True)
    return runner.train_next(node=self.request.hostname or "worker", hint_job_id=hint_job_id)
