"""Celery workers that claim queued jobs from the store and train them.

``celery -A trainyard.worker worker`` finds :data:`app` here. Importing this package never
imports TensorFlow: pool children do that when they start (:mod:`trainyard.worker.child`).
"""

from __future__ import annotations

from trainyard.worker.app import app

__all__ = ["app"]
