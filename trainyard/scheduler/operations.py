"""What a user does with jobs: submit, list, show, cancel, retry. The CLI and the Python API call these.

Every operation goes through the store (the one source of truth); ``submit`` and ``retry`` then hand
the jobs to the broker with :func:`trainyard.queue.dispatch` (no worker code, no Celery). A job that is
stored but whose message could not be sent is not lost: it stays ``queued`` and a worker's reconciler
sends the slot later.

Nothing here imports TensorFlow at import time; ``submit`` does when it validates the specs.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from trainyard import defaults
from trainyard.config import Settings
from trainyard.db import EpochRecord, JobRecord, JobState, Store, Submission
from trainyard.db.records import isoformat, job_json
from trainyard.errors import BrokerError, InvalidTransition, JobNotFound, Problem, SpecError, TrainyardError


def open_store(settings: Settings | None = None) -> Store:
    """The store named by the settings (``TRAINYARD_DB_URL`` or the SQLite file in ``TRAINYARD_HOME``)."""
    settings = settings or Settings.from_env()
    return Store.open(settings.db_url)


def parse_job_id(value: object) -> int:
    """``"12"``, ``"#12"`` or ``12`` -> 12; anything else is a :class:`JobNotFound` naming what was given.

    Only ASCII digits count (``"²"`` is a digit to ``str.isdigit`` but not to ``int``), and only as
    many as an id can have: the store refuses ids past its integer range the same way.
    """
    found = parse_id(value)
    if found is None:
        raise JobNotFound(value)
    return found


def parse_id(value: object) -> int | None:
    """An id as a user gives it (``12``, ``"12"``, ``"#12"``) as an int, None if it is none."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    text = str(value).strip().lstrip("#")
    if text.isascii() and text.isdigit() and len(text) <= _ID_DIGITS:
        return int(text)
    return None


#: More digits than this cannot be an id (the largest, ``records.INT_MAX``, has 10); a longer
#: string is never turned into an int (Python refuses to print ints of 4,300 digits or more).
_ID_DIGITS = 20


def submit(
    paths: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
    overrides: Iterable[str] = (),
    priority: int = defaults.PRIORITY,
    dispatch: bool = True,
    *,
    tags: Iterable[str] = (),
    settings: Settings | None = None,
) -> list[JobRecord]:
    """Validate every spec, then queue one job per spec (all in one transaction), then dispatch them.

    ``overrides`` (``"training.epochs=5"``) apply to every spec before validation; ``tags`` are added
    to each spec's own ``tags``. Each job records its lineage as submitted (:func:`trainyard.lineage.at_submit`:
    versions, host, the spec's sha256, the data fingerprint, the spec file's git state). If any spec is
    invalid, a :class:`SpecError` lists every problem of every spec and nothing is stored. If the
    jobs are stored but the broker cannot be reached, :class:`BrokerError` says so (the jobs stay
    queued and are dispatched later by a worker's reconciler).
    """
    from trainyard import lineage
    from trainyard.db import spec_hash
    from trainyard.db.store import check_priority
    from trainyard.specs import data_fingerprint, load_spec, outside_roots, tag_problem, validate_spec

    check_priority(priority)  # before the specs are validated: that imports TensorFlow
    settings = settings or Settings.from_env()
    roots, label = submit_data_roots(settings)
    sources = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not sources:
        raise SpecError("no spec given: pass at least one spec file")
    overrides = list(overrides)
    extra_tags = [str(tag) if not isinstance(tag, str) else tag for tag in tags]
    tag_problems = [Problem(f"--tag {tag!r:.80}", problem) for tag in extra_tags if (problem := tag_problem(tag))]
    if tag_problems:
        raise SpecError(tag_problems)
    git = lineage.GitCache()
    submissions: list[Submission] = []
    failures: list[SpecError] = []
    for source in sources:
        try:
            spec = load_spec(source, overrides=overrides)
            problems = outside_roots(spec, roots, label)
            if problems:
                raise SpecError(problems)
            validate_spec(spec)
        except SpecError as exc:
            failures.append(exc if exc.source else SpecError(exc.problems, source=str(source)))
            continue
        document = spec.document()
        fingerprint = data_fingerprint(spec)
        job_tags = tuple(dict.fromkeys([*spec.tags, *extra_tags]))
        if len(job_tags) > defaults.MAX_TAGS:
            failures.append(
                SpecError(
                    [Problem("tags", f"at most {defaults.MAX_TAGS} tags per job, received {len(job_tags)}")],
                    source=str(source),
                )
            )
            continue
        submissions.append(
            Submission(
                spec=document,
                data_fingerprint=fingerprint,
                data_roots=tuple(str(root) for root in roots),
                lineage=lineage.at_submit(
                    spec_sha256=spec_hash(document),
                    data_fingerprint=fingerprint,
                    source=source if _is_file(source) else None,
                    git=git,
                ),
                tags=job_tags,
            )
        )
    if failures:
        raise failures[0] if len(failures) == 1 else _combined(failures)
    store = open_store(settings)
    jobs = store.add_jobs(submissions, priority=priority, max_attempts=settings.max_attempts)
    if dispatch:
        _dispatch(store, [job.id for job in jobs], settings)
    return jobs


