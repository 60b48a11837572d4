"""trainyard: Keras model specs as data, a job store, Celery workers and a live dashboard.

The names in ``__all__`` are the public Python API; everything else is private.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from trainyard.scheduler import cancel, jobs, predict, retry, show, submit

# The job operations are imported on first use, so ``import trainyard`` stays light
# (neither the store nor TensorFlow or Celery).
_LAZY = {"cancel", "jobs", "predict", "retry", "show", "submit"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from trainyard import scheduler

        return getattr(scheduler, name)
    raise AttributeError(f"module 'trainyard' has no attribute {name!r}")


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
    "cancel",
    "jobs",
    "predict",
    "retry",
    "show",
    "submit",
]
