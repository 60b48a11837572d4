"""``trainyard validate`` and ``trainyard train`` through click, in-process, on real specs and tiny trainings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from trainyard.cli import main

REPO = Path(__file__).resolve().parents[2]
SPECS = REPO / "specs"
MALFORMED = Path(__file__).resolve().parent / "malformed"


def run(*args: str) -> object:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_validate_prints_each_models_layers_and_parameter_counts() -> None:
    result = run("validate", str(SPECS / "mlp.yaml"), str(SPECS / "multi_output.yaml"))
    assert result.exit_code == 0, result.stderr
    assert "total params: 98 (trainable 98" in result.stdout
    assert "total params: 96 (trainable 96" in result.stdout
    for text in ("hidden_3", "Concatenate", "(None, 7)", "output_2", "Normalization"):
        assert text in result.stdout


def test_validate_prints_every_problem_of_every_file_and_exits_2() -> None:
    result = run(
        "validate", str(SPECS / "mlp.yaml"), str(MALFORMED / "several_problems.yaml"), str(MALFORMED / "cycle.yaml")
    )
    assert result.exit_code == 2
    assert "several_problems.yaml: 4 problems" in result.stderr
    for line in (
        "layers[0].units: expected a positive integer, received 0",
        "training.epochs: expected a positive integer, received -1",
        "outputs.output.loss: unknown loss 'l2'",
        "layers[0].input: cycle in the layer graph: a -> c -> b -> a",
    ):
        assert line in result.stderr
    assert "total params: 98" in result.stdout  # the valid file is still summarised


def test_train_json_reports_metrics_that_match_the_saved_model(tmp_path: Path) -> None:
    out = tmp_path / "model.keras"
    result = run("train", str(SPECS / "multi_output.yaml"), "--json", "--set", "training.epochs=2", "--out", str(out))
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["model_path"] == str(out) and out.exists()
    assert [e["epoch"] for e in doc["epochs"]] == [1, 2]
    assert set(doc["val_mse"]) == set(doc["test_mse"]) == {"output_1", "output_2"}
    assert set(doc["epochs"][0]) >= {"epoch", "loss", "val_mse"}
    assert doc["epochs"][-1]["val_mse"] == pytest.approx(doc["val_mse"], rel=1e-5)

    import keras

    from trainyard.specs import load_data, load_spec

    valid = load_data(load_spec(SPECS / "multi_output.yaml")).valid
    predictions = keras.models.load_model(out).predict(valid.x, verbose=0)
    for name, y in valid.y.items():
        assert doc["val_mse"][name] == pytest.approx(
            float(np.mean((predictions[name].astype(float) - y) ** 2)), rel=1e-5
        )


def test_train_prints_final_metrics_and_saves_under_the_artifact_root(home: Path) -> None:
    result = run("train", str(SPECS / "mlp.yaml"), "--set", "training.epochs=1")
    assert result.exit_code == 0, result.stderr
    header = next(line for line in result.stdout.splitlines() if "┃ metric" in line)
    assert "validation" in header and "test" in header
    assert any(line.split("│")[2].strip() == "MSE" for line in result.stdout.splitlines() if line.count("│") > 3)
    saved = list((home / "artifacts" / "local").glob("mlp-*.keras"))
    assert len(saved) == 1
    assert str(saved[0]) in result.stdout.replace("\n", "")
    assert "epoch 1/1" in result.stderr


def test_train_refuses_an_invalid_spec_with_exit_2(tmp_path: Path) -> None:
    result = run("train", str(MALFORMED / "zero_epochs.yaml"), "--out", str(tmp_path / "m.keras"))
    assert result.exit_code == 2
    assert "training.epochs: expected a positive integer, received 0" in result.stderr
    assert not (tmp_path / "m.keras").exists()