def submit_data_roots(settings: Settings) -> tuple[tuple[Path, ...], str]:
    """The folders a job submitted now may read data from, and how to name them in a message."""
    if settings.data_roots:
        return settings.data_roots, "TRAINYARD_DATA_ROOTS"
    return (
        Path.cwd().resolve(),
    ), "the data roots (the working directory; submit from a folder that holds the data or set TRAINYARD_DATA_ROOTS)"


def jobs(
    state: JobState | str | None = None,
    limit: int | None = None,
    *,
    tag: str | None = None,
    settings: Settings | None = None,
) -> list[JobRecord]:
    """Jobs, newest first; only those in ``state`` and with ``tag`` if given, at most ``limit`` if given."""
    if state is not None:
        state = _state(state)
    return open_store(settings).list_jobs(state=state, limit=limit, tag=tag)


def show(job_id: int | str, *, settings: Settings | None = None) -> dict[str, Any]:
    """Everything about one job, as the JSON object ``trainyard show --json`` prints."""
    store = open_store(settings)
    job = store.get_job(parse_job_id(job_id))
    return job_document(job, store.epochs(job.id))


def cancel(job_ids: Iterable[int | str], *, settings: Settings | None = None) -> list[JobRecord]:
    """Cancel jobs: queued ones at once, running ones by request (their worker stops them).

    Every id is checked first: an unknown id or a job that already finished changes nothing.
    """
    store = open_store(settings)
    ids = _ids(job_ids)
    finished = [job for job in store.get_jobs(ids) if job.state.is_finished]
    if finished:
        raise InvalidTransition(
            "only queued or running jobs can be cancelled: "
            + ", ".join(f"job {job.id} is already {job.state}" for job in finished)
        )
    return [store.request_cancel(job_id) for job_id in ids]


def retry(job_ids: Iterable[int | str], dispatch: bool = True, *, settings: Settings | None = None) -> list[JobRecord]:
    """Queue failed or cancelled jobs again, from scratch, and dispatch them.

    Every id is checked first: an unknown id or a job that is not failed or cancelled changes nothing.
    """
    settings = settings or Settings.from_env()
    store = open_store(settings)
    ids = _ids(job_ids)
    refused = [job for job in store.get_jobs(ids) if not job.state.can_retry]
    if refused:
        raise InvalidTransition(
            "only failed or cancelled jobs can be retried: "
            + ", ".join(f"job {job.id} is {job.state}" for job in refused)
        )
    retried = [store.retry(job_id) for job_id in ids]
    if dispatch:
        _dispatch(store, ids, settings)
    return retried


# ---------------------------------------------------------------- JSON documents


def job_document(job: JobRecord, epochs: Sequence[EpochRecord]) -> dict[str, Any]:
    """Everything about one job: the object ``trainyard show --json`` prints."""
    from trainyard.specs.features import signature_from_document

    return {
        **job_json(job),
        "epochs": [
            {
                "epoch": e.epoch,
                "loss": e.loss,
                "val_loss": e.val_loss,
                "val_mse": e.val_mse,
                "val_metrics": e.val_metrics,
                "outputs": e.outputs,
                "recorded_at": isoformat(e.recorded_at),
            }
            for e in epochs
        ],
        "model_path": job.model_path,
        "model_inputs": signature_from_document(job.spec_document),
        "lease_owner": job.lease_owner,
        "lease_expires_at": isoformat(job.lease_expires_at),
        "dispatched_at": isoformat(job.dispatched_at),
        "spec_id": job.spec_id,
        "spec_hash": job.spec_hash,
        "spec": job.spec_document,
        "context": job.context,
        "lineage": job.lineage,
    }


# ---------------------------------------------------------------- internals


def _dispatch(store: Store, ids: list[int], settings: Settings) -> None:
    from trainyard.queue import dispatch

    try:
        dispatch(ids, settings, store=store)
    except BrokerError as exc:
        listed = ", ".join(map(str, ids))
        raise BrokerError(
            f"job(s) {listed} are queued in the store but could not be dispatched ({exc}); "
            "a worker's reconciler dispatches them once the broker is reachable"
        ) from exc


def _is_file(source: object) -> bool:
    """True when a spec source names a file (a source may also be YAML text or a mapping)."""
    if not isinstance(source, (str, os.PathLike)):
        return False
    try:
        return Path(source).is_file()
    except (OSError, ValueError):
        return False


def _ids(job_ids: Iterable[int | str]) -> list[int]:
    ids = [parse_job_id(value) for value in ([job_ids] if isinstance(job_ids, (int, str)) else job_ids)]
    return list(dict.fromkeys(ids))  # a job named twice is handled once


def _state(value: JobState | str) -> JobState:
    try:
        return JobState(value)
    except ValueError:
        choices = ", ".join(s.value for s in JobState)
        raise TrainyardError(f"unknown job state {value!r}; expected one of {choices}") from None


def _combined(failures: list[SpecError]) -> SpecError:
    problems = [
        Problem(f"{failure.source}: {problem.path}" if problem.path else str(failure.source), problem.message)
        for failure in failures
        for problem in failure.problems
    ]
    return SpecError(problems)
