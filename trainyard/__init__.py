"""trainyard: Keras model specs as data, a job store, Celery workers and a live dashboard.

The names in ``__all__`` are the public Python API; everything else is private.
"""

from __future__ import annotations

from trainyard.errors import (
    BrokerError,
    Cancelled,
    DataError,
    JobNotFound,
    SpecError,
    StoreError,
    TrainingError,
    TrainyardError,
)

__version__ = "0.1.0"

__all__ = [
    "BrokerError",
    "Cancelled",
    "DataError",
    "JobNotFound",
    "SpecError",
    "StoreError",
    "TrainingError",
    "TrainyardError",
    "__version__",
]
