"""The job store: the one source of truth about specs, jobs, their metrics and the workers.

Concurrency contract, written once here:

* Every public method is one transaction. Write transactions are ``BEGIN IMMEDIATE`` on SQLite
  (one writer at a time, others wait up to the busy timeout) and ordinary transactions on PostgreSQL.
* Every state change is a conditional ``UPDATE ... WHERE id = ? AND state = ?`` whose row count is
  checked, so two processes can never both move the same job: a finished job cannot be claimed, a
  claimed job cannot be claimed twice, a job whose lease was lost cannot be finished by its old owner.
* A running job belongs to the worker named in ``lease_owner`` until ``lease_expires_at``. The owner
  keeps it by renewing the lease; ``record_epoch``, ``finish`` and ``release`` from anyone else raise
  :class:`LeaseLost`. ``requeue_expired`` takes jobs back from workers that stopped renewing.
* ``epochs_done == 0`` on a claimed job means "start from scratch" (a new job or a retry); a job
  requeued after a lost lease keeps its epochs and may resume from its backup.

Callers get frozen records (``trainyard.db.records``); ORM rows never leave this package.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import operator
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from trainyard import defaults
from trainyard.db import engine as _engine
from trainyard.db.models import EpochRow, JobRow, SpecRow, SweepRow, TagRow, WorkerRow
from trainyard.db.records import (
    INT_MAX,
    OWNER_SEPARATOR,
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
    owner_node,
    utcnow,
)
from trainyard.errors import InvalidTransition, JobNotFound, StoreError, StoreUnavailable, SweepNotFound, short_value

log = logging.getLogger(__name__)

_T = TypeVar("_T")

_RETRYABLE = tuple(state for state in JobState if state.can_retry)


class LeaseLost(InvalidTransition):
    """A worker wrote to a job it no longer owns (its lease expired and the job was requeued,
    another worker claimed it, or it is finished). The worker must stop training it."""

    def __init__(self, job_id: int, owner: str, state: JobState, holder: str | None) -> None:
        held_by = f", now held by {holder}" if holder and holder != owner else ""
        super().__init__(f"job {job_id}: {owner} no longer holds its lease (job is {state}{held_by})")
        self.job_id = job_id
        self.owner = owner
        self.state = state


def _transient(exc: BaseException) -> bool:
    """A store error from a dropped or refused connection (worth retrying), not from the data."""
    if isinstance(exc, StoreUnavailable):
        return True
    cause = exc.__cause__
    if isinstance(cause, sa.exc.DBAPIError) and cause.connection_invalidated:
        return True
    return isinstance(cause, sa.exc.OperationalError)


def _retrying(what: str, attempt: Callable[[], _T], seconds: float | None = None) -> _T:
    """Run ``attempt`` (an idempotent write), retrying transient store errors with backoff."""
    deadline = time.monotonic() + (defaults.STORE_RETRY_SECONDS if seconds is None else seconds)
    delay = 0.1
    while True:
        try:
            return attempt()
        except StoreError as exc:
            if not _transient(exc) or time.monotonic() + delay > deadline:
                raise
            log.warning("%s: %s; retrying in %.1f s", what, exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def spec_hash(document: Mapping[str, Any]) -> str:
    """Content hash of a spec document: identical documents hash alike whatever their key order."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _finite(value: Any) -> float | None:
    # JSON has no NaN/inf (PostgreSQL rejects them); a diverged metric is stored as null.
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _mse_map(values: Mapping[str, Any] | None) -> dict[str, float | None]:
    return {str(name): _finite(value) for name, value in (values or {}).items()}


