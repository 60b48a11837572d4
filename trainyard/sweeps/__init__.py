"""Sweeps: hyperparameter searches whose trials are ordinary jobs, driven by whichever process runs.

A sweep file (:mod:`~trainyard.sweeps.definition`) names a base spec, the spec paths to vary, a
method (grid, random or TPE: Optuna's samplers), a budget and an objective (one headline metric of
the outputs, weighted), and optionally a pruner (ASHA or median: Optuna's). The contract, written
once here:

* The store is the sweep's whole state: a ``sweeps`` row, and jobs carrying ``sweep_id``, their
  trial number and parameters. Optuna keeps nothing; every decision rebuilds an in-memory study
  from the store (:mod:`~trainyard.sweeps.study`), so it is the same in any process, after any crash.
* New trials are queued by :func:`advance` (:mod:`~trainyard.sweeps.planner`), which the
  submitter, every worker's reconciler pass and a worker that just ended a trial all call.
  A trial number and a point of the search space are each unique per sweep in the store: no
  trial is queued twice, and resubmitting a sweep with more trials reruns nothing.
* A trial is pruned by its worker after an epoch (``prune_reason``), ending in the job state
  ``pruned``; the decision depends only on epochs stored before that epoch, so a trial resumed
  elsewhere gets the decisions it had.

No TensorFlow here: the reconciler, in a worker's parent process, calls :func:`advance`.
"""

from __future__ import annotations

from trainyard.sweeps.definition import SweepDefinition, SweepPlan, is_sweep_file, load_sweep
from trainyard.sweeps.planner import Progress, advance, store_sweep
from trainyard.sweeps.study import (
    decides_after,
    epoch_objective,
    metrics_objective,
    params_key,
    prune_reason,
    trial_objective,
)

__all__ = [
    "Progress",
    "SweepDefinition",
    "SweepPlan",
    "advance",
    "decides_after",
    "epoch_objective",
    "is_sweep_file",
    "load_sweep",
    "metrics_objective",
    "params_key",
    "prune_reason",
    "store_sweep",
    "trial_objective",
]
