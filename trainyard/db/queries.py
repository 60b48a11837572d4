"""Read-only queries of the dashboard: one short transaction that reads only what a frame shows.

Every query here is bounded by what is on screen, never by the number of jobs in the store: the
counts per state are one ``GROUP BY`` over the ``(state, ...)`` index, the oldest queued job and
the recently finished jobs are index-ordered ``LIMIT`` queries, the running jobs are capped, and
only the running jobs' epochs are read. Nothing is written: on SQLite the transaction is a plain
deferred ``BEGIN`` (it never takes the write lock workers need), on PostgreSQL it is ``READ ONLY``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import Session

from trainyard.config import redact_url
from trainyard.db import engine as _engine
from trainyard.db.models import EpochRow, JobRow, SweepRow, TagRow, WorkerRow
from trainyard.db.records import EpochRecord, JobRecord, JobState, SweepRecord, SweepState, WorkerRecord
from trainyard.db.store import (
    Store,
    _epoch_record,
    _job_record,
    _sweep_record,
    _tags_of,
    _worker_record,
    count_by_state,
)


def open_existing(url: str) -> Store | None:
    """The store at ``url`` if one was created there, else ``None``; creates nothing.

    ``Store.open`` creates a missing SQLite file and the schema of an empty database. A reader that
    must never write (the dashboard) opens with this instead: no file yet, or no schema yet, reads
    as "no store yet". A server that cannot be reached raises :class:`~trainyard.errors.StoreError`.
    """
    try:
        parsed = sa.engine.make_url(url)
    except ArgumentError:
        return Store.open(url)  # let the store word the error
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not Path(database).expanduser().exists():
            return None
    engines = _engine.engines_for(url)
    try:
        if _engine.current_revision(engines) is None:
            return None
    except SQLAlchemyError as exc:
        raise _engine.translate(exc, redact_url(url)) from exc
    return Store.open(url)


@dataclass(frozen=True)
class DashboardRows:
    """What one dashboard frame needs, read in one transaction (frozen records, no ORM rows)."""

    counts: dict[JobState, int]
    oldest_queued_at: datetime | None
    workers: tuple[WorkerRecord, ...]
    running: tuple[JobRecord, ...]
    epochs: dict[int, tuple[EpochRecord, ...]]  # of the running jobs read, by job id, in epoch order
    recent: tuple[JobRecord, ...]
    sweeps: tuple[SweepRows, ...] = ()


@dataclass(frozen=True)
class SweepRows:
    """A sweep the dashboard shows: its trials' counts per state and its succeeded trials (by end)."""

    sweep: SweepRecord
    counts: dict[JobState, int]
    succeeded: tuple[JobRecord, ...]


def read_dashboard(
    store: Store,
    *,
    recent: int,
    max_running: int,
    workers_since: datetime | None = None,
    max_workers: int = 100,
    tag: str | None = None,
    max_sweeps: int = 0,
) -> DashboardRows:
    """The counts per state, the oldest queued job's creation time, the workers heard from since
    ``workers_since``, at most ``max_running`` running jobs (oldest start first) with their epochs,
    and the ``recent`` most recently finished jobs (newest first). With ``tag``, only the jobs
    carrying it count (each query then also reads the tag's index)."""
    tagged = [JobRow.id.in_(sa.select(TagRow.job_id).where(TagRow.tag == tag))] if tag is not None else []
    with store._session() as session:
        if store.dialect == "postgresql":
            # One consistent view for the whole frame (the counts agree with the lists), and a
            # guarantee that the dashboard writes nothing. SQLite's read transaction is a snapshot already.
            session.execute(sa.text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"))
        counts = count_by_state(session, tag=tag)

        oldest_queued_at = (
            session.scalar(sa.select(sa.func.min(JobRow.created_at)).where(JobRow.state == JobState.QUEUED, *tagged))
            if counts[JobState.QUEUED]
            else None
        )

        worker_query = sa.select(WorkerRow).order_by(WorkerRow.name).limit(max_workers)
        if workers_since is not None:
            worker_query = worker_query.where(WorkerRow.last_heartbeat >= workers_since)
        workers = tuple(_worker_record(row) for row in session.scalars(worker_query))

        running: tuple[JobRecord, ...] = ()
        if counts[JobState.RUNNING] and max_running > 0:
            running = tuple(
                _job_record(row)
                for row in session.scalars(
                    sa.select(JobRow)
                    .where(JobRow.state == JobState.RUNNING, *tagged)
                    .order_by(JobRow.started_at, JobRow.id)
                    .limit(max_running)
                )
            )
        epochs: dict[int, list[EpochRecord]] = {job.id: [] for job in running}
        if running:
            for row in session.scalars(
                sa.select(EpochRow).where(EpochRow.job_id.in_(list(epochs))).order_by(EpochRow.job_id, EpochRow.epoch)
            ):
                epochs[row.job_id].append(_epoch_record(row))

        # One index-ordered LIMIT query per finished state (``ix_jobs_state_updated``), merged here:
        # an ``IN (...) ORDER BY`` over all three would sort every finished job.
        finished: list[JobRecord] = []
        if recent > 0:
            for state in JobState.finished_states():
                if counts[state]:
                    finished.extend(
                        _job_record(row)
                        for row in session.scalars(
                            sa.select(JobRow)
                            .where(JobRow.state == state, *tagged)
                            .order_by(JobRow.updated_at.desc(), JobRow.id.desc())
                            .limit(recent)
                        )
                    )
        finished.sort(key=lambda job: (job.finished_at or job.updated_at, job.id), reverse=True)
        finished = finished[:recent]
        # the tags of the jobs on screen: one more bounded read
        tags = _tags_of(session, [job.id for job in (*running, *finished)])
        running = tuple(replace(job, tags=tags.get(job.id, ())) for job in running)
        finished = [replace(job, tags=tags.get(job.id, ())) for job in finished]
        sweeps = _read_sweeps(session, max_sweeps) if max_sweeps > 0 else ()

    return DashboardRows(
        counts=counts,
        oldest_queued_at=oldest_queued_at,
        workers=workers,
        running=running,
        epochs={job_id: tuple(records) for job_id, records in epochs.items()},
        recent=tuple(finished),
        sweeps=sweeps,
    )


def _read_sweeps(session: Session, limit: int) -> tuple[SweepRows, ...]:
    """The running sweeps, then the latest ended ones, at most ``limit``; per sweep one ``GROUP BY``
    of its trials and its succeeded trials (what its best objective and best-so-far curve need:
    bounded by the sweep's size, not by the store's)."""
    rows = session.scalars(
        sa.select(SweepRow)
        .order_by(sa.case((SweepRow.state == SweepState.RUNNING, 0), else_=1), SweepRow.updated_at.desc())
        .limit(limit)
    ).all()
    found = []
    for row in rows:
        counts = dict.fromkeys(JobState, 0)
        for state, count in session.execute(
            sa.select(JobRow.state, sa.func.count()).where(JobRow.sweep_id == row.id).group_by(JobRow.state)
        ):
            counts[JobState(state)] = count
        succeeded = tuple(
            _job_record(job)
            for job in session.scalars(
                sa.select(JobRow)
                .where(JobRow.sweep_id == row.id, JobRow.state == JobState.SUCCEEDED)
                .order_by(JobRow.finished_at, JobRow.id)
            )
        )
        found.append(SweepRows(_sweep_record(row), counts, succeeded))
    return tuple(found)
