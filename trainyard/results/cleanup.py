"""Disk use of jobs, and deleting finished jobs with their files.

A job's files are its folder under the artifact root (``jobs/<id>``: the model, its card, backups
while it trains). Deleting is rows first, files second: :meth:`Store.delete_jobs` removes only the
jobs that are finished at that moment (one transaction), and only those jobs' folders are removed,
so a job a worker still trains, or one retried meanwhile, keeps everything.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from trainyard.config import Settings
from trainyard.db import JobRecord, JobState, Store, SweepState, utcnow
from trainyard.errors import TrainyardError


def disk_usage(settings: Settings, job_id: int) -> int:
    """Bytes the files of one job take (0 when it has none); symlinks are not followed."""
    return tree_size(settings.job_dir(job_id))


def tree_size(path: Path) -> int:
    """Bytes of the regular files below ``path`` (0 when it does not exist)."""
    total = 0
    stack = [path]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(Path(entry.path))
                        elif entry.is_file(follow_symlinks=False):
                            total += entry.stat(follow_symlinks=False).st_size
                    except OSError:
                        continue
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError:
            continue
    return total


def remove_job_files(settings: Settings, job_id: int) -> None:
    """Remove a job's folder (nothing happens when there is none)."""
    shutil.rmtree(settings.job_dir(job_id), ignore_errors=True)


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_age(text: str) -> timedelta:
    """``30d``, ``12h``, ``90m``, ``45s``, ``2w`` -> a timedelta; anything else is a :class:`TrainyardError`."""
    found = _DURATION.match(text or "")
    if not found:
        raise TrainyardError(
            f"--older-than: expected a number and a unit (s, m, h, d, w) such as 30d, received {text!r}"
        )
    value = float(found.group(1)) * _UNIT_SECONDS[found.group(2)]
    if value > 100 * 365 * 86400:
        raise TrainyardError(f"--older-than: at most 100 years, received {text!r}")
    return timedelta(seconds=value)


@dataclass(frozen=True)
class Doomed:
    """A finished job chosen for deletion, and the bytes its files take."""

    job: JobRecord
    disk_bytes: int


def choose(
    store: Store,
    settings: Settings,
    job_ids: Iterable[Any] = (),
    *,
    state: str | None = None,
    older_than: str | None = None,
    sweep: Any = None,
    now: datetime | None = None,
) -> list[Doomed]:
    """The jobs ``delete`` would remove: those named (each must be finished: a queued or running one
    is a :class:`TrainyardError` naming it, and nothing is chosen), narrowed or found by ``state``
    (a finished state) and ``older_than`` (ended longer ago than that: ``30d``), and every trial of
    ``sweep`` (a sweep id; it must not be running).

    A trial of a running sweep is never chosen: its result is what the sweep's sampler learns from
    and what keeps its point from being trained again. Named, it is refused; found by ``state`` or
    ``older_than``, it is left out."""
    from trainyard.scheduler.operations import parse_job_id
    from trainyard.scheduler.sweeps import parse_sweep_id

    ids = list(dict.fromkeys(parse_job_id(value) for value in job_ids))
    if not ids and state is None and older_than is None and sweep is None:
        raise TrainyardError("name the jobs: give job ids, --state STATE and/or --older-than AGE, or --sweep ID")
    if sweep is not None and (state is not None or older_than is not None):
        raise TrainyardError("--sweep deletes a whole sweep: --state and --older-than cannot narrow it")
    running = {record.id for record in store.list_sweeps(SweepState.RUNNING)}
    trials: list[JobRecord] = []
    if sweep is not None:
        record = store.get_sweep(parse_sweep_id(sweep))  # SweepNotFound names it
        if record.state is SweepState.RUNNING:
            raise TrainyardError(
                f"sweep {record.id} ({record.name}) is running: cancel it first"
                f" (trainyard sweep cancel {record.id}); nothing deleted"
            )
        trials = [job for job in store.sweep_jobs(record.id) if job.id not in ids]
    states = None
    if state is not None:
        try:
            chosen_state = JobState(state)
        except ValueError:
            raise TrainyardError(f"--state: unknown job state {state!r}") from None
        if not chosen_state.is_finished:
            finished = ", ".join(s.value for s in JobState.finished_states())
            raise TrainyardError(f"--state {state}: only finished jobs can be deleted ({finished})")
        states = [chosen_state]
    cutoff = (now or utcnow()) - parse_age(older_than) if older_than is not None else None
    if ids or sweep is not None:
        named = store.get_jobs(ids) if ids else []
        active = [job for job in [*named, *trials] if not job.state.is_finished]
        if active:
            raise TrainyardError(
                "only finished jobs can be deleted: "
                + ", ".join(f"job {job.id} is {job.state}" for job in active)
                + " (cancel it first: trainyard cancel ID); nothing deleted"
            )
        guarded = [job for job in named if job.sweep_id in running]
        if guarded:
            raise TrainyardError(
                "a trial of a running sweep is kept while the sweep runs: "
                + ", ".join(f"job {job.id} is trial {job.trial} of sweep {job.sweep_id}" for job in guarded)
                + " (delete the whole sweep when it ends: trainyard delete --sweep ID); nothing deleted"
            )
        jobs = [
            job
            for job in named
            if (states is None or job.state in states)
            and (cutoff is None or (job.finished_at or job.updated_at) < cutoff)
        ] + trials
    else:
        jobs = [job for job in store.finished_jobs(states, finished_before=cutoff) if job.sweep_id not in running]
    return [Doomed(job, disk_usage(settings, job.id)) for job in jobs]


def delete(store: Store, settings: Settings, doomed: Sequence[Doomed]) -> tuple[list[Doomed], list[int]]:
    """Delete the chosen jobs: their rows (only those still finished now), then their folders.
    Returns ``(deleted, kept)``: ``kept`` are the ids that were no longer finished (retried meanwhile)."""
    deleted_ids = {job.id for job in store.delete_jobs([d.job.id for d in doomed])}
    for item in doomed:
        if item.job.id in deleted_ids:
            remove_job_files(settings, item.job.id)
    return [d for d in doomed if d.job.id in deleted_ids], [d.job.id for d in doomed if d.job.id not in deleted_ids]
