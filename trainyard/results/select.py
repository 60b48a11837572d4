"""Which jobs a results command works on: ids, a tag, a sweep."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from trainyard.db import JobRecord, Store
from trainyard.errors import TrainyardError


def select_jobs(
    store: Store, job_ids: Iterable[Any] = (), *, tag: str | None = None, sweep: Any = None
) -> list[JobRecord]:
    """The jobs named by id (in that order, an unknown id is :class:`JobNotFound`), then those with
    ``tag`` or of ``sweep`` not named already (oldest first); each with its spec document. Nothing
    selected (no id, no tag, no sweep) is a :class:`TrainyardError`; a tag or sweep without jobs too."""
    from trainyard.scheduler.operations import parse_job_id
    from trainyard.scheduler.sweeps import parse_sweep_id

    ids = list(dict.fromkeys(parse_job_id(value) for value in job_ids))
    if not ids and tag is None and sweep is None:
        raise TrainyardError("name the jobs: give job ids, --tag TAG or --sweep ID")
    jobs = store.jobs_with_specs(ids) if ids else []
    if sweep is not None:
        sweep = store.get_sweep(parse_sweep_id(sweep)).id  # SweepNotFound names it
    for selector, what in ((tag, "tag"), (sweep, "sweep")):
        if selector is None:
            continue
        found = store.jobs_with_specs(**{what: selector})
        if not found:
            raise TrainyardError(
                f"no job with {what} {selector!r}" if what == "tag" else f"sweep {selector} has no trial yet"
            )
        named = {job.id for job in jobs}
        jobs.extend(job for job in found if job.id not in named)
    return jobs
