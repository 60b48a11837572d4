"""Frozen records handed out by the store. ORM rows never leave ``trainyard.db``; these do."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

#: The largest id (and integer column value) every store holds: PostgreSQL's INTEGER is 32-bit
#: (SQLite's is 64-bit). An id beyond it names no job on either backend.
INT_MAX = 2**31 - 1


def utcnow() -> datetime:
    """trainyard's clock: an aware UTC datetime (the store returns every timestamp aware, in UTC)."""
    return datetime.now(timezone.utc)


class JobState(str, enum.Enum):
    """The life of a job: ``queued -> running -> succeeded | failed | cancelled | pruned``.

    ``running -> queued`` happens when a lease expires or a worker hands a job back;
    ``failed | cancelled -> queued`` is a retry. ``pruned`` ends a sweep's trial that its pruner
    stopped after an epoch: finished, and never retried as a failure.
    """

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    PRUNED = "pruned"

    @property
    def is_finished(self) -> bool:
        """True for the terminal states."""
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.PRUNED)

    @property
    def is_active(self) -> bool:
        """True while the job still waits for or uses a worker."""
        return not self.is_finished

    @property
    def can_retry(self) -> bool:
        """A failed or cancelled job may be queued again."""
        return self in (JobState.FAILED, JobState.CANCELLED)

    @classmethod
    def finished_states(cls) -> tuple[JobState, ...]:
        """Every terminal state, in declaration order."""
        return tuple(state for state in cls if state.is_finished)

    def __str__(self) -> str:
        return self.value


