"""What a user does with sweeps: submit (or extend), list, show, cancel. The CLI and ``trainyard run`` call these.

A sweep's trials are ordinary jobs: once stored, the sweep goes on by itself in the workers (their
reconciler queues its next trials), so ``submit_sweep`` only checks the file, stores the sweep,
queues its first trials and sends their slots.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from trainyard.config import Settings
from trainyard.db import JobRecord, JobState, Store, SweepRecord, SweepState
from trainyard.db.records import isoformat
from trainyard.errors import BrokerError, InvalidTransition, SweepNotFound
from trainyard.scheduler.operations import _dispatch, open_store, parse_id, submit_data_roots


def parse_sweep_id(value: object) -> int:
    """``"3"`` or ``3`` -> 3; anything else is a :class:`SweepNotFound` naming what was given."""
    found = parse_id(value)
    if found is None:
        raise SweepNotFound(value)
    return found


def submit_sweep(
    path: str | os.PathLike[str], *, dispatch: bool = True, settings: Settings | None = None, build: bool = True
) -> tuple[SweepRecord, list[JobRecord]]:
    """Check a sweep file and its base spec, store the sweep (or extend the one of that name) and queue
    its first trials; returns the sweep and the trial jobs queued now. Raises :class:`SpecError` with
    every problem (nothing stored)."""
    from trainyard.sweeps import advance, load_sweep, store_sweep

    settings = settings or Settings.from_env()
    roots, label = submit_data_roots(settings)
    plan = load_sweep(path, roots, label, build=build)
    store = open_store(settings)
    sweep = store_sweep(store, plan.name, plan.definition, plan.spec, plan.context)
    queued = [
        job for progress in advance(store, sweep.id, max_attempts=settings.max_attempts) for job in progress.queued
    ]
    if dispatch and queued:
        try:
            _dispatch(store, queued, settings)
        except BrokerError:
            pass  # the trials are queued in the store; a worker's reconciler sends their slots
    return store.get_sweep(sweep.id), store.get_jobs(queued)


def list_sweeps(*, settings: Settings | None = None) -> list[dict[str, Any]]:
    """Every sweep, newest first, as ``sweep list --json`` prints them (without their trials)."""
    store = open_store(settings)
    return [_summary(store, sweep) for sweep in store.list_sweeps()]


def show_sweep(sweep_id: int | str, *, settings: Settings | None = None) -> dict[str, Any]:
    """Everything about one sweep, its trials ranked by objective: the object ``sweep show --json`` prints."""
    store = open_store(settings)
    return sweep_document(store, store.get_sweep(parse_sweep_id(sweep_id)))


def cancel_sweep(sweep_id: int | str, *, settings: Settings | None = None) -> dict[str, Any]:
    """Cancel a running sweep: no new trial is asked for, its queued trials are cancelled at once and
    its running ones stopped by their workers. A sweep that already ended raises :class:`InvalidTransition`."""
    store = open_store(settings)
    sweep = store.get_sweep(parse_sweep_id(sweep_id))
    if not store.set_sweep_state(sweep.id, SweepState.CANCELLED):
        raise InvalidTransition(f"sweep {sweep.id} is already {store.get_sweep(sweep.id).state}")
    for job in store.sweep_jobs(sweep.id):
        if job.state.is_active:
            try:
                store.request_cancel(job.id)
            except InvalidTransition:
                pass  # it ended meanwhile
    return sweep_document(store, store.get_sweep(sweep.id))


def sweep_document(store: Store, sweep: SweepRecord, *, exact: bool = True) -> dict[str, Any]:
    """A sweep as JSON: ``id``, ``name``, ``state``, ``method``, ``trials`` (each ``job``, ``params``,
    ``state``, ``epochs``, ``objective``; ranked, best first) and ``best`` (``job``, ``params``,
    ``objective``; null until a trial succeeded), with its definition and counts.

    Objectives come from the stored epochs; ``exact=False`` (a live view refreshed twice a second)
    takes them from each job's latest metrics instead, without reading the epochs.
    """
    from trainyard.sweeps import SweepDefinition, metrics_objective, trial_objective

    definition = SweepDefinition.from_document(sweep.definition)
    jobs = store.sweep_jobs(sweep.id)
    epochs = store.sweep_epochs(sweep.id) if exact else {}

    def objective(job: JobRecord) -> float | None:
        if exact:
            return trial_objective(definition, job, epochs.get(job.id, []))
        return metrics_objective(definition, job.val_metrics) if job.val_metrics else None

    trials = [_trial(job, objective(job)) for job in jobs]
    trials.sort(key=lambda t: _rank(t, definition.direction))
    best = next((t for t in trials if t["state"] == JobState.SUCCEEDED.value and t["objective"] is not None), None)
    return {
        **_summary(store, sweep, jobs, definition),
        "trials": trials,
        "best": {"job": best["job"], "params": best["params"], "objective": best["objective"]} if best else None,
        "best_so_far": best_so_far(definition, {t["job"]: t["objective"] for t in trials}, jobs),
    }


def best_so_far(definition: Any, objectives: dict[int, float | None], jobs: Sequence[JobRecord]) -> list[float | None]:
    """The best objective after each succeeded trial, in the order they finished (the sparkline)."""
    done = sorted(
        (j for j in jobs if j.state is JobState.SUCCEEDED and j.finished_at is not None), key=lambda j: j.finished_at
    )
    best: float | None = None
    found: list[float | None] = []
    for job in done:
        value = objectives.get(job.id)
        if value is not None and (
            best is None or (value > best if definition.direction == "maximize" else value < best)
        ):
            best = value
        found.append(best)
    return found


def _trial(job: JobRecord, objective: float | None) -> dict[str, Any]:
    return {
        "job": job.id,
        "trial": job.trial,
        "params": dict(job.params or {}),
        "state": job.state.value,
        "epochs": job.epochs_done,
        "objective": objective,
        "error": job.error if job.state is not JobState.SUCCEEDED else None,
    }


def _rank(trial: dict[str, Any], direction: str) -> tuple[int, float, int]:
    # succeeded trials first by objective, then pruned ones by objective, then the rest by trial number
    value = trial["objective"]
    group = {JobState.SUCCEEDED.value: 0, JobState.PRUNED.value: 1}.get(trial["state"], 2)
    if value is None:
        group = 2
    sign = -1.0 if direction == "maximize" else 1.0
    return group, sign * value if value is not None else 0.0, trial["trial"] or 0


def _summary(
    store: Store, sweep: SweepRecord, jobs: Sequence[JobRecord] | None = None, definition: Any = None
) -> dict[str, Any]:
    from trainyard.sweeps import SweepDefinition

    definition = definition or SweepDefinition.from_document(sweep.definition)
    jobs = store.sweep_jobs(sweep.id) if jobs is None else jobs
    counts = {state.value: 0 for state in JobState}
    for job in jobs:
        counts[job.state.value] += 1
    return {
        "id": sweep.id,
        "name": sweep.name,
        "state": sweep.state.value,
        "method": definition.method,
        "total": definition.total,
        "done": sum(1 for job in jobs if job.state.is_finished),
        "counts": counts,
        "parallel": definition.parallel,
        "seed": definition.seed,
        "objective": {
            "metric": definition.metric,
            "outputs": dict(definition.outputs),
            "direction": definition.direction,
        },
        "parameters": {p.path: p.document() for p in definition.parameters},
        "prune": definition.prune,
        "spec_file": definition.spec_file,
        "created_at": isoformat(sweep.created_at),
        "finished_at": isoformat(sweep.finished_at),
    }
