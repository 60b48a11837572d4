"""What shows a sweep: the dashboard's sweeps panel (frame and JSON), ``plot --sweep``, ``sweep show``'s
ranking, and the reconciler pass that moves a sweep on."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console
from sweep_helpers import drain, queued, submit, sweep_file, train_next

from trainyard.cli import main
from trainyard.config import Settings
from trainyard.dashboard import snapshot
from trainyard.dashboard.render import render
from trainyard.db import JobState, Store, SweepState
from trainyard.queue import reconcile
from trainyard.scheduler.sweeps import sweep_document
from trainyard.sweeps import SweepDefinition, trial_objective

SWEEP = """\
name: views
method: random
trials: 4
parallel: 2
seed: 1
parameters:
  training.optimizer.learning_rate: {log_uniform: [0.0001, 0.1]}
  layers[0].units: {choice: [4, 8, 16, 32]}
"""


@pytest.fixture
def finished(home: Path, tmp_path: Path) -> tuple[Store, int]:
    """A finished random sweep of four trials in the default store: three succeeded, one pruned."""
    store = Store.open(Settings.from_env().db_url)
    sweep_id = submit(store, sweep_file(tmp_path, SWEEP))
    queued(store, sweep_id)
    train_next(store, epochs=2, state=JobState.PRUNED)
    drain(store, sweep_id)
    assert store.get_sweep(sweep_id).state is SweepState.FINISHED
    return store, sweep_id


def test_show_ranks_succeeded_trials_by_objective_then_pruned_ones(finished: tuple[Store, int]) -> None:
    store, sweep_id = finished
    document = sweep_document(store, store.get_sweep(sweep_id))
    states = [t["state"] for t in document["trials"]]
    assert states == ["succeeded"] * 3 + ["pruned"]
    objectives = [t["objective"] for t in document["trials"][:3]]
    assert objectives == sorted(objectives)
    definition = SweepDefinition.from_document(store.get_sweep(sweep_id).definition)
    epochs = store.sweep_epochs(sweep_id)
    best = document["best"]
    job = store.get_job(best["job"])
    assert best["objective"] == trial_objective(definition, job, epochs[job.id]) == objectives[0]
    assert best["params"] == job.params
    assert document["best_so_far"][-1] == best["objective"] and len(document["best_so_far"]) == 3


def test_the_dashboard_shows_each_sweep_with_its_best_and_counts(finished: tuple[Store, int]) -> None:
    store, sweep_id = finished
    snap = snapshot.read_snapshot(store)
    (panel,) = snap.sweeps
    assert (panel.name, panel.done, panel.total, panel.pruned, panel.running) == ("views", 4, 4, 1, 0)
    best = sweep_document(store, store.get_sweep(sweep_id))["best"]
    assert panel.best_job == best["job"] and panel.best_params == best["params"]
    assert panel.best == pytest.approx(best["objective"], rel=1e-9)  # the final model's metrics, as stored
    console = Console(file=io.StringIO(), width=160, record=True)
    console.print(render(snap, snap.taken_at, 160))
    frame = console.export_text()
    assert "#1 views" in frame and "4/4" in frame and "pruned 1" in frame
    assert "layers[0].units=" in frame
    data = json.loads(json.dumps(snap.to_json()))
    assert data["sweeps"][0]["best"]["job"] == best["job"] and data["queue"]["counts"]["pruned"] == 1


def test_plot_sweep_draws_a_picture_and_an_unknown_sweep_is_one_line(
    finished: tuple[Store, int], tmp_path: Path
) -> None:
    _, sweep_id = finished
    out = tmp_path / "sweep.png"
    result = CliRunner().invoke(main, ["plot", "--sweep", str(sweep_id), "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    missing = CliRunner().invoke(main, ["plot", "--sweep", "99"], catch_exceptions=False)
    assert missing.exit_code == 2 and "no sweep with id 99" in missing.stderr


def test_a_reconciler_pass_queues_a_sweeps_next_trials_and_sends_their_slots(home: Path, tmp_path: Path) -> None:
    settings = Settings.from_env()
    store = Store.open(settings.db_url)
    sweep_id = submit(store, sweep_file(tmp_path, SWEEP))  # stored, no trial queued yet
    assert store.sweep_jobs(sweep_id) == []
    report = reconcile(store, settings)
    assert len(report.trials) == 2 and sorted(report.redispatched) == sorted(report.trials)
    train_next(store)
    again = reconcile(store, settings)
    assert len(again.trials) == 1
    assert "sweep trials queued" in str(again)
