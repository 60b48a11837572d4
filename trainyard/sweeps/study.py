"""Optuna behind the store: each decision rebuilds an in-memory study from the store's trials.

Nothing of Optuna's is persisted; the store's jobs and epochs are the sweep's state, so any process
on any host asks and prunes alike, and a decision is a function of what is stored:

* **asking** (:func:`ask`): the sampler (random, TPE) is made afresh for trial number ``n``
  with a seed derived from the sweep's seed and ``n``; the study holds every stored trial (finished
  ones with their objective, pruned ones with their per-epoch objective, queued and running ones
  with their parameters only). The same stored trials and seed give the same parameters. A grid
  takes the first point not tried yet in the order Optuna's grid sampler shuffles it into.
* **pruning** (:func:`prune_reason`): trial T's decision after epoch ``e`` sees T's epochs up to
  ``e`` and, of the other trials, only the epochs stored *before* T's epoch ``e`` was. A trial
  resumed on another worker therefore gets the decisions it had, and a multi-output model is pruned on one weighted objective per epoch (Optuna's pruners
  take one intermediate value per step, optuna#3450).
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from trainyard.db.records import EpochRecord, JobRecord, JobState
from trainyard.sweeps.definition import Parameter, SweepDefinition

if TYPE_CHECKING:
    import optuna

#: How many times a sampler is asked again (with another seed) for a point not tried yet.
ASK_ATTEMPTS = 25


def params_key(params: Mapping[str, Any]) -> str:
    """The identity of a point of the search space: the hash of its parameters, rounded as stored."""
    canonical = json.dumps(dict(params), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def epoch_objective(definition: SweepDefinition, epoch: EpochRecord) -> float | None:
    """The weighted objective of one stored epoch (:func:`metrics_objective` of its validation metrics)."""
    return metrics_objective(definition, epoch.val_metrics)


def metrics_objective(definition: SweepDefinition, values: Mapping[str, Mapping[str, float | None]]) -> float | None:
    """Sum of weight x metric over the objective's outputs, from ``{output: {metric: value}}``; None
    when a weighted output lacks the metric or it is not finite."""
    total = 0.0
    for output, weight in definition.outputs.items():
        if not weight:
            continue
        value = values.get(output, {}).get(definition.metric)
        if value is None or not math.isfinite(value):
            return None
        total += weight * float(value)
    return total


def trial_objective(definition: SweepDefinition, job: JobRecord, epochs: Sequence[EpochRecord]) -> float | None:
    """A trial's objective, from its stored epochs: that of the epoch its model holds (``best_epoch``
    when training restored an earlier one, else its last epoch). None before any epoch."""
    if not epochs:
        return None
    chosen = epochs[-1]
    if job.best_epoch is not None:
        chosen = next((e for e in epochs if e.epoch == job.best_epoch), chosen)
    return epoch_objective(definition, chosen)


# ---------------------------------------------------------------- asking


def ask(
    definition: SweepDefinition,
    jobs: Sequence[JobRecord],
    epochs: Mapping[int, Sequence[EpochRecord]],
    number: int,
) -> dict[str, Any] | None:
    """The parameters of trial ``number``: a point no stored trial has, or None when the sampler
    finds none in :data:`ASK_ATTEMPTS` tries (a small discrete space used up)."""
    taken = {params_key(job.params) for job in jobs if job.params is not None}
    if definition.method == "grid":
        return next((point for point in grid_order(definition) if params_key(point) not in taken), None)
    optuna = _optuna()
    distributions = _distributions(definition)
    frozen = list(_frozen_trials(definition, jobs, epochs, distributions))
    for attempt in range(ASK_ATTEMPTS):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna 4 calls multivariate TPE experimental
            study = optuna.create_study(direction=definition.direction, sampler=_sampler(definition, number, attempt))
            study.add_trials(frozen)
            trial = study.ask(distributions)
        params = {p.path: p.round(trial.params[p.path]) for p in definition.parameters}
        if params_key(params) not in taken:
            return params
    return None


def grid_order(definition: SweepDefinition) -> list[dict[str, Any]]:
    """Every point of a grid sweep in the order Optuna's ``GridSampler`` visits a fresh grid with the
    sweep's seed (its shuffled product of the values). A grid sweep takes the first point no trial
    has: rebuilding Optuna's study would not do, since its grid sampler gives trial ``k`` of a study
    the ``k``-th point whatever the earlier trials held, and a grid grown by a resubmit would repeat
    points."""
    optuna = _optuna()
    sampler = optuna.samplers.GridSampler(_grid_space(definition), seed=definition.seed)
    names = sorted(p.path for p in definition.parameters)
    return [dict(zip(names, point)) for point in sampler._all_grids]


def _sampler(definition: SweepDefinition, number: int, attempt: int) -> optuna.samplers.BaseSampler:
    optuna = _optuna()
    seed = _seed(definition.seed, number, attempt)
    if definition.method == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # Written out, so that every supported Optuna (4.x defaults to neither) gives Optuna 5's TPE:
    # multivariate (one joint model of the parameters: learning rate, width and batch size interact,
    # and Optuna reports it beating the independent TPE on single objectives), and constant liar
    # (with ``parallel`` above 1 the trials still running are in the rebuilt study as RUNNING; the
    # liar keeps the next ask away from them instead of asking the same region again). The 10
    # random start-up trials stay Optuna's: 5 did a little better on the benchmark's one search
    # space (benchmarks/README.md, 10c), but one space is no ground to change a default for every
    # objective, and a rugged one needs its random start more than a smooth one. Seeding each ask
    # afresh from (seed, trial, attempt) costs TPE nothing: it models the stored trials, not its
    # past draws, and the same stored trials then always give the same next trial.
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)


def _seed(seed: int, number: int, attempt: int) -> int:
    digest = hashlib.sha256(f"{seed}:{number}:{attempt}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def _grid_space(definition: SweepDefinition) -> dict[str, list[Any]]:
    return {p.path: list(p.grid_values() or []) for p in definition.parameters}


def _distributions(definition: SweepDefinition) -> dict[str, optuna.distributions.BaseDistribution]:
    from optuna import distributions as d

    found: dict[str, d.BaseDistribution] = {}
    for p in definition.parameters:
        found[p.path] = _distribution(p, definition.method == "grid")
    return found


def _distribution(p: Parameter, grid: bool) -> optuna.distributions.BaseDistribution:
    from optuna import distributions as d

    if p.kind == "choice" or grid:
        return d.CategoricalDistribution(list(p.grid_values() or []))
    assert p.low is not None and p.high is not None
    if p.kind == "int":
        return d.IntDistribution(int(p.low), int(p.high), log=p.log, step=int(p.step or 1))
    if p.step is not None:
        high = p.low + math.floor((p.high - p.low) / p.step + 1e-9) * p.step
        return d.FloatDistribution(p.low, high, step=p.step)
    return d.FloatDistribution(p.low, p.high, log=p.log)


def _frozen_trials(
    definition: SweepDefinition,
    jobs: Sequence[JobRecord],
    epochs: Mapping[int, Sequence[EpochRecord]],
    distributions: Mapping[str, Any],
) -> Iterable[optuna.trial.FrozenTrial]:
    """The stored trials as Optuna's, those whose parameters fit the current search space."""
    optuna = _optuna()
    from optuna.trial import TrialState

    names = sorted(distributions)
    for job in jobs:
        params = job.params or {}
        if set(params) != set(distributions):
            continue
        stored = epochs.get(job.id, ())
        intermediate = _intermediate(definition, stored)
        value = trial_objective(definition, job, stored) if job.state is JobState.SUCCEEDED else None
        if job.state is JobState.SUCCEEDED and value is not None:
            state = TrialState.COMPLETE
        elif job.state is JobState.PRUNED:
            state = TrialState.PRUNED
        elif job.state.is_finished:
            state = TrialState.FAIL
        else:
            state = TrialState.RUNNING
        try:
            yield optuna.trial.create_trial(
                state=state,
                params=dict(params),
                distributions={name: distributions[name] for name in names},
                value=value if state is TrialState.COMPLETE else None,
                intermediate_values=intermediate if state is not TrialState.FAIL else {},
            )
        except ValueError:  # a value outside today's search space (the sweep was changed since)
            continue


