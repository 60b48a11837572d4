"""Frozen records handed out by the store. ORM rows never leave ``trainyard.db``; these do."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class JobState(str, enum.Enum):
    """The life of a job: ``queued -> running -> succeeded | failed | cancelled``.

    ``running -> queued`` happens when a lease expires or a worker hands a job back;
    ``failed | cancelled -> queued`` is a retry.
    """

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_finished(self) -> bool:
        """True for the three terminal states."""
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)

    @property
    def is_active(self) -> bool:
        """True while the job still waits for or uses a worker."""
        return not self.is_finished

    @property
    def can_retry(self) -> bool:
        """A failed or cancelled job may be queued again."""
        return self in (JobState.FAILED, JobState.CANCELLED)

    def __str__(self) -> str:
        return self.value


class WorkerState(str, enum.Enum):
    """What a worker said of itself in its last heartbeat."""

    IDLE = "idle"
    BUSY = "busy"
    STOPPED = "stopped"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class SpecRecord:
    """A validated spec document as stored once per content hash."""

    id: int
    name: str
    content_hash: str
    document: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class EpochRecord:
    """The metrics of one completed epoch of one job.

    ``outputs`` maps each output name to ``{"loss": training loss, "val_mse": validation MSE}``.
    """

    job_id: int
    epoch: int  # 1-based
    loss: float | None  # None when the loss was not finite
    val_loss: float | None
    outputs: dict[str, dict[str, float | None]]
    recorded_at: datetime

    @property
    def val_mse(self) -> dict[str, float | None]:
        return {name: m.get("val_mse") for name, m in self.outputs.items()}


@dataclass(frozen=True)
class JobRecord:
    """Everything the store knows about one job (without its epochs)."""

    id: int
    spec_id: int
    name: str
    state: JobState
    priority: int
    attempts: int
    max_attempts: int
    epochs_total: int
    epochs_done: int
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None
    lease_owner: str | None = None  # ``<node>/<pid>`` of the process holding it (make_owner)
    lease_expires_at: datetime | None = None
    cancel_requested: bool = False
    model_path: str | None = None
    val_mse: dict[str, float] = field(default_factory=dict)  # latest (final once succeeded)
    test_mse: dict[str, float] = field(default_factory=dict)
    spec_document: dict[str, Any] | None = None  # filled by get_job, not by list queries
    dispatched_at: datetime | None = None  # last time a broker message was sent for it
    spec_hash: str | None = None  # content hash of the spec document; filled by get_job

    @property
    def progress(self) -> str:
        """``"k/n"``: epochs done of the epochs the spec asks for."""
        return f"{self.epochs_done}/{self.epochs_total}"


#: Between the worker node and the process id in a lease owner: ``<node>/<pid>``.
OWNER_SEPARATOR = "/"


def make_owner(node: str, pid: int) -> str:
    """The lease owner of one training process: ``<node>/<pid>``, its worker's (Celery node) name and
    its process id. Unique per living process, and names the worker: the dashboard shows a running
    job under that worker, and the worker's heartbeat reports it as its current job."""
    return f"{node}{OWNER_SEPARATOR}{pid}"


def owner_node(owner: str | None) -> str | None:
    """The worker node of a lease owner made by :func:`make_owner`; None for any other string."""
    if not owner:
        return None
    node, separator, pid = owner.rpartition(OWNER_SEPARATOR)
    return node if separator and node and pid.isdigit() else None


@dataclass(frozen=True)
class LeaseStatus:
    """What :meth:`Store.renew_lease` tells a worker about the job it trains.

    ``held`` is False when the lease was lost (expired and requeued, or taken by another worker):
    the worker must stop and write nothing more. ``cancel_requested`` asks it to stop cleanly and
    ``finish(..., JobState.CANCELLED)``.
    """

    job_id: int
    held: bool
    cancel_requested: bool
    state: JobState
    expires_at: datetime | None


@dataclass(frozen=True)
class WorkerRecord:
    """A worker process (or Celery node) as seen through its heartbeats."""

    name: str
    host: str
    devices: list[str]
    state: WorkerState
    current_job_id: int | None
    started_at: datetime
    last_heartbeat: datetime