class SweepState(str, enum.Enum):
    """The life of a sweep: ``running`` while it has trials to ask for or to finish, then
    ``finished`` (every trial asked for has ended, or the search space has no new point), or
    ``cancelled``. Submitting the sweep again with more trials runs it again."""

    RUNNING = "running"
    FINISHED = "finished"
    CANCELLED = "cancelled"

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
class Submission:
    """One job as its submitter hands it to the store: the spec document and what was recorded with it.

    The scheduler builds it at submit time, the store keeps ``spec`` in the content-hashed ``specs``
    table and everything else in the job's ``context``, and the worker reads it back
    (:attr:`JobRecord.submission`) to check that the job's data is still what was submitted:

    * ``data_fingerprint``: :func:`trainyard.specs.data_fingerprint` of the data at submit (the worker
      fails the job if the data changed since);
    * ``data_roots``: the folders the job may read data from (the submitter's ``TRAINYARD_DATA_ROOTS``
      or working directory; a worker whose own environment sets ``TRAINYARD_DATA_ROOTS`` enforces
      that instead). ``None``: nothing was recorded (a job stored by an older trainyard).
    * ``lineage``: what produced the job, as the submitter saw it (:func:`trainyard.lineage.at_submit`:
      versions, host, the spec's sha256, the spec file's git commit); ``None``: nothing recorded.
    * ``tags``: the job's tags (the spec's ``tags`` and ``submit --tag``); the store keeps them in a
      table of their own, one row per tag, so that a tag finds its jobs through an index.
    """

    spec: Mapping[str, Any]
    data_fingerprint: str | None = None
    data_roots: tuple[str, ...] | None = None
    lineage: Mapping[str, Any] | None = None
    tags: tuple[str, ...] = ()

    def context(self) -> dict[str, Any]:
        """Everything but the spec and the tags, as the JSON object the store keeps beside the job."""
        context: dict[str, Any] = {}
        if self.data_fingerprint is not None:
            context["data_fingerprint"] = self.data_fingerprint
        if self.data_roots is not None:
            context["data_roots"] = list(self.data_roots)
        if self.lineage is not None:
            context["lineage"] = dict(self.lineage)
        return context

    @classmethod
    def from_stored(
        cls, spec: Mapping[str, Any], context: Mapping[str, Any] | None, tags: Sequence[str] = ()
    ) -> Submission:
        """Rebuild a submission from the stored spec document, the job's context and its tags."""
        context = context or {}
        roots = context.get("data_roots")
        lineage = context.get("lineage")
        return cls(
            spec=spec,
            data_fingerprint=context.get("data_fingerprint"),
            data_roots=tuple(str(root) for root in roots) if roots is not None else None,
            lineage=dict(lineage) if isinstance(lineage, Mapping) else None,
            tags=tuple(tags),
        )


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

    ``outputs`` maps each output name to ``{"loss": training loss, "val_metrics": {metric: value}}``,
    plus ``"val_mse"`` for regression outputs (the validation MSE, as every trainyard version stored it).
    """

    job_id: int
    epoch: int  # 1-based
    loss: float | None  # None when the loss was not finite
    val_loss: float | None
    outputs: dict[str, dict[str, Any]]
    recorded_at: datetime
    #: The row's id: epochs of one sweep are numbered in the order they were stored (Store.record_epoch).
    id: int | None = None

    @property
    def val_mse(self) -> dict[str, float | None]:
        return {
            name: m.get("val_mse") for name, m in self.outputs.items() if "val_mse" in m or not m.get("val_metrics")
        }

    @property
    def val_metrics(self) -> dict[str, dict[str, float | None]]:
        """``{output: {metric: value}}`` over the validation split after this epoch."""
        return {name: metrics_of(m) for name, m in self.outputs.items()}


def metrics_of(output: Mapping[str, Any]) -> dict[str, float | None]:
    """The validation metrics of one output of an epoch (``{"mse": val_mse}`` for epochs stored before
    trainyard recorded more than the MSE)."""
    metrics = output.get("val_metrics")
    if isinstance(metrics, Mapping) and metrics:
        return dict(metrics)
    return {"mse": output["val_mse"]} if "val_mse" in output else {}


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
    val_mse: dict[str, float | None] = field(default_factory=dict)  # regression outputs; latest, final once ended
    test_mse: dict[str, float | None] = field(default_factory=dict)
    #: ``{output: {metric: value}}`` over the validation split: the latest epoch's, the final model's once ended.
    val_metrics: dict[str, dict[str, float | None]] = field(default_factory=dict)
    #: ``{output: {metric: value}}`` of the final model over the test split (empty without one).
    test_metrics: dict[str, dict[str, float | None]] = field(default_factory=dict)
    best_epoch: int | None = None  # the epoch whose weights the model holds, when not the last (early stopping)
    stopped_epoch: int | None = None  # the epoch training stopped at, when before ``epochs_total``
    spec_document: dict[str, Any] | None = None  # filled by get_job and claim_next, not by list queries
    context: dict[str, Any] | None = None  # what the submitter recorded beside the spec; filled with it
    dispatched_at: datetime | None = None  # last time a broker message was sent for it
    spec_hash: str | None = None  # content hash of the spec document; filled by get_job
    tags: tuple[str, ...] = ()  # sorted; filled by get_job, get_jobs and list_jobs
    #: what the worker that trained it recorded (:func:`trainyard.lineage.at_worker`); filled with the spec.
    run_lineage: dict[str, Any] | None = None
    sweep_id: int | None = None  # the sweep this job is a trial of
    trial: int | None = None  # its trial number in that sweep (0-based)
    params: dict[str, Any] | None = None  # the trial's parameters, ``{spec path: value}``

    @property
    def progress(self) -> str:
        """``"k/n"``: epochs done of the epochs the spec asks for."""
        return f"{self.epochs_done}/{self.epochs_total}"

    @property
    def output_names(self) -> list[str]:
        """The outputs the job reported metrics for, in the spec's order (empty before its first epoch)."""
        return list(dict.fromkeys([*self.val_metrics, *self.val_mse, *self.test_metrics, *self.test_mse]))

    @property
    def submission(self) -> Submission | None:
        """The spec document and what the submitter recorded with it (None when the spec was not read)."""
        if self.spec_document is None:
            return None
        return Submission.from_stored(self.spec_document, self.context, self.tags)

    @property
    def lineage(self) -> dict[str, Any]:
        """``{"submit": ..., "worker": ...}``: what produced the job, as its submitter and as the worker
        that trained it recorded it (each ``{}`` when nothing was recorded, or the spec was not read)."""
        submitted = (self.context or {}).get("lineage")
        return {
            "submit": dict(submitted) if isinstance(submitted, Mapping) else {},
            "worker": dict(self.run_lineage or {}),
        }


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
class SweepRecord:
    """A sweep as stored: its definition (the normalised sweep file) and where it is.

    ``definition`` holds ``method``, ``trials``, ``parallel``, ``seed``, ``objective``,
    ``parameters`` and ``prune`` as :class:`trainyard.sweeps.SweepDefinition` writes them;
    ``spec`` is the base spec document and ``context`` what its submission recorded (data
    fingerprint and roots), shared by every trial.
    """

    id: int
    name: str
    state: SweepState
    definition: dict[str, Any]
    spec: dict[str, Any]
    context: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None

    @property
    def method(self) -> str:
        return str(self.definition.get("method", ""))


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


def isoformat(moment: datetime | None) -> str | None:
    """An aware datetime as ISO 8601 in UTC (``2026-12-01T10:52:45.123456+00:00``), None as None."""
    return moment.astimezone(timezone.utc).isoformat() if moment is not None else None


def job_json(job: JobRecord) -> dict[str, Any]:
    """One job as a JSON object: a line of ``trainyard jobs --json``, the start of ``show --json`` and
    of each job in the dashboard's ``--json``. Metrics are ``null`` where they were not finite."""
    return {
        "id": job.id,
        "name": job.name,
        "state": job.state.value,
        "priority": job.priority,
        "tags": list(job.tags),
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "epochs_done": job.epochs_done,
        "epochs_total": job.epochs_total,
        "val_mse": dict(job.val_mse),
        "test_mse": dict(job.test_mse),
        "val_metrics": {name: dict(values) for name, values in job.val_metrics.items()},
        "test_metrics": {name: dict(values) for name, values in job.test_metrics.items()},
        "best_epoch": job.best_epoch,
        "stopped_epoch": job.stopped_epoch,
        "error": job.error,
        "cancel_requested": job.cancel_requested,
        "created_at": isoformat(job.created_at),
        "updated_at": isoformat(job.updated_at),
        "started_at": isoformat(job.started_at),
        "finished_at": isoformat(job.finished_at),
        "sweep_id": job.sweep_id,
        "trial": job.trial,
        "params": dict(job.params) if job.params is not None else None,
    }