def _intermediate(definition: SweepDefinition, epochs: Iterable[EpochRecord]) -> dict[int, float]:
    found: dict[int, float] = {}
    for epoch in epochs:
        value = epoch_objective(definition, epoch)
        found[epoch.epoch] = float("nan") if value is None else value
    return found


# ---------------------------------------------------------------- pruning


def prune_reason(
    definition: SweepDefinition,
    job_id: int,
    epoch: int,
    jobs: Sequence[JobRecord],
    epochs: Mapping[int, Sequence[EpochRecord]],
) -> str | None:
    """Why the pruner stops trial ``job_id`` after ``epoch`` (a sentence), or None to train on.

    Sees the trial's own stored epochs up to ``epoch`` and, of the other trials, the epochs stored
    before that one (a smaller row id: the store numbers a sweep's epochs in commit order), a trial
    counting as complete once its last epoch is among them. Nothing else: the decision is the
    same whenever, and wherever, it is taken again.
    """
    prune = definition.prune
    if not decides_after(prune, epoch):
        return None  # what Optuna's pruner would say here (see decides_after)
    assert prune is not None
    mine = [e for e in epochs.get(job_id, ()) if e.epoch <= epoch]
    if not mine or mine[-1].epoch != epoch or mine[-1].id is None:
        return None  # this epoch is not stored (the lease was lost): nothing to decide on
    cutoff = mine[-1].id
    optuna = _optuna()
    from optuna.trial import TrialState

    pruner = _pruner(prune)
    study = optuna.create_study(direction=definition.direction)
    others = []
    for job in jobs:
        if job.id == job_id:
            continue
        seen = [e for e in epochs.get(job.id, ()) if e.id is not None and e.id < cutoff]
        values = _intermediate(definition, seen)
        if not values:
            continue
        last = seen[-1]
        complete = last.epoch >= job.epochs_total and not math.isnan(values[last.epoch])
        others.append(
            optuna.trial.create_trial(
                state=TrialState.COMPLETE if complete else TrialState.RUNNING,
                value=values[last.epoch] if complete else None,
                intermediate_values=values,
                system_attrs=_rung_attrs(values, _rung_steps(prune, last.epoch)),
            )
        )
    values = _intermediate(definition, mine)
    passed = [step for step in _rung_steps(prune, epoch) if step < epoch]
    me = optuna.trial.create_trial(
        state=TrialState.RUNNING, intermediate_values=values, system_attrs=_rung_attrs(values, passed)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study.add_trials([*others, me])
        frozen = study.get_trials(deepcopy=False)[-1]
        pruned = pruner.prune(study, frozen)
    if not pruned:
        return None
    value = values[epoch]
    shown = "nan" if math.isnan(value) else f"{value:.6g}"
    return f"pruned by {prune['method']} after epoch {epoch} (objective {shown})"


def decides_after(prune: Mapping[str, Any] | None, epoch: int) -> bool:
    """False when the sweep's pruner cannot stop a trial after ``epoch``, whatever is stored: ASHA
    between its rungs (``min_epochs x reduction_factor^k``), the median pruner before its warm-up
    epochs. :func:`prune_reason` then says None, so a worker asks it only at the other epochs:
    each decision reads every stored epoch of the sweep, which grows with the sweep."""
    if not prune:
        return False
    if prune["method"] == "asha":
        return epoch in _rung_steps(prune, epoch)
    return epoch >= int(prune["warmup_epochs"])


def _pruner(prune: Mapping[str, Any]) -> optuna.pruners.BasePruner:
    optuna = _optuna()
    if prune["method"] == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=int(prune["min_epochs"]),
            reduction_factor=int(prune["reduction_factor"]),
            min_early_stopping_rate=0,
            bootstrap_count=0,
        )
    return optuna.pruners.MedianPruner(
        n_startup_trials=int(prune["min_trials"]), n_warmup_steps=int(prune["warmup_epochs"]), interval_steps=1
    )


def _rung_steps(prune: Mapping[str, Any], up_to: int) -> list[int]:
    """The epochs at which ASHA decides (``min_epochs x reduction_factor^k``), up to ``up_to``."""
    if prune["method"] != "asha":
        return []
    steps, step = [], int(prune["min_epochs"])
    while step <= up_to:
        steps.append(step)
        step *= int(prune["reduction_factor"])
    return steps


def _rung_attrs(values: Mapping[int, float], steps: Iterable[int]) -> dict[str, float]:
    # ASHA's own bookkeeping (optuna.pruners._successive_halving): the value a trial had at each rung it reached.
    return {f"completed_rung_{rung}": values[step] for rung, step in enumerate(steps) if step in values}


def _optuna() -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna
