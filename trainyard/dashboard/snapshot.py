"""What the dashboard shows, read from the store in one short, read-only transaction.

A :class:`Snapshot` holds only what one frame shows: the job counts per state, the oldest queued
job's age, the workers, the running jobs with their epochs and the few most recently finished
jobs. It never holds "all jobs", so a frame costs about the same with 100 or 10,000 jobs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from trainyard import defaults, metrics
from trainyard.config import redact_url
from trainyard.db.queries import SweepRows, open_existing, read_dashboard
from trainyard.db.records import (
    EpochRecord,
    JobRecord,
    JobState,
    WorkerRecord,
    WorkerState,
    isoformat,
    job_json,
    owner_node,
    utcnow,
)
from trainyard.db.store import Store
from trainyard.display import headline_name


def seconds_between(earlier: datetime, later: datetime) -> float:
    """``later - earlier`` in seconds (both aware, as the store and the clock give them)."""
    return (later - earlier).total_seconds()


def is_lost(worker: WorkerRecord, now: datetime, lost_after: float = defaults.WORKER_LOST_AFTER_SECONDS) -> bool:
    """A worker that did not stop cleanly and whose heartbeat is older than ``lost_after`` seconds."""
    return worker.state != WorkerState.STOPPED and seconds_between(worker.last_heartbeat, now) > lost_after


@dataclass(frozen=True)
class RunningJob:
    """A running job with its epochs so far (in epoch order) and the worker training it."""

    job: JobRecord
    epochs: tuple[EpochRecord, ...] = ()
    worker: str | None = None

    @property
    def output_names(self) -> list[str]:
        """Every output seen in the epochs (or in the job's latest metrics), in first-seen order."""
        names: dict[str, None] = {}
        for record in self.epochs:
            names.update(dict.fromkeys(record.outputs))
        names.update(dict.fromkeys(self.job.output_names))
        return list(names)

    def val_mse_curve(self, output: str) -> list[float | None]:
        """The validation MSE of ``output`` epoch after epoch (``None`` where it was not measured)."""
        return [_number_or_none(record.outputs.get(output, {}).get("val_mse")) for record in self.epochs]

    def latest_val_mse(self, output: str) -> float | None:
        """The last measured validation MSE of ``output`` (may be NaN when training diverged)."""
        for value in reversed(self.val_mse_curve(output)):
            if value is not None:
                return value
        return _number_or_none(self.job.val_mse.get(output))

    def best_val_mse(self, output: str) -> float | None:
        """The lowest finite validation MSE of ``output`` so far."""
        values = [v for v in self.val_mse_curve(output) if v is not None and math.isfinite(v)]
        if values:
            return min(values)
        latest = self.latest_val_mse(output)
        return latest if latest is not None and math.isfinite(latest) else None

    def headline(self, output: str) -> str:
        """The headline validation metric ``output`` reports (``mse`` for a regression, ``log_loss`` for a
        binary or category output), as its latest epoch names it."""
        for record in reversed(self.epochs):
            name = headline_name(record.val_metrics.get(output, {}))
            if name is not None:
                return name
        return headline_name(self.job.val_metrics.get(output, {})) or "mse"

    def headline_curve(self, output: str) -> list[float | None]:
        """The headline validation metric of ``output`` epoch after epoch (the MSE curve for a regression)."""
        name = self.headline(output)
        return [_number_or_none(record.val_metrics.get(output, {}).get(name)) for record in self.epochs]

    def latest_headline(self, output: str) -> float | None:
        """The last measured headline validation metric of ``output``."""
        for value in reversed(self.headline_curve(output)):
            if value is not None:
                return value
        return _number_or_none(self.job.val_metrics.get(output, {}).get(self.headline(output)))

    def best_headline(self, output: str) -> float | None:
        """The best finite headline validation metric of ``output`` so far (lowest, or highest where
        higher is better)."""
        values = [v for v in self.headline_curve(output) if v is not None and math.isfinite(v)]
        if values:
            return max(values) if metrics.metric(self.headline(output)).higher_is_better else min(values)
        latest = self.latest_headline(output)
        return latest if latest is not None and math.isfinite(latest) else None

    @property
    def epochs_done(self) -> int:
        """Epochs completed, from the job record or the epochs read, whichever is further."""
        return max(self.job.epochs_done, self.epochs[-1].epoch if self.epochs else 0)

    def seconds_per_epoch(self) -> float | None:
        """Average duration of an epoch in the current run (``None`` before its first epoch).

        Only epochs recorded since the job (re)started count: a job resumed after a lost worker
        would otherwise count the time it spent waiting in the queue.
        """
        started = self.job.started_at
        this_run = [e for e in self.epochs if started is None or seconds_between(started, e.recorded_at) >= 0]
        if len(this_run) >= 2 and this_run[-1].epoch > this_run[0].epoch:
            first, last = this_run[0], this_run[-1]
            return max(0.0, seconds_between(first.recorded_at, last.recorded_at) / (last.epoch - first.epoch))
        if this_run and started is not None:
            return max(0.0, seconds_between(started, this_run[-1].recorded_at))
        return None

    def eta_seconds(self, now: datetime) -> float | None:
        """Seconds until the last epoch ends at the pace so far; ``None`` while unknown."""
        pace = self.seconds_per_epoch()
        if pace is None or not self.epochs:
            return None
        remaining = max(0, self.job.epochs_total - self.epochs_done)
        since_last = seconds_between(self.epochs[-1].recorded_at, now)
        return max(0.0, remaining * pace - since_last) if remaining else 0.0


@dataclass(frozen=True)
class SweepPanel:
    """A sweep as the dashboard shows it: trials done of its total, running and pruned ones, the
    best objective with its parameters, and the best so far after each succeeded trial."""

    id: int
    name: str
    state: str
    method: str
    done: int
    total: int
    running: int
    pruned: int
    best: float | None = None
    best_job: int | None = None
    best_params: dict[str, Any] | None = None
    best_so_far: tuple[float | None, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "state": self.state,
            "method": self.method,
            "done": self.done,
            "total": self.total,
            "running": self.running,
            "pruned": self.pruned,
            "best": {"job": self.best_job, "params": self.best_params, "objective": self.best}
            if self.best_job is not None
            else None,
            "best_so_far": list(self.best_so_far),
        }


def _sweep_panel(rows: SweepRows) -> SweepPanel:
    from trainyard.sweeps import SweepDefinition, metrics_objective

    definition = SweepDefinition.from_document(rows.sweep.definition)
    maximize = definition.direction == "maximize"
    best, best_job, best_params, curve = None, None, None, []
    for job in rows.succeeded:  # the final model's validation metrics, in the order they ended
        value = metrics_objective(definition, job.val_metrics)
        if value is not None and (best is None or (value > best if maximize else value < best)):
            best, best_job, best_params = value, job.id, dict(job.params or {})
        curve.append(best)
    return SweepPanel(
        id=rows.sweep.id,
        name=rows.sweep.name,
        state=rows.sweep.state.value,
        method=definition.method,
        done=sum(count for state, count in rows.counts.items() if state.is_finished),
        total=definition.total,
        running=rows.counts[JobState.RUNNING],
        pruned=rows.counts[JobState.PRUNED],
        best=best,
        best_job=best_job,
        best_params=best_params,
        best_so_far=tuple(curve),
    )


@dataclass(frozen=True)
class Snapshot:
    """Everything one dashboard frame shows, read at ``taken_at`` from the store at ``source``."""

    taken_at: datetime
    source: str
    counts: Mapping[JobState, int] = field(default_factory=dict)
    oldest_queued_at: datetime | None = None
    workers: tuple[WorkerRecord, ...] = ()
    running: tuple[RunningJob, ...] = ()
    recent: tuple[JobRecord, ...] = ()
    sweeps: tuple[SweepPanel, ...] = ()

    @property
    def total_jobs(self) -> int:
        return sum(self.counts.values())

    def count(self, state: JobState) -> int:
        return int(self.counts.get(state, 0))

    @property
    def running_not_shown(self) -> int:
        """Running jobs beyond the ones the snapshot holds (it reads a bounded number)."""
        return max(0, self.count(JobState.RUNNING) - len(self.running))

    def to_json(self, now: datetime | None = None) -> dict[str, Any]:
        """The same data as a frame, as JSON-ready values (``--json``); ``now`` decides lost workers.

        Non-finite numbers (a diverged loss) become ``null``: JSON has no NaN.
        """
        now = self.taken_at if now is None else now
        return _json_safe(
            {
                "taken_at": isoformat(self.taken_at),
                "source": self.source,
                "queue": {
                    "counts": {state.value: self.count(state) for state in JobState},
                    "total": self.total_jobs,
                    "oldest_queued_at": isoformat(self.oldest_queued_at),
                    "oldest_queued_wait_seconds": (
                        round(seconds_between(self.oldest_queued_at, now), 3) if self.oldest_queued_at else None
                    ),
                },
                "workers": [
                    {
                        "name": w.name,
                        "host": w.host,
                        "devices": list(w.devices),
                        "state": "lost" if is_lost(w, now) else w.state.value,
                        "lost": is_lost(w, now),
                        "current_job_id": w.current_job_id,
                        "started_at": isoformat(w.started_at),
                        "last_heartbeat": isoformat(w.last_heartbeat),
                        "heartbeat_age_seconds": round(seconds_between(w.last_heartbeat, now), 3),
                    }
                    for w in self.workers
                ],
                "running": [
                    {
                        **job_json(r.job),
                        "worker": r.worker,
                        "epochs_done": r.epochs_done,
                        "elapsed_seconds": (
                            round(seconds_between(r.job.started_at, now), 3) if r.job.started_at else None
                        ),
                        "eta_seconds": _round(r.eta_seconds(now)),
                        "outputs": {
                            name: {
                                "val_mse": r.latest_val_mse(name),
                                "best_val_mse": r.best_val_mse(name),
                                "val_mse_by_epoch": r.val_mse_curve(name),
                                "headline": r.headline(name),
                                "val_headline": r.latest_headline(name),
                                "best_val_headline": r.best_headline(name),
                            }
                            for name in r.output_names
                        },
                    }
                    for r in self.running
                ],
                "running_not_shown": self.running_not_shown,
                "recent": [
                    {
                        **job_json(job),
                        "duration_seconds": _round(job_duration(job)),
                        "outputs": {
                            name: {"val_mse": job.val_mse.get(name), "test_mse": job.test_mse.get(name)}
                            for name in job.output_names
                        },
                    }
                    for job in self.recent
                ],
                "sweeps": [sweep.to_json() for sweep in self.sweeps],
            }
        )


def read_snapshot(
    store: Store,
    *,
    recent: int = defaults.DASHBOARD_RECENT_JOBS,
    max_running: int = defaults.DASHBOARD_MAX_RUNNING,
    clock: Callable[[], datetime] = utcnow,
    tag: str | None = None,
) -> Snapshot:
    """Read one frame's worth of the store in one short, read-only transaction (only the jobs with
    ``tag``, if given; the workers are all shown)."""
    now = clock()
    rows = read_dashboard(
        store,
        recent=recent,
        max_running=max_running,
        workers_since=now - timedelta(seconds=defaults.DASHBOARD_FORGET_WORKERS_SECONDS),
        tag=tag,
        max_sweeps=defaults.DASHBOARD_SWEEPS,
    )
    return Snapshot(
        taken_at=now,
        source=_source(store.name, tag),
        counts=rows.counts,
        oldest_queued_at=rows.oldest_queued_at,
        workers=rows.workers,
        running=tuple(
            RunningJob(job, rows.epochs.get(job.id, ()), _worker_of(job, rows.workers)) for job in rows.running
        ),
        recent=rows.recent,
        sweeps=tuple(_sweep_panel(sweep) for sweep in rows.sweeps),
    )


def snapshot_reader(
    url: str,
    *,
    recent: int = defaults.DASHBOARD_RECENT_JOBS,
    max_running: int = defaults.DASHBOARD_MAX_RUNNING,
    clock: Callable[[], datetime] = utcnow,
    tag: str | None = None,
) -> Callable[[], Snapshot]:
    """A function reading one snapshot of the store at ``url`` per call, opening it on first need.

    Until a store exists there (no SQLite file, no schema yet) each call returns an empty snapshot:
    the dashboard never creates the store, and it shows the jobs as soon as the first one is queued.
    """
    store: Store | None = None

    def read() -> Snapshot:
        nonlocal store
        if store is None:
            store = open_existing(url)
            if store is None:
                return Snapshot(
                    taken_at=clock(), source=_source(redact_url(url), tag), counts=dict.fromkeys(JobState, 0)
                )
        return read_snapshot(store, recent=recent, max_running=max_running, clock=clock, tag=tag)

    return read


def _source(name: str, tag: str | None) -> str:
    """What the frame says it shows: the store, and the tag when only tagged jobs are shown."""
    return f"{name}, jobs tagged {tag}" if tag else name


def _worker_of(job: JobRecord, workers: tuple[WorkerRecord, ...]) -> str | None:
    """The worker training ``job``: the one naming it in its heartbeat, or the worker of its lease owner
    (a worker's pool processes own leases as ``<worker name>/<pid>``: ``records.make_owner``), else
    the owner itself."""
    for worker in workers:
        if worker.current_job_id == job.id and worker.state is not WorkerState.STOPPED:
            return worker.name
    node = owner_node(job.lease_owner)
    if node is not None and any(worker.name == node for worker in workers):
        return node
    return job.lease_owner


def job_duration(job: JobRecord) -> float | None:
    """Seconds from the (last) start to the end of a finished job."""
    if job.started_at is None or job.finished_at is None:
        return None
    return max(0.0, seconds_between(job.started_at, job.finished_at))


def _round(value: float | None) -> float | None:
    return round(value, 3) if value is not None else None


def _number_or_none(value: object) -> float | None:
    if value is None:
        return None
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    return value
