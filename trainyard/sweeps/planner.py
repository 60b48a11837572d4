"""Queueing a sweep's trials: the one function every process calls to move sweeps forward.

:func:`advance` tops each running sweep up to ``parallel`` queued-or-running trials, asking the
sampler for each new one, and ends a sweep once every trial it asked for has ended (or its search
space has no new point). It is called by ``sweep submit`` (the first trials), by every reconciler
pass in every worker (so a sweep completes with only workers alive), and by a worker right after a
trial ends (so the next trial does not wait for a pass). Calls may overlap anywhere: a trial is
inserted with its number and its parameters' key, both unique per sweep in the store, so of two
processes asking for trial ``n`` at once one queues it and the other gets nothing
(:meth:`Store.add_trial` returns None) and stops for this call.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from trainyard import defaults
from trainyard.db.records import JobRecord, Submission, SweepRecord, SweepState
from trainyard.sweeps.definition import SweepDefinition, trial_document
from trainyard.sweeps.study import ask, params_key

if TYPE_CHECKING:
    from trainyard.db import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Progress:
    """What one :func:`advance` call did to one sweep."""

    sweep_id: int
    queued: tuple[int, ...] = ()  # ids of the trial jobs it queued
    finished: bool = False  # it moved the sweep to finished


def advance(store: Store, sweep_id: int | None = None, *, max_attempts: int = defaults.MAX_ATTEMPTS) -> list[Progress]:
    """Queue the next trials of one running sweep (or of every running sweep) and finish the sweeps
    that are done; returns what it did per sweep. The caller sends the new jobs' slots (or leaves
    them to the reconciler)."""
    if sweep_id is None:
        sweeps = store.list_sweeps(SweepState.RUNNING)
    else:
        sweep = store.get_sweep(sweep_id)
        sweeps = [sweep] if sweep.state is SweepState.RUNNING else []
    return [_advance_one(store, sweep, max_attempts) for sweep in sweeps]


def _advance_one(store: Store, sweep: SweepRecord, max_attempts: int) -> Progress:
    definition = SweepDefinition.from_document(sweep.definition)
    jobs = store.sweep_jobs(sweep.id)
    total = definition.total
    if definition.method == "grid":
        points = {params_key(point) for point in definition.grid()}
        counted = sum(1 for job in jobs if job.params is not None and params_key(job.params) in points)
    else:
        counted = len(jobs)
    active = sum(1 for job in jobs if job.state.is_active)
    queued: list[JobRecord] = []
    exhausted = False
    epochs = None
    while active + len(queued) < definition.parallel and counted + len(queued) < total:
        if epochs is None:
            epochs = store.sweep_epochs(sweep.id) if definition.method == "tpe" else {}
        number = 1 + max((job.trial for job in [*jobs, *queued] if job.trial is not None), default=-1)
        params = ask(definition, [*jobs, *queued], epochs, number)
        if params is None:
            exhausted = True
            break
        submission = Submission(
            spec=trial_document(sweep.spec, f"{sweep.name}-{number}", params),
            data_fingerprint=sweep.context.get("data_fingerprint"),
            data_roots=tuple(sweep.context.get("data_roots") or ()) or None,
            tags=tuple(sweep.context.get("tags") or ()),  # a sweep's tags label each of its trials
        )
        job = store.add_trial(sweep.id, number, params, params_key(params), submission, max_attempts=max_attempts)
        if job is None:
            break  # another process queued this trial first (or the sweep ended): it goes on from there
        log.info("sweep %s (%s): trial %s queued as job %s with %s", sweep.id, sweep.name, number, job.id, params)
        queued.append(job)
    finished = False
    if not queued and active == 0 and (exhausted or counted >= total):
        finished = store.set_sweep_state(sweep.id, SweepState.FINISHED)
        if finished:
            log.info("sweep %s (%s): finished, %s trial(s)", sweep.id, sweep.name, len(jobs))
    return Progress(sweep.id, tuple(job.id for job in queued), finished)


def store_sweep(store: Store, name: str, definition: SweepDefinition, spec: dict, context: dict) -> SweepRecord:
    """Store a checked sweep, or extend the stored sweep of that name (more trials, a larger grid,
    another ``parallel``): what it already ran is kept and never run again. A sweep of that name
    with another base spec, method or objective is refused (:class:`SpecError`)."""
    from trainyard.db import spec_hash
    from trainyard.errors import Problem, SpecError

    existing = store.find_sweep(name)
    if existing is not None:
        before = SweepDefinition.from_document(existing.definition)
        changed = [
            label
            for label, same in (
                ("base spec", spec_hash(existing.spec) == spec_hash(spec)),
                ("method", before.method == definition.method),
                ("objective", (before.metric, before.outputs) == (definition.metric, definition.outputs)),
                ("seed", before.seed == definition.seed),
            )
            if not same
        ]
        if changed:
            raise SpecError(
                Problem(
                    "name",
                    f"sweep {name!r} (id {existing.id}) already exists with another {', '.join(changed)}; "
                    "give this sweep another name, or keep those as they were to extend it",
                )
            )
    sweep, _created = store.save_sweep(name, definition.document(), spec, context)
    return sweep
