"""SQLAlchemy 2 models of the job store. Only ``trainyard.db`` sees these rows; callers get records.

Read-only modules inside ``trainyard/db`` (the dashboard's ``queries.py``) may select from them too.
Every timestamp is stored as naive UTC and read back as an aware UTC ``datetime`` (:class:`UTCDateTime`),
so SQLite and PostgreSQL behave alike. The schema itself is created by the alembic migrations in
``trainyard/db/migrations``; a change here needs a new migration there.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from trainyard.db.records import JobState, SweepState, WorkerState


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """A ``DateTime`` that only accepts aware datetimes, stores them as naive UTC, returns aware UTC."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"expected a timezone-aware datetime, received {value!r}")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=timezone.utc)


def _enum(cls: type, name: str) -> sa.Enum:
    # Stored as the enum's *values* in a VARCHAR with a CHECK constraint: the same on both backends,
    # and adding a state later is a plain migration (no ALTER TYPE on PostgreSQL).
    return sa.Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=16,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


class Base(DeclarativeBase):
    """Declarative base of the store's tables."""

    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: sa.JSON()}


class SpecRow(Base):
    """A validated spec document, stored once per content hash."""

    __tablename__ = "specs"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    content_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    document: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]


class JobRow(Base):
    """One training job: which spec, where it is in its life, who holds it, what it produced."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    spec_id: Mapped[int] = mapped_column(sa.ForeignKey("specs.id"))
    name: Mapped[str] = mapped_column(sa.String(200))
    state: Mapped[JobState] = mapped_column(_enum(JobState, "job_state"))
    priority: Mapped[int] = mapped_column(default=0)
    attempts: Mapped[int] = mapped_column(default=0)
    max_attempts: Mapped[int]
    epochs_total: Mapped[int] = mapped_column(default=0)
    epochs_done: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    dispatched_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(sa.Text)
    lease_owner: Mapped[str | None] = mapped_column(sa.String(200))
    lease_expires_at: Mapped[datetime | None]
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    model_path: Mapped[str | None] = mapped_column(sa.Text)
    val_mse: Mapped[dict[str, Any]] = mapped_column(default=dict)
    test_mse: Mapped[dict[str, Any]] = mapped_column(default=dict)
    val_metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)  # {output: {metric: value}}
    test_metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    best_epoch: Mapped[int | None]
    stopped_epoch: Mapped[int | None]
    context: Mapped[dict[str, Any]] = mapped_column(default=dict)  # records.Submission.context()
    lineage: Mapped[dict[str, Any]] = mapped_column(default=dict)  # what the training worker recorded
    # A sweep's trial: its sweep, trial number and parameters; ``params_key`` is the hash of the
    # parameters, unique per sweep, so that no point of a search space is ever trained twice.
    sweep_id: Mapped[int | None] = mapped_column(sa.ForeignKey("sweeps.id"))
    trial: Mapped[int | None]
    params: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    params_key: Mapped[str | None] = mapped_column(sa.String(64))

    __table_args__ = (
        # the dashboard's "recently finished" and requeue_expired's scan of running jobs.
        sa.Index("ix_jobs_state_updated", "state", "updated_at"),
        sa.Index("ix_jobs_state_lease", "state", "lease_expires_at"),
        # `trainyard jobs --state S`: the newest jobs in a state, without sorting all of them.
        sa.Index("ix_jobs_state_id", "state", "id"),
        sa.Index("ix_jobs_spec_id", "spec_id"),
        # the reconciler's slots to send: never-dispatched queued jobs oldest first, then the oldest
        # dispatches (Store.redispatch_candidates), read in index order with a LIMIT.
        sa.Index("ix_jobs_state_dispatched", "state", "dispatched_at", "created_at", "id"),
        # a trial number and a point of the search space each once per sweep: two reconcilers asking
        # at once cannot both queue trial n, nor the same parameters
        sa.Index("uq_jobs_sweep_trial", "sweep_id", "trial", unique=True),
        sa.Index("uq_jobs_sweep_params", "sweep_id", "params_key", unique=True),
    )


# claim_next: the best queued job (priority desc, then oldest) is the first entry of this index.
sa.Index("ix_jobs_claim", JobRow.state, JobRow.priority.desc(), JobRow.created_at, JobRow.id)


class TagRow(Base):
    """One tag of one job; ``(tag, job_id)`` is indexed so a tag finds its jobs without a scan."""

    __tablename__ = "job_tags"

    job_id: Mapped[int] = mapped_column(sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(sa.String(64), primary_key=True)

    __table_args__ = (sa.Index("ix_job_tags_tag_job", "tag", "job_id"),)


class SweepRow(Base):
    """A hyperparameter sweep: its definition, its base spec and where it is; its trials are jobs."""

    __tablename__ = "sweeps"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200), unique=True)
    state: Mapped[SweepState] = mapped_column(_enum(SweepState, "sweep_state"))
    definition: Mapped[dict[str, Any]]  # records.SweepRecord.definition
    spec: Mapped[dict[str, Any]]  # the base spec document
    context: Mapped[dict[str, Any]] = mapped_column(default=dict)  # records.Submission.context()
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]


class EpochRow(Base):
    """The metrics of one completed epoch; ``(job_id, epoch)`` is unique so an epoch is stored once."""

    __tablename__ = "epoch_metrics"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(sa.ForeignKey("jobs.id", ondelete="CASCADE"))
    epoch: Mapped[int]
    loss: Mapped[float | None] = mapped_column(sa.Float)  # null when not finite
    val_loss: Mapped[float | None] = mapped_column(sa.Float)
    outputs: Mapped[dict[str, Any]]  # {output_name: {"loss": float, "val_metrics": {...}, "val_mse": float}}
    recorded_at: Mapped[datetime]

    __table_args__ = (sa.UniqueConstraint("job_id", "epoch", name="uq_epoch_metrics_job_epoch"),)


class WorkerRow(Base):
    """A worker as of its last heartbeat."""

    __tablename__ = "workers"

    name: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    host: Mapped[str] = mapped_column(sa.String(200))
    devices: Mapped[list[str]] = mapped_column(sa.JSON)
    state: Mapped[WorkerState] = mapped_column(_enum(WorkerState, "worker_state"))
    current_job_id: Mapped[int | None] = mapped_column(sa.ForeignKey("jobs.id", ondelete="SET NULL"))
    started_at: Mapped[datetime]
    last_heartbeat: Mapped[datetime]
