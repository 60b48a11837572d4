"""Early stopping on a real (tiny) training: where it stops, the weights it keeps, and a resume that
stops where an uninterrupted run does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from trainyard.cli import main
from trainyard.specs import load_data, load_spec
from trainyard.training import BaseSink, EpochMetrics, TrainingResult, train

SPEC = """
name: stopping
data: {source: noise.csv, split: {valid: 0.3, test: 0.2, seed: 5}}
inputs:
  x: {columns: [a, b, c, d], normalize: true}
layers:
  - {type: Dense, units: 64, activation: relu}
  - {type: Dense, units: 64, activation: relu}
outputs:
  value: {target: value, normalize: true}
training:
  optimizer: {name: adam, learning_rate: 0.03}
  epochs: 60
  batch_size: 16
  early_stopping: {output: value, patience: 3, restore_best: true}
"""


def make_noise(folder: Path) -> Path:
    """A target unrelated to the inputs: the validation MSE gets worse as soon as the model overfits."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(150, 5)), columns=["a", "b", "c", "d", "value"])
    frame.to_csv(folder / "noise.csv", index=False)
    (folder / "spec.yaml").write_text(SPEC)
    return folder / "spec.yaml"


class CrashAfter(BaseSink):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch(self, metrics: EpochMetrics) -> None:
        if metrics.epoch == self.epoch:
            raise KeyboardInterrupt("simulated crash")


@pytest.fixture(scope="module")
def stopped(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, TrainingResult, Path]:
    folder = tmp_path_factory.mktemp("stopping")
    spec = load_spec(make_noise(folder))
    return spec, train(spec, model_path=folder / "whole.keras"), folder


def test_training_stops_patience_epochs_after_the_best_and_keeps_the_best_weights(stopped: Any) -> None:
    import keras

    spec, result, _ = stopped
    assert result.stopped_epoch is not None and result.stopped_epoch < 60
    assert result.stop_reason == f"stopped early at epoch {result.stopped_epoch}, best epoch {result.best_epoch}"
    assert result.stopped_epoch == result.best_epoch + 3
    assert [m.epoch for m in result.epochs] == list(range(1, result.stopped_epoch + 1))
    curve = [m.val_metrics["value"]["mse"] for m in result.epochs]
    assert result.best_epoch == 1 + int(np.argmin(curve))
    # the saved model is the best epoch's, and the final metrics are that model's
    best = result.epochs[result.best_epoch - 1].val_metrics["value"]
    assert result.val_metrics["value"] == pytest.approx(best, rel=1e-6)
    valid = load_data(spec).valid
    predictions = keras.saving.load_model(result.model_path, safe_mode=True).predict(valid.x, verbose=0)
    mse = float(np.mean((predictions["value"].astype(np.float64) - valid.y["value"]) ** 2))
    assert result.val_metrics["value"]["mse"] == pytest.approx(mse, rel=1e-6)
    assert result.val_metrics["value"]["mse"] < curve[-1]


def test_a_resumed_run_stops_where_an_uninterrupted_one_does(stopped: Any) -> None:
    spec, whole, folder = stopped
    backups = folder / "backup"
    crash = whole.best_epoch + 1  # after the best epoch: the resumed run must remember it
    with pytest.raises(KeyboardInterrupt):
        train(spec, CrashAfter(crash), model_path=folder / "resumed.keras", backup_dir=backups, backup_interval=0)
    resumed = train(spec, model_path=folder / "resumed.keras", backup_dir=backups, backup_interval=0)
    assert resumed.initial_epoch == crash - 1
    assert (resumed.stopped_epoch, resumed.best_epoch) == (whole.stopped_epoch, whole.best_epoch)
    assert resumed.val_metrics["value"] == pytest.approx(whole.val_metrics["value"], rel=1e-6)
    assert [m.epoch for m in resumed.epochs] == list(range(crash, whole.stopped_epoch + 1))


def test_without_restore_best_the_last_epochs_weights_are_saved(tmp_path: Path) -> None:
    spec = load_spec(make_noise(tmp_path), overrides=["training.early_stopping.restore_best=false"])
    result = train(spec, model_path=tmp_path / "last.keras")
    assert result.stopped_epoch is not None
    assert result.val_metrics["value"] == pytest.approx(result.epochs[-1].val_metrics["value"], rel=1e-6)


@pytest.mark.parametrize(
    ("override", "line"),
    [
        (
            "training.early_stopping={output: valu, patience: 3}",
            "training.early_stopping.output: unknown output 'valu' (did you mean 'value'?)",
        ),
        (
            "training.early_stopping={output: value, patience: 0}",
            "training.early_stopping.patience: expected a positive",
        ),
        ("training.early_stopping={output: value, wait: 3}", "training.early_stopping.wait: unknown key"),
    ],
)
def test_early_stopping_on_an_output_that_does_not_exist_is_exit_2(tmp_path: Path, override: str, line: str) -> None:
    path = make_noise(tmp_path)
    result = CliRunner().invoke(main, ["validate", str(path), "--set", override], catch_exceptions=False)
    assert result.exit_code == 2
    assert line in result.stderr


def test_with_several_outputs_early_stopping_names_its_output(tmp_path: Path) -> None:
    path = make_noise(tmp_path)
    path.write_text(
        SPEC.replace("  value: {target: value, normalize: true}\n", "  value: {target: value}\n  other: {target: a}\n")
        .replace("{output: value, patience: 3, restore_best: true}", "{patience: 3}")
        .replace("columns: [a, b, c, d]", "columns: [b, c, d]")
    )
    result = CliRunner().invoke(main, ["validate", str(path)], catch_exceptions=False)
    assert result.exit_code == 2
    assert "training.early_stopping.output: required when there are several outputs (value, other)" in result.stderr
    single = load_spec(make_noise(tmp_path), overrides=["training.early_stopping={patience: 3}"])
    assert single.training.early_stopping.output == "value"