def _finite_tree(value: Any) -> Any:
    """A JSON value with every non-finite number (NaN, inf) replaced by null, mappings' keys as strings."""
    if isinstance(value, Mapping):
        return {str(key): _finite_tree(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_tree(item) for item in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return _finite(value)
    return _finite(float(value))  # numpy scalars


def _metric_maps(
    mse: Mapping[str, Any] | None, metrics: Mapping[str, Mapping[str, Any]] | None
) -> tuple[dict[str, float | None], dict[str, dict[str, float | None]]]:
    """``(val_mse, val_metrics)`` from either or both: the MSE of the regression outputs is their ``mse``."""
    full = {str(name): _finite_tree(dict(values)) for name, values in (metrics or {}).items()}
    for name, value in (mse or {}).items():
        full.setdefault(str(name), {}).setdefault("mse", _finite(value))
    only_mse = {name: values["mse"] for name, values in full.items() if "mse" in values}
    return only_mse, full


def count_by_state(session: Session, tag: str | None = None) -> dict[JobState, int]:
    """How many jobs (with ``tag``, if given) are in each state (every state present, zeros included):
    one ``GROUP BY``."""
    counts = dict.fromkeys(JobState, 0)
    query = sa.select(JobRow.state, sa.func.count()).group_by(JobRow.state)
    if tag is not None:
        query = query.where(JobRow.id.in_(sa.select(TagRow.job_id).where(TagRow.tag == tag)))
    for state, count in session.execute(query):
        counts[JobState(state)] = count
    return counts


def _checked_tags(tags: Iterable[str]) -> tuple[str, ...]:
    """A job's tags, sorted and without repeats; anything but short strings raises :class:`StoreError`."""
    unique = sorted(set(tags))
    for tag in unique:
        if not isinstance(tag, str) or not 0 < len(tag) <= defaults.MAX_TAG_LENGTH:
            raise StoreError(
                f"tag: expected a string of 1 to {defaults.MAX_TAG_LENGTH} characters, received {tag!r:.80}"
            )
    if len(unique) > defaults.MAX_TAGS:
        raise StoreError(f"tags: at most {defaults.MAX_TAGS} per job, received {len(unique)}")
    return tuple(unique)


def _tags_of(session: Session, job_ids: Sequence[int]) -> dict[int, tuple[str, ...]]:
    """``{job_id: sorted tags}`` of the given jobs (jobs without tags are left out)."""
    found: dict[int, list[str]] = {}
    ids = list(job_ids)
    for start in range(0, len(ids), 500):
        query = sa.select(TagRow.job_id, TagRow.tag).where(TagRow.job_id.in_(ids[start : start + 500]))
        for job_id, tag in session.execute(query.order_by(TagRow.job_id, TagRow.tag)):
            found.setdefault(job_id, []).append(tag)
    return {job_id: tuple(tags) for job_id, tags in found.items()}


def _field(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


class Store:
    """The job store over one database (SQLite file or PostgreSQL). Open it with :meth:`open`."""

    def __init__(self, engines: _engine.Engines, retry_seconds: float | None = None) -> None:
        self._engines = engines
        self.retry_seconds = defaults.STORE_RETRY_SECONDS if retry_seconds is None else retry_seconds

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(cls, url: str | None = None, *, retry_seconds: float | None = None) -> Store:
        """Open the store at ``url`` (default: ``Settings.from_env().db_url``), creating or upgrading
        its schema on first use. Raises :class:`StoreError` when the database cannot be reached.

        ``retry_seconds`` (default ``defaults.STORE_RETRY_SECONDS``): how long the idempotent
        writes of a worker (``record_epoch``, ``finish``) retry a dropped connection before they
        raise :class:`~trainyard.errors.StoreUnavailable`."""
        if url is None:
            from trainyard.config import Settings

            url = Settings.from_env().db_url
        engines = _engine.engines_for(url)
        try:
            _engine.ensure_schema(engines)
        except SQLAlchemyError as exc:
            raise _engine.translate(exc, engines.name) from exc
        return cls(engines, retry_seconds)

    @property
    def url(self) -> str:
        """The database URL (with its password: do not print it; use :attr:`name`)."""
        return self._engines.url

    @property
    def name(self) -> str:
        """The database URL with its password hidden."""
        return self._engines.name

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._engines.dialect

    def __repr__(self) -> str:
        return f"Store({self.name!r})"

    @contextmanager
    def _session(self, write: bool = False) -> Iterator[Session]:
        """One transaction; database errors leave it as one :class:`StoreError` naming the database."""
        engine = self._engines.write if write else self._engines.read
        try:
            with Session(engine, expire_on_commit=False, autoflush=False) as session, session.begin():
                yield session
        except SQLAlchemyError as exc:
            raise _engine.translate(exc, self.name) from exc

    def _insert(self, table: Any) -> Any:
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        return insert(table)

    # ------------------------------------------------------------------ scheduler side

    def add_jobs(
        self,
        submissions: Sequence[Submission | Mapping[str, Any]],
        priority: int = defaults.PRIORITY,
        max_attempts: int = defaults.MAX_ATTEMPTS,
    ) -> list[JobRecord]:
        """Store each submission's spec document (once per content hash) and queue one job per submission.

        All or nothing: one transaction. A submission is a :class:`Submission` or a bare spec document
        (``JobSpec.document()``); the job takes its name from the document's ``name`` and its epoch
        count from ``training.epochs``, and keeps the rest of the submission as its ``context``.
        """
        if not 1 <= max_attempts <= INT_MAX:
            raise StoreError(
                f"max_attempts: expected an integer from 1 to {INT_MAX}, received {short_value(max_attempts)}"
            )
        check_priority(priority)
        now = utcnow()
        prepared = []
        tags: list[tuple[str, ...]] = []
        for item in submissions:
            submission = item if isinstance(item, Submission) else Submission(spec=item)
            document = json.loads(json.dumps(submission.spec, default=str))  # plain JSON types, checked early
            prepared.append((document, spec_hash(document), submission.context()))
            tags.append(_checked_tags(submission.tags))
        with self._session(write=True) as session:
            spec_ids: dict[str, int] = {}
            for document, digest, _context in prepared:
                if digest not in spec_ids:
                    spec_ids[digest] = self._spec_id(session, document, digest, now)
            rows = [
                _new_job(spec_ids[digest], document, context, priority, max_attempts, now)
                for document, digest, context in prepared
            ]
            session.add_all(rows)
            session.flush()
            tag_rows = [{"job_id": row.id, "tag": tag} for row, job_tags in zip(rows, tags) for tag in job_tags]
            if tag_rows:
                session.execute(sa.insert(TagRow), tag_rows)
            return [_job_record(row, tags=job_tags) for row, job_tags in zip(rows, tags)]

    def _spec_id(self, session: Session, document: dict[str, Any], digest: str, now: datetime) -> int:
        """The id of the stored spec with this content hash, inserting it first if it is new."""
        session.execute(
            self._insert(SpecRow)
            .values(name=_doc_name(document), content_hash=digest, document=document, created_at=now)
            .on_conflict_do_nothing(index_elements=["content_hash"])
        )
        return session.scalars(sa.select(SpecRow.id).where(SpecRow.content_hash == digest)).one()

    def get_job(self, job_id: int) -> JobRecord:
        """The job with its spec document; raises :class:`JobNotFound`."""
        _known_id(job_id)
        with self._session() as session:
            found = session.execute(
                sa.select(JobRow, SpecRow.document, SpecRow.content_hash)
                .join(SpecRow, SpecRow.id == JobRow.spec_id)
                .where(JobRow.id == job_id)
            ).one_or_none()
            if found is None:
                raise JobNotFound(job_id)
            row, document, digest = found
            return _job_record(row, document=document, digest=digest, tags=_tags_of(session, [job_id]).get(job_id, ()))

    def get_jobs(self, job_ids: Iterable[int]) -> list[JobRecord]:
        """The jobs with these ids, in the order given; raises :class:`JobNotFound` for the first missing."""
        ids = [_known_id(job_id) for job_id in job_ids]
        with self._session() as session:
            rows = {row.id: row for row in session.scalars(sa.select(JobRow).where(JobRow.id.in_(ids)))}
            tags = _tags_of(session, list(rows))
        for job_id in ids:
            if job_id not in rows:
                raise JobNotFound(job_id)
        return [_job_record(rows[job_id], tags=tags.get(job_id, ())) for job_id in ids]

    def get_spec(self, spec_id: int) -> SpecRecord:
        """A stored spec; raises :class:`StoreError` when it does not exist."""
        with self._session() as session:
            row = session.get(SpecRow, spec_id) if _in_range(spec_id) else None
            if row is None:
                raise StoreError(f"job store {self.name}: no spec with id {spec_id!r}")
            return SpecRecord(row.id, row.name, row.content_hash, row.document, row.created_at)

    def list_jobs(
        self, state: JobState | str | None = None, limit: int | None = None, *, tag: str | None = None
    ) -> list[JobRecord]:
        """Jobs, newest first, optionally only those in ``state`` or with ``tag``, at most ``limit`` of them."""
        query = sa.select(JobRow).order_by(JobRow.id.desc())
        if state is not None:
            query = query.where(JobRow.state == JobState(state))
        if tag is not None:
            query = query.where(JobRow.id.in_(sa.select(TagRow.job_id).where(TagRow.tag == tag)))
        if limit is not None:
            query = query.limit(limit)
        with self._session() as session:
            rows = list(session.scalars(query))
            tags = _tags_of(session, [row.id for row in rows])
            return [_job_record(row, tags=tags.get(row.id, ())) for row in rows]

    def count_by_state(self, *, tag: str | None = None) -> dict[JobState, int]:
        """How many jobs (with ``tag``, if given) are in each state (every state present, zeros included)."""
        with self._session() as session:
            return count_by_state(session, tag=tag)

    def finished_jobs(
        self, states: Sequence[JobState] | None = None, finished_before: datetime | None = None
    ) -> list[JobRecord]:
        """Finished jobs (in ``states``, all finished states by default) that ended before
        ``finished_before`` if given, oldest first."""
        chosen = [JobState(state) for state in (states or JobState.finished_states())]
        if any(not state.is_finished for state in chosen):
            raise StoreError(f"finished_jobs: expected finished states, received {', '.join(map(str, chosen))}")
        query = sa.select(JobRow).where(JobRow.state.in_(chosen)).order_by(JobRow.id)
        if finished_before is not None:
            query = query.where(sa.func.coalesce(JobRow.finished_at, JobRow.updated_at) < finished_before)
        with self._session() as session:
            rows = list(session.scalars(query))
            tags = _tags_of(session, [row.id for row in rows])
            return [_job_record(row, tags=tags.get(row.id, ())) for row in rows]

    def jobs_with_specs(
        self,
        job_ids: Sequence[int] | None = None,
        *,
        tag: str | None = None,
        sweep: int | None = None,
    ) -> list[JobRecord]:
        """Jobs with their spec documents, tags and lineage, in one read: the ids given (in that order;
        :class:`JobNotFound` for the first missing), or every job with ``tag`` (oldest first).

        With ``sweep`` (a sweep id), the trials of that sweep (oldest first).
        """
        query = sa.select(JobRow, SpecRow.document, SpecRow.content_hash).join(SpecRow, SpecRow.id == JobRow.spec_id)
        if job_ids is not None:
            ids = list(dict.fromkeys(_known_id(job_id) for job_id in job_ids))
            query = query.where(JobRow.id.in_(ids))
        if tag is not None:
            query = query.where(JobRow.id.in_(sa.select(TagRow.job_id).where(TagRow.tag == tag)))
        if sweep is not None:
            query = query.where(JobRow.sweep_id == sweep)
        with self._session() as session:
            found = session.execute(query.order_by(JobRow.id)).all()
            tags = _tags_of(session, [row.id for row, _doc, _hash in found])
        records = {
            row.id: _job_record(row, document=document, digest=digest, tags=tags.get(row.id, ()))
            for row, document, digest in found
        }
        if job_ids is None:
            return list(records.values())
        for job_id in ids:
            if job_id not in records:
                raise JobNotFound(job_id)
        return [records[job_id] for job_id in ids]

    def epochs_of(self, job_ids: Sequence[int], chunk: int = 200) -> Iterator[EpochRecord]:
        """The recorded epochs of the given jobs, by job id then epoch: one query per ``chunk`` jobs,
        its rows streamed, so an export of many jobs holds a few hundred epochs in memory at a time."""
        ids = sorted(set(job_ids))
        columns = (EpochRow.job_id, EpochRow.epoch, EpochRow.loss, EpochRow.val_loss, EpochRow.outputs)
        for start in range(0, len(ids), chunk):
            part = ids[start : start + chunk]
            with self._session() as session:
                # Plain rows, not ORM objects, streamed rather than fetched as a list: an export reads
                # hundreds of thousands of epochs, and rows kept alive for a whole chunk outlive the
                # collector's young generations, so it walks the whole heap again and again.
                rows = session.execute(
                    sa.select(*columns, EpochRow.recorded_at)
                    .where(EpochRow.job_id.in_(part))
                    .order_by(EpochRow.job_id, EpochRow.epoch)
                    .execution_options(yield_per=100)
                )
                for job_id, epoch, loss, val_loss, outputs, recorded_at in rows:
                    yield EpochRecord(job_id, epoch, loss, val_loss, dict(outputs or {}), recorded_at)

    def record_lineage(self, job_id: int, owner: str, lineage: Mapping[str, Any]) -> None:
        """Record what the worker training the job runs on (versions, host, devices, strategy).
        Raises :class:`LeaseLost` if ``owner`` does not hold the job."""
        document = _finite_tree(json.loads(json.dumps(dict(lineage), default=str)))
        with self._session(write=True) as session:
            if not self._move(session, job_id, JobState.RUNNING, owner=owner, lineage=document):
                self._raise_lost(session, job_id, owner)

    def delete_jobs(self, job_ids: Sequence[int]) -> list[JobRecord]:
        """Delete finished jobs with their epochs and tags (one transaction); returns those deleted.

        A job that is not finished (queued, running, or retried since the caller looked), or is a
        trial of a running sweep, is left alone and not returned. Spec documents no other job uses
        go with them.
        """
        ids = sorted({job_id for job_id in job_ids if _in_range(job_id)})
        finished = JobState.finished_states()
        running_sweeps = sa.select(SweepRow.id).where(SweepRow.state == SweepState.RUNNING)
        deletable = sa.and_(
            JobRow.state.in_(finished), sa.or_(JobRow.sweep_id.is_(None), JobRow.sweep_id.not_in(running_sweeps))
        )
        deleted: list[JobRecord] = []
        with self._session(write=True) as session:
            for start in range(0, len(ids), 500):
                part = ids[start : start + 500]
                rows = list(session.scalars(sa.select(JobRow).where(JobRow.id.in_(part), deletable)))
                if not rows:
                    continue
                gone = [row.id for row in rows]
                tags = _tags_of(session, gone)
                session.execute(sa.delete(EpochRow).where(EpochRow.job_id.in_(gone)))
                session.execute(sa.delete(TagRow).where(TagRow.job_id.in_(gone)))
                session.execute(
                    sa.update(WorkerRow).where(WorkerRow.current_job_id.in_(gone)).values(current_job_id=None)
                )
                result = session.execute(
                    sa.delete(JobRow).where(JobRow.id.in_(gone), deletable).execution_options(synchronize_session=False)
                )
                if result.rowcount != len(gone):  # cannot happen inside one write transaction
                    raise StoreError(f"job store {self.name}: jobs changed while being deleted; nothing deleted")
                spec_ids = {row.spec_id for row in rows}
                session.execute(
                    sa.delete(SpecRow).where(SpecRow.id.in_(spec_ids), ~sa.exists().where(JobRow.spec_id == SpecRow.id))
                )
                deleted.extend(_job_record(row, tags=tags.get(row.id, ())) for row in rows)
        return deleted

    def epochs(self, job_id: int) -> list[EpochRecord]:
        """The recorded epochs of a job, in order; raises :class:`JobNotFound`."""
        _known_id(job_id)
        with self._session() as session:
            if session.get(JobRow, job_id) is None:
                raise JobNotFound(job_id)
            rows = session.scalars(sa.select(EpochRow).where(EpochRow.job_id == job_id).order_by(EpochRow.epoch))
            return [_epoch_record(row) for row in rows]

    def request_cancel(self, job_id: int) -> JobRecord:
        """Cancel a job: a queued one is cancelled at once, a running one gets ``cancel_requested``
        (its worker stops it at the next batch boundary). A finished job raises :class:`InvalidTransition`."""
        _known_id(job_id)
        now = utcnow()
        with self._session(write=True) as session:
            if self._move(
                session,
                job_id,
                JobState.QUEUED,
                state=JobState.CANCELLED,
                finished_at=now,
                updated_at=now,
                error="cancelled before it started",
            ):
                return self._job_in(session, job_id)
            if self._move(session, job_id, JobState.RUNNING, cancel_requested=True, updated_at=now):
                return self._job_in(session, job_id)
            job = self._job_in(session, job_id)
            raise InvalidTransition(
                f"job {job_id} is already {job.state}; only queued or running jobs can be cancelled"
            )

    def retry(self, job_id: int) -> JobRecord:
        """Queue a failed or cancelled job again, from scratch: attempts, epochs and results are reset."""
        _known_id(job_id)
        now = utcnow()
        with self._session(write=True) as session:
            moved = self._move(
                session,
                job_id,
                _RETRYABLE,
                state=JobState.QUEUED,
                attempts=0,
                epochs_done=0,
                error=None,
                cancel_requested=False,
                lease_owner=None,
                lease_expires_at=None,
                started_at=None,
                finished_at=None,
                dispatched_at=None,
                model_path=None,
                val_mse={},
                test_mse={},
                val_metrics={},
                test_metrics={},
                best_epoch=None,
                stopped_epoch=None,
                lineage={},
                updated_at=now,
            )
            if not moved:
                job = self._job_in(session, job_id)
                raise InvalidTransition(f"job {job_id} is {job.state}; only failed or cancelled jobs can be retried")
            session.execute(sa.delete(EpochRow).where(EpochRow.job_id == job_id))
            return self._job_in(session, job_id)

    def mark_dispatched(self, job_ids: Iterable[int], at: datetime | None = None) -> None:
        """Remember that a broker message was sent for these jobs (the reconciler reads ``dispatched_at``)."""
        ids = list(job_ids)
        if not ids:
            return
        with self._session(write=True) as session:
            session.execute(
                sa.update(JobRow)
                .where(JobRow.id.in_(ids))
                .values(dispatched_at=at or utcnow())
                .execution_options(synchronize_session=False)
            )

    def count_jobs(self, state: JobState | str) -> int:
        """How many jobs are in ``state``: an index-only count, no row read."""
        with self._session() as session:
            query = sa.select(sa.func.count()).select_from(JobRow).where(JobRow.state == JobState(state))
            return int(session.scalar(query) or 0)

    def redispatch_candidates(self, limit: int, dispatched_by: datetime) -> list[int]:
        """Ids of at most ``limit`` queued jobs the reconciler may send a slot for, best first.

        First the queued jobs never dispatched (new ones, and requeued or handed-back ones, whose
        ``dispatched_at`` is cleared), oldest job first; then those last dispatched at or before
        ``dispatched_by``, oldest dispatch first (jobs dispatched later may still have their message on
        its way). Each part is one index-ordered ``LIMIT`` query on ``(state, dispatched_at,
        created_at, id)``: the cost is that of ``limit`` rows however many jobs are queued.
        """
        if limit <= 0:
            return []
        queued = JobRow.state == JobState.QUEUED
        with self._session() as session:
            ids = list(
                session.scalars(
                    sa.select(JobRow.id)
                    .where(queued, JobRow.dispatched_at.is_(None))
                    .order_by(JobRow.created_at, JobRow.id)
                    .limit(limit)
                )
            )
            if len(ids) < limit:
                ids += session.scalars(
                    sa.select(JobRow.id)
                    .where(queued, JobRow.dispatched_at <= dispatched_by)
                    .order_by(JobRow.dispatched_at, JobRow.created_at, JobRow.id)
                    .limit(limit - len(ids))
                )
            return ids

    # ------------------------------------------------------------------ sweeps
    #
    # A sweep is a row of its own; its trials are jobs with ``sweep_id``, a trial number and their
    # parameters. The unique indexes on ``(sweep_id, trial)`` and ``(sweep_id, params_key)`` are the
    # whole concurrency story of trials: two processes asking for trial n at once both try to insert
    # it, one insert wins and the other gets None from :meth:`add_trial`.

    def save_sweep(
        self, name: str, definition: Mapping[str, Any], spec: Mapping[str, Any], context: Mapping[str, Any]
    ) -> tuple[SweepRecord, bool]:
        """Store a new sweep, or update the definition of the sweep of that name (extending it: it
        runs again). Returns the sweep and whether it is new."""
        now = utcnow()
        definition = json.loads(json.dumps(definition))
        values = {"definition": definition, "spec": json.loads(json.dumps(spec)), "context": dict(context)}
        with self._session(write=True) as session:
            row = session.scalars(sa.select(SweepRow).where(SweepRow.name == name).with_for_update()).first()
            created = row is None
            if row is None:
                session.execute(
                    self._insert(SweepRow)
                    .values(name=name, state=SweepState.RUNNING, created_at=now, updated_at=now, **values)
                    .on_conflict_do_nothing(index_elements=["name"])
                )
                row = session.scalars(sa.select(SweepRow).where(SweepRow.name == name)).one()
            else:
                row.definition, row.spec, row.context = values["definition"], values["spec"], values["context"]
                row.state, row.finished_at, row.updated_at = SweepState.RUNNING, None, now
                session.flush()
            return _sweep_record(row), created

    def find_sweep(self, name: str) -> SweepRecord | None:
        """The sweep called ``name``, or None."""
        with self._session() as session:
            row = session.scalars(sa.select(SweepRow).where(SweepRow.name == name)).first()
            return _sweep_record(row) if row is not None else None

    def get_sweep(self, sweep_id: int) -> SweepRecord:
        """The sweep with this id; raises :class:`SweepNotFound`."""
        if not _in_range(sweep_id):
            raise SweepNotFound(sweep_id)
        with self._session() as session:
            row = session.get(SweepRow, sweep_id)
            if row is None:
                raise SweepNotFound(sweep_id)
            return _sweep_record(row)

    def list_sweeps(self, state: SweepState | str | None = None) -> list[SweepRecord]:
        """Sweeps, newest first (only those in ``state`` if given)."""
        query = sa.select(SweepRow).order_by(SweepRow.id.desc())
        if state is not None:
            query = query.where(SweepRow.state == SweepState(state))
        with self._session() as session:
            return [_sweep_record(row) for row in session.scalars(query)]

    def set_sweep_state(self, sweep_id: int, state: SweepState, from_state: SweepState = SweepState.RUNNING) -> bool:
        """Move a sweep from ``from_state`` to ``state`` (a conditional UPDATE); True if this call moved it."""
        now = utcnow()
        values: dict[str, Any] = {"state": state, "updated_at": now}
        if state is not SweepState.RUNNING:
            values["finished_at"] = now
        with self._session(write=True) as session:
            result = session.execute(
                sa.update(SweepRow)
                .where(SweepRow.id == sweep_id, SweepRow.state == from_state)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            if result.rowcount != 1 and session.get(SweepRow, sweep_id) is None:
                raise SweepNotFound(sweep_id)
            return result.rowcount == 1

    def delete_sweep(self, sweep_id: int) -> bool:
        """Delete a sweep that is no longer running and has no trial left (delete its trials first,
        with :meth:`delete_jobs`); True if this call deleted it. Raises :class:`SweepNotFound`."""
        with self._session(write=True) as session:
            row = session.get(SweepRow, sweep_id, with_for_update=True) if _in_range(sweep_id) else None
            if row is None:
                raise SweepNotFound(sweep_id)
            if row.state is SweepState.RUNNING:
                return False
            if session.scalar(sa.select(JobRow.id).where(JobRow.sweep_id == sweep_id).limit(1)) is not None:
                return False
            session.delete(row)
            return True

    def sweep_jobs(self, sweep_id: int) -> list[JobRecord]:
        """The trials of a sweep (jobs without their spec), by trial number."""
        with self._session() as session:
            rows = session.scalars(sa.select(JobRow).where(JobRow.sweep_id == sweep_id).order_by(JobRow.trial))
            return [_job_record(row) for row in rows]

    def sweep_epochs(self, sweep_id: int) -> dict[int, list[EpochRecord]]:
        """``{job id: its epochs in order}`` of every trial of a sweep, in one query."""
        query = (
            sa.select(EpochRow)
            .join(JobRow, JobRow.id == EpochRow.job_id)
            .where(JobRow.sweep_id == sweep_id)
            .order_by(EpochRow.job_id, EpochRow.epoch)
        )
        found: dict[int, list[EpochRecord]] = {}
        with self._session() as session:
            for row in session.scalars(query):
                found.setdefault(row.job_id, []).append(_epoch_record(row))
        return found

    def add_trial(
        self,
        sweep_id: int,
        trial: int,
        params: Mapping[str, Any],
        params_key: str,
        submission: Submission,
        priority: int = defaults.PRIORITY,
        max_attempts: int = defaults.MAX_ATTEMPTS,
    ) -> JobRecord | None:
        """Queue trial number ``trial`` of a running sweep as a job; None when another process queued
        that trial number or those parameters first, or the sweep is no longer running."""
        now = utcnow()
        document = json.loads(json.dumps(submission.spec, default=str))
        digest = spec_hash(document)
        tags = _checked_tags(submission.tags)
        try:
            with self._session(write=True) as session:
                sweep = session.get(SweepRow, sweep_id, with_for_update=True)
                if sweep is None:
                    raise SweepNotFound(sweep_id)
                if sweep.state is not SweepState.RUNNING:
                    return None
                row = _new_job(
                    self._spec_id(session, document, digest, now),
                    document,
                    submission.context(),
                    priority,
                    max_attempts,
                    now,
                )
                row.sweep_id, row.trial, row.params, row.params_key = sweep_id, trial, dict(params), params_key
                session.add(row)
                session.flush()
                if tags:
                    session.execute(sa.insert(TagRow), [{"job_id": row.id, "tag": tag} for tag in tags])
                return _job_record(row, tags=tags)
        except StoreError as exc:
            if isinstance(exc.__cause__, sa.exc.IntegrityError):
                return None  # the trial number or the parameters are taken: someone else queued it
            raise

    # ------------------------------------------------------------------ worker side

    def running_job_ids(self, node: str) -> list[int]:
        """Ids of the running jobs whose lease a process of worker ``node`` holds, newest first.

        Owners are ``<node>/<pid>`` (:func:`~trainyard.db.records.make_owner`). One query over the
        running jobs (the ``state`` index) with ``lease_owner LIKE '<node>/%'``; the owners found are
        then read back with :func:`~trainyard.db.records.owner_node`, which is exact where ``LIKE``
        is not (SQLite compares ASCII case-insensitively). Costs the same whatever the queue holds.
        """
        prefix = node + OWNER_SEPARATOR
        with self._session() as session:
            found = session.execute(
                sa.select(JobRow.id, JobRow.lease_owner)
                .where(JobRow.state == JobState.RUNNING, JobRow.lease_owner.startswith(prefix, autoescape=True))
                .order_by(JobRow.id.desc())
            ).all()
        return [job_id for job_id, owner in found if owner_node(owner) == node]

    def claim_next(self, owner: str, lease_seconds: float = defaults.LEASE_SECONDS) -> JobRecord | None:
        """Claim the best queued job (highest priority, then oldest) for ``owner``, or None.

        The job becomes ``running`` with ``attempts`` + 1 and a lease until now + ``lease_seconds``.
        The returned record carries the spec document.
        """
        while True:
            now = utcnow()
            with self._session(write=True) as session:
                candidate = session.scalars(
                    sa.select(JobRow.id)
                    .where(JobRow.state == JobState.QUEUED)
                    .order_by(JobRow.priority.desc(), JobRow.created_at, JobRow.id)
                    .limit(1)
                    .with_for_update(skip_locked=True)  # PostgreSQL; SQLite holds the write lock already
                ).first()
                if candidate is None:
                    return None
                if self._move(
                    session,
                    candidate,
                    JobState.QUEUED,
                    state=JobState.RUNNING,
                    attempts=JobRow.attempts + 1,
                    lease_owner=owner,
                    lease_expires_at=now + timedelta(seconds=lease_seconds),
                    started_at=now,
                    finished_at=None,
                    updated_at=now,
                ):
                    return self._job_in(session, candidate, with_spec=True)
            # Lost a race for that row (only possible without row locks): look again.

    def renew_lease(self, job_id: int, owner: str, lease_seconds: float = defaults.LEASE_SECONDS) -> LeaseStatus:
        """Extend ``owner``'s lease on a running job; says whether it still holds it and whether a
        cancel was requested. A lost lease is reported (``held=False``), not raised."""
        now = utcnow()
        expires = now + timedelta(seconds=lease_seconds)
        with self._session(write=True) as session:
            held = self._move(session, job_id, JobState.RUNNING, owner=owner, lease_expires_at=expires, updated_at=now)
            job = self._job_in(session, job_id)
            return LeaseStatus(
                job_id=job_id,
                held=held,
                cancel_requested=job.cancel_requested,
                state=job.state,
                expires_at=expires if held else job.lease_expires_at,
            )

    def record_epoch(self, job_id: int, owner: str, metrics: Any) -> bool:
        """Store one epoch's metrics (an ``EpochMetrics`` or a dict with ``epoch``, ``loss``,
        ``val_loss``, ``outputs``). Idempotent: returns False if that epoch was already stored.
        Raises :class:`LeaseLost` if ``owner`` does not hold the job.

        A dropped connection is retried for :attr:`retry_seconds` (safe: idempotent), then raises
        :class:`~trainyard.errors.StoreUnavailable`.
        """
        return _retrying(
            f"job {job_id}: recording an epoch",
            lambda: self._record_epoch(job_id, owner, metrics),
            self.retry_seconds,
        )

    def record_epochs(self, job_id: int, owner: str, epochs: Sequence[Any]) -> int:
        """Store several epochs in order in one transaction (each as :meth:`record_epoch` would);
        returns how many were new. A worker writes the epochs of a small model this way: one
        transaction costs as much as a whole epoch of it. Same errors and retries as
        :meth:`record_epoch`; an empty sequence stores nothing and checks nothing."""
        if not epochs:
            return 0
        return _retrying(
            f"job {job_id}: recording {len(epochs)} epoch(s)",
            lambda: self._record_epochs(job_id, owner, epochs),
            self.retry_seconds,
        )

    def _record_epoch(self, job_id: int, owner: str, metrics: Any) -> bool:
        return self._record_epochs(job_id, owner, [metrics]) == 1

    def _record_epochs(self, job_id: int, owner: str, epochs: Sequence[Any]) -> int:
        rows = [_epoch_values(job_id, metrics) for metrics in epochs]
        now = utcnow()
        with self._session(write=True) as session:
            job = self._owned(session, job_id, owner)
            if job.sweep_id is not None and self.dialect == "postgresql":
                # One writer of a sweep's epochs at a time (SQLite has one writer anyway): their ids
                # then follow the order they are committed in, which the sweep's pruning decisions
                # rely on (an epoch with a smaller id was visible to whoever stored a larger one).
                session.execute(sa.select(SweepRow.id).where(SweepRow.id == job.sweep_id).with_for_update())
            newest: tuple[int, dict[str, dict[str, Any]]] | None = None
            stored = 0
            for epoch, values in rows:  # one INSERT each, in order: the ids follow the epochs
                inserted = (
                    session.execute(
                        self._insert(EpochRow)
                        .values(job_id=job_id, epoch=epoch, recorded_at=now, **values)
                        .on_conflict_do_nothing(index_elements=["job_id", "epoch"])
                        .returning(EpochRow.id)
                    ).first()
                    is not None
                )
                if inserted:
                    stored += 1
                    if epoch >= max(job.epochs_done, newest[0] if newest else 0):
                        newest = (epoch, values["outputs"])
            if newest is not None:
                epoch, outputs = newest
                session.execute(
                    sa.update(JobRow)
                    .where(JobRow.id == job_id)
                    .values(
                        epochs_done=epoch,
                        val_mse={name: values["val_mse"] for name, values in outputs.items() if "val_mse" in values},
                        val_metrics={name: values.get("val_metrics", {}) for name, values in outputs.items()},
                        updated_at=now,
                    )
                    .execution_options(synchronize_session=False)
                )
            return stored

    def finish(
        self,
        job_id: int,
        owner: str,
        state: JobState | str,
        error: str | None = None,
        test_mse: Mapping[str, float | None] | None = None,
        model_path: str | None = None,
        *,
        val_mse: Mapping[str, float | None] | None = None,
        val_metrics: Mapping[str, Mapping[str, float | None]] | None = None,
        test_metrics: Mapping[str, Mapping[str, float | None]] | None = None,
        best_epoch: int | None = None,
        stopped_epoch: int | None = None,
    ) -> JobRecord:
        """End ``owner``'s run of a job in a terminal ``state`` (succeeded, failed or cancelled).

        The final model's metrics are ``val_metrics``/``test_metrics`` (``{output: {metric: value}}``)
        and, for the regression outputs, ``val_mse``/``test_mse``; either form is enough, the store
        keeps both consistent. The validation metrics default to the last recorded epoch's.
        ``best_epoch`` and ``stopped_epoch`` record a run that stopped early or restored an earlier
        epoch's weights. Raises :class:`LeaseLost` if ``owner`` does not hold the job. A dropped
        connection is retried; if the dropped attempt had in fact committed, the retry finds the job
        already ended by ``owner`` and returns it.
        """
        target = JobState(state)
        if not target.is_finished:
            raise InvalidTransition(f"finish job {job_id}: expected succeeded, failed or cancelled, received {target}")
        now = utcnow()
        test_only_mse, test_full = _metric_maps(test_mse, test_metrics)
        values: dict[str, Any] = {
            "state": target,
            "finished_at": now,
            "updated_at": now,
            "lease_expires_at": None,
            "error": error if target is not JobState.SUCCEEDED else None,
            "test_mse": test_only_mse,
            "test_metrics": test_full,
            "model_path": model_path,
            "best_epoch": best_epoch,
            "stopped_epoch": stopped_epoch,
        }
        if val_mse is not None or val_metrics is not None:
            values["val_mse"], values["val_metrics"] = _metric_maps(val_mse, val_metrics)
        dropped = False

        def attempt() -> JobRecord:
            nonlocal dropped
            try:
                with self._session(write=True) as session:
                    if not self._move(session, job_id, JobState.RUNNING, owner=owner, **values):
                        self._raise_lost(session, job_id, owner)
                    return self._job_in(session, job_id)
            except LeaseLost:
                if dropped:
                    job = self.get_job(job_id)
                    if job.state is target and job.lease_owner == owner:
                        return job
                raise
            except StoreError as exc:
                dropped = dropped or _transient(exc)
                raise

        return _retrying(f"job {job_id}: recording its end", attempt, self.retry_seconds)

    def release(self, job_id: int, owner: str) -> JobRecord:
        """Hand a running job back (worker shutdown): it is queued again without using up an attempt,
        or cancelled if a cancel was requested. Raises :class:`LeaseLost` if ``owner`` does not hold it."""
        now = utcnow()
        with self._session(write=True) as session:
            job = self._owned(session, job_id, owner)
            if job.cancel_requested:
                values: dict[str, Any] = {"state": JobState.CANCELLED, "finished_at": now, "error": "cancelled"}
            else:
                values = {
                    "state": JobState.QUEUED,
                    "attempts": sa.case((JobRow.attempts > 0, JobRow.attempts - 1), else_=0),
                    "lease_owner": None,
                    "dispatched_at": None,
                }
            if not self._move(
                session, job_id, JobState.RUNNING, owner=owner, lease_expires_at=None, updated_at=now, **values
            ):
                self._raise_lost(session, job_id, owner)
            return self._job_in(session, job_id)

    def requeue_expired(self, now: datetime | None = None) -> list[JobRecord]:
        """Take back running jobs whose lease expired before ``now``: queued again, or ``failed``
        once they used up their attempts, or ``cancelled`` if a cancel was requested. Returns them."""
        now = now or utcnow()
        changed: list[int] = []
        with self._session(write=True) as session:
            expired = session.scalars(
                sa.select(JobRow)
                .where(JobRow.state == JobState.RUNNING, JobRow.lease_expires_at < now)
                .order_by(JobRow.id)
                .with_for_update(skip_locked=True)
            ).all()
            for job in expired:
                lost = f"lease of {job.lease_owner} expired at {job.lease_expires_at:%Y-%m-%d %H:%M:%S} UTC"
                if job.cancel_requested:
                    values: dict[str, Any] = {
                        "state": JobState.CANCELLED,
                        "finished_at": now,
                        "error": f"cancelled (worker lost: {lost})",
                    }
                elif job.attempts >= job.max_attempts:
                    values = {
                        "state": JobState.FAILED,
                        "finished_at": now,
                        "error": f"worker lost {job.attempts} times: {lost}",
                    }
                else:
                    values = {
                        "state": JobState.QUEUED,
                        "lease_owner": None,
                        "dispatched_at": None,
                        "error": f"attempt {job.attempts} of {job.max_attempts} interrupted: {lost}",
                    }
                if self._move(
                    session,
                    job.id,
                    JobState.RUNNING,
                    owner=job.lease_owner,
                    expired_before=now,
                    lease_expires_at=None,
                    updated_at=now,
                    **values,
                ):
                    changed.append(job.id)
            session.expire_all()
            return [self._job_in(session, job_id) for job_id in changed]

    def worker_heartbeat(
        self,
        name: str,
        host: str,
        devices: Sequence[str],
        state: WorkerState | str,
        current_job_id: int | None = None,
    ) -> WorkerRecord:
        """Record that worker ``name`` is alive (insert on first heartbeat). A worker that comes back
        after ``stopped`` gets a new ``started_at``."""
        now = utcnow()
        new_state = WorkerState(state)
        with self._session(write=True) as session:
            row = session.get(WorkerRow, name, with_for_update=True)
            if row is None:
                session.execute(
                    self._insert(WorkerRow)
                    .values(
                        name=name,
                        host=host,
                        devices=list(devices),
                        state=new_state,
                        current_job_id=current_job_id,
                        started_at=now,
                        last_heartbeat=now,
                    )
                    .on_conflict_do_nothing(index_elements=["name"])
                )
                row = session.get(WorkerRow, name, populate_existing=True)
                assert row is not None
            else:
                if row.state is WorkerState.STOPPED and new_state is not WorkerState.STOPPED:
                    row.started_at = now
                row.host = host
                row.devices = list(devices)
                row.state = new_state
                row.current_job_id = current_job_id
                row.last_heartbeat = now
                session.flush()
            return _worker_record(row)

    def list_workers(self) -> list[WorkerRecord]:
        """Every worker that ever sent a heartbeat, by name."""
        with self._session() as session:
            return [_worker_record(row) for row in session.scalars(sa.select(WorkerRow).order_by(WorkerRow.name))]

    # ------------------------------------------------------------------ internals

    def _move(
        self,
        session: Session,
        job_id: int,
        from_state: JobState | tuple[JobState, ...],
        *,
        owner: str | None = None,
        expired_before: datetime | None = None,
        **values: Any,
    ) -> bool:
        """The one way a job changes: a conditional UPDATE; True if this call changed the row."""
        states = (from_state,) if isinstance(from_state, JobState) else from_state
        conditions = [JobRow.id == job_id, JobRow.state.in_(states)]
        if owner is not None:
            conditions.append(JobRow.lease_owner == owner)
        if expired_before is not None:
            conditions.append(JobRow.lease_expires_at < expired_before)
        result = session.execute(
            sa.update(JobRow).where(*conditions).values(**values).execution_options(synchronize_session=False)
        )
        return result.rowcount == 1

    def _job_in(self, session: Session, job_id: int, with_spec: bool = False) -> JobRecord:
        row = session.get(JobRow, job_id, populate_existing=True)
        if row is None:
            raise JobNotFound(job_id)
        if with_spec:
            spec = session.get(SpecRow, row.spec_id)
            assert spec is not None  # foreign key
            tags = _tags_of(session, [job_id]).get(job_id, ())
            return _job_record(row, document=spec.document, digest=spec.content_hash, tags=tags)
        return _job_record(row)

    def _owned(self, session: Session, job_id: int, owner: str) -> JobRow:
        row = session.get(JobRow, job_id, populate_existing=True)
        if row is None:
            raise JobNotFound(job_id)
        if row.state is not JobState.RUNNING or row.lease_owner != owner:
            raise LeaseLost(job_id, owner, row.state, row.lease_owner)
        return row

    def _raise_lost(self, session: Session, job_id: int, owner: str) -> None:
        job = self._job_in(session, job_id)
        raise LeaseLost(job_id, owner, job.state, job.lease_owner)


def _epoch_values(job_id: int, metrics: Any) -> tuple[int, dict[str, Any]]:
    """One epoch's number and the columns of its row (non-finite values as null, each output's
    ``val_mse`` and ``val_metrics`` kept consistent)."""
    epoch = int(_field(metrics, "epoch"))
    if epoch < 1:
        raise StoreError(f"job {job_id}: epoch numbers start at 1, received {epoch}")
    outputs: dict[str, dict[str, Any]] = {
        str(name): _finite_tree(dict(values or {})) for name, values in (_field(metrics, "outputs") or {}).items()
    }
    for name, values in (_field(metrics, "val_metrics") or {}).items():
        outputs.setdefault(str(name), {})["val_metrics"] = _finite_tree(dict(values))
    for values in outputs.values():
        if "val_mse" in values and "val_metrics" not in values:
            values["val_metrics"] = {"mse": values["val_mse"]}
        elif "val_mse" not in values and "mse" in values.get("val_metrics", {}):
            values["val_mse"] = values["val_metrics"]["mse"]
    return epoch, {
        "loss": _finite(_field(metrics, "loss")),
        "val_loss": _finite(_field(metrics, "val_loss")),
        "outputs": outputs,
    }


def _new_job(
    spec_id: int, document: Mapping[str, Any], context: dict[str, Any], priority: int, max_attempts: int, now: datetime
) -> JobRow:
    return JobRow(
        spec_id=spec_id,
        name=_doc_name(document),
        state=JobState.QUEUED,
        priority=int(priority),
        attempts=0,
        max_attempts=int(max_attempts),
        epochs_total=_doc_epochs(document),
        epochs_done=0,
        created_at=now,
        updated_at=now,
        cancel_requested=False,
        val_mse={},
        test_mse={},
        val_metrics={},
        test_metrics={},
        context=context,
    )


def check_priority(priority: int) -> int:
    """``priority`` if both stores hold it (a 32-bit integer), else :class:`StoreError` saying so."""
    if isinstance(priority, bool) or not isinstance(priority, int) or not -INT_MAX - 1 <= priority <= INT_MAX:
        raise StoreError(
            f"priority: expected an integer from {-INT_MAX - 1} to {INT_MAX}, received {short_value(priority)}"
        )
    return priority


def _in_range(row_id: Any) -> bool:
    """An id some row could have: an int from 1 to ``INT_MAX`` (PostgreSQL's INTEGER; SQLite's
    64-bit one raises ``OverflowError`` at bind time past 2**63)."""
    if isinstance(row_id, bool):
        return False
    try:
        return 1 <= operator.index(row_id) <= INT_MAX
    except TypeError:
        return False


def _known_id(job_id: Any) -> int:
    """``job_id`` if a job could have it, else :class:`JobNotFound` without asking the database."""
    if not _in_range(job_id):
        raise JobNotFound(job_id)
    return operator.index(job_id)


def _doc_name(document: Mapping[str, Any]) -> str:
    name = document.get("name")
    return str(name) if name else "unnamed"


def _doc_epochs(document: Mapping[str, Any]) -> int:
    training = document.get("training")
    epochs = training.get("epochs") if isinstance(training, Mapping) else None
    try:
        return int(epochs) if epochs is not None else 0
    except (TypeError, ValueError):
        return 0


def _job_record(
    row: JobRow, document: dict[str, Any] | None = None, digest: str | None = None, tags: Sequence[str] = ()
) -> JobRecord:
    return JobRecord(
        id=row.id,
        spec_id=row.spec_id,
        name=row.name,
        state=JobState(row.state),
        priority=row.priority,
        attempts=row.attempts,
        max_attempts=row.max_attempts,
        epochs_total=row.epochs_total,
        epochs_done=row.epochs_done,
        created_at=row.created_at,
        updated_at=row.updated_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        error=row.error,
        lease_owner=row.lease_owner,
        lease_expires_at=row.lease_expires_at,
        cancel_requested=bool(row.cancel_requested),
        model_path=row.model_path,
        val_mse=dict(row.val_mse or {}),
        test_mse=dict(row.test_mse or {}),
        val_metrics={name: dict(values) for name, values in (row.val_metrics or {}).items()},
        test_metrics={name: dict(values) for name, values in (row.test_metrics or {}).items()},
        best_epoch=row.best_epoch,
        stopped_epoch=row.stopped_epoch,
        spec_document=document,
        context=dict(row.context or {}) if document is not None else None,
        dispatched_at=row.dispatched_at,
        spec_hash=digest,
        tags=tuple(tags),
        run_lineage=dict(row.lineage or {}) if document is not None else None,
        sweep_id=row.sweep_id,
        trial=row.trial,
        params=dict(row.params) if row.params is not None else None,
    )


def _sweep_record(row: SweepRow) -> SweepRecord:
    return SweepRecord(
        id=row.id,
        name=row.name,
        state=SweepState(row.state),
        definition=dict(row.definition or {}),
        spec=dict(row.spec or {}),
        context=dict(row.context or {}),
        created_at=row.created_at,
        updated_at=row.updated_at,
        finished_at=row.finished_at,
    )


def _epoch_record(row: EpochRow) -> EpochRecord:
    return EpochRecord(
        job_id=row.job_id,
        epoch=row.epoch,
        loss=row.loss,
        val_loss=row.val_loss,
        outputs=dict(row.outputs or {}),
        recorded_at=row.recorded_at,
        id=row.id,
    )


def _worker_record(row: WorkerRow) -> WorkerRecord:
    return WorkerRecord(
        name=row.name,
        host=row.host,
        devices=list(row.devices or []),
        state=WorkerState(row.state),
        current_job_id=row.current_job_id,
        started_at=row.started_at,
        last_heartbeat=row.last_heartbeat,
    )
