"""The job store: SQLAlchemy models, alembic migrations and :class:`Store`, the only code that sees rows.

Everything outside this package gets the frozen records of :mod:`trainyard.db.records`.
"""

from __future__ import annotations

from trainyard.db.records import (
    EpochRecord,
    JobRecord,
    JobState,
    LeaseStatus,
    SpecRecord,
    WorkerRecord,
    WorkerState,
)
from trainyard.db.store import LeaseLost, Store, spec_hash, utcnow

__all__ = [
    "EpochRecord",
    "JobRecord",
    "JobState",
    "LeaseLost",
    "LeaseStatus",
    "SpecRecord",
    "Store",
    "WorkerRecord",
    "WorkerState",
    "spec_hash",
    "utcnow",
]
