"""The user-facing operations on jobs (``submit``, ``jobs``, ``show``, ``cancel``, ``retry``, ``predict``).

``import trainyard.scheduler`` imports neither TensorFlow nor Celery; ``submit`` and ``retry`` send
their slots through :mod:`trainyard.queue` (kombu only) and never load worker code.
"""

from __future__ import annotations

from trainyard.scheduler.operations import cancel, jobs, retry, show, submit
from trainyard.scheduler.prediction import predict

__all__ = ["cancel", "jobs", "predict", "retry", "show", "submit"]
