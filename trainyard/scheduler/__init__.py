"""The user-facing operations on jobs (``submit``, ``jobs``, ``show``, ``cancel``, ``retry``) and the reconciler.

``import trainyard.scheduler`` imports neither TensorFlow nor Celery.
"""

from __future__ import annotations

from trainyard.scheduler.operations import cancel, jobs, retry, show, submit

__all__ = ["cancel", "jobs", "retry", "show", "submit"]
