"""The job store: SQLAlchemy models, alembic migrations and :class:`Store`, the only code that sees rows.

Everything outside this package gets the frozen records of :mod:`trainyard.db.records`. The records
are imported eagerly (they are plain dataclasses); :class:`Store` and SQLAlchemy only on first use,
so ``from trainyard.db import JobState`` stays cheap for the CLI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from trainyard.db.records import (
    EpochRecord,
    JobRecord,
    JobState,
    LeaseStatus,
    SpecRecord,
    Submission,
    SweepRecord,
    SweepState,
    WorkerRecord,
    WorkerState,
    utcnow,
)

if TYPE_CHECKING:
    from trainyard.db.store import LeaseLost, Store, spec_hash

_FROM_STORE = {"LeaseLost", "Store", "spec_hash"}


def __getattr__(name: str) -> Any:
    if name in _FROM_STORE:
        from trainyard.db import store

        return getattr(store, name)
    raise AttributeError(f"module 'trainyard.db' has no attribute {name!r}")


__all__ = [
    "EpochRecord",
    "JobRecord",
    "JobState",
    "LeaseLost",
    "LeaseStatus",
    "SpecRecord",
    "Store",
    "Submission",
    "SweepRecord",
    "SweepState",
    "WorkerRecord",
    "WorkerState",
    "spec_hash",
    "utcnow",
]
