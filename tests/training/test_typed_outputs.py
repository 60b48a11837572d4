"""Typed outputs on a table of our own making: a normalized regression target, a binary and a category
output, per-row weights; every reported metric equals scikit-learn's on the saved model's predictions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from sklearn import metrics as sk

from trainyard.cli import main
from trainyard.specs import load_data, load_spec
from trainyard.specs.targets import read_model_info
from trainyard.training import TrainingResult, train

SPEC = """
name: typed
data: {source: table.csv, weight: exposure, split: {valid: 0.25, test: 0.2, seed: 3}}
inputs:
  x: {columns: [a, b], normalize: true}
layers:
  - {type: Dense, units: 8, activation: relu}
outputs:
  value: {target: value, normalize: true}
  flag: {target: churned, type: binary}
  kind: {target: species, type: category}
training: {optimizer: {name: adam, learning_rate: 0.01}, epochs: 4, batch_size: 32}
"""


def make_table(folder: Path, rows: int = 400, seed: int = 1) -> Path:
    """Two numeric inputs; a value in the thousands, a yes/no flag and three species that depend on them."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=rows), rng.normal(size=rows)
    churned = np.where(rng.uniform(size=rows) < 1 / (1 + np.exp(-(2 * a - b))), "yes", "no")
    scores = np.stack([a, b, -a - b], axis=1) + rng.normal(scale=0.5, size=(rows, 3))
    species = np.array(["setosa", "versicolor", "virginica"])[np.argmax(scores, axis=1)]
    frame = pd.DataFrame(
        {
            "a": a,
            "b": b,
            "value": 5000 + 800 * a - 300 * b + rng.normal(scale=100, size=rows),
            "churned": churned,
            "species": species,
            "exposure": rng.uniform(0.1, 2.0, size=rows).round(3),
        }
    )
    path = folder / "table.csv"
    frame.to_csv(path, index=False)
    return path


def write_spec(folder: Path, text: str = SPEC) -> Path:
    path = folder / "spec.yaml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, TrainingResult, dict[str, np.ndarray]]:
    import keras

    folder = tmp_path_factory.mktemp("typed")
    make_table(folder)
    spec = load_spec(write_spec(folder))
    result = train(spec, model_path=folder / "model.keras")
    model = keras.saving.load_model(result.model_path, safe_mode=True)
    return spec, result, model


def _sklearn(kind: str, y: np.ndarray, p: np.ndarray, w: np.ndarray) -> dict[str, float]:
    p = p.astype(np.float64)
    if kind == "regression":
        return {
            "mse": sk.mean_squared_error(y, p, sample_weight=w),
            "mae": sk.mean_absolute_error(y, p, sample_weight=w),
        }
    if kind == "binary":
        return {
            "log_loss": sk.log_loss(y, p[:, 0], sample_weight=w, labels=[0, 1]),
            "accuracy": sk.accuracy_score(y, p[:, 0] > 0.5, sample_weight=w),
            "auc": sk.roc_auc_score(y, p[:, 0], sample_weight=w),
        }
    return {
        "log_loss": sk.log_loss(y, p, sample_weight=w, labels=list(range(p.shape[1]))),
        "accuracy": sk.accuracy_score(y, p.argmax(axis=1), sample_weight=w),
    }


@pytest.mark.filterwarnings("ignore:The y_prob values do not sum to one")  # float32 softmax rows
def test_every_metric_equals_sklearns_on_the_saved_models_predictions(trained: Any) -> None:
    spec, result, model = trained
    data = load_data(spec)
    for split, reported in ((data.valid, result.val_metrics), (data.test, result.test_metrics)):
        predictions = model.predict(split.x, verbose=0)
        assert split.weight is not None
        for name, out in spec.outputs.items():
            expected = _sklearn(out.type, split.y[name].ravel(), predictions[name], split.weight)
            # float32 predictions: model.predict's batches may round the last bit differently
            assert reported[name] == pytest.approx(expected, rel=1e-6), name
    # the last epoch's validation metrics are the saved model's
    for name, values in result.val_metrics.items():
        assert result.epochs[-1].val_metrics[name] == pytest.approx(values, rel=1e-6)
    assert result.val_mse == {"value": result.val_metrics["value"]["mse"]}
    assert set(result.epochs[-1].val_mse) == {"value"}  # classification outputs report no MSE


def test_weights_change_the_metrics(trained: Any) -> None:
    spec, result, model = trained
    valid = load_data(spec).valid
    p = model.predict(valid.x, verbose=0)["value"].astype(np.float64)
    unweighted = sk.mean_squared_error(valid.y["value"], p)
    assert result.val_metrics["value"]["mse"] != pytest.approx(unweighted, rel=1e-6)


def test_a_normalized_target_trains_standardized_and_the_model_predicts_in_its_units(trained: Any) -> None:
    spec, result, model = trained
    data = load_data(spec)
    assert "value_denormalization" in [layer.name for layer in model.layers]
    predictions = model.predict(data.valid.x, verbose=0)["value"]
    assert 3000 < float(np.mean(predictions)) < 7000  # in the target's units, not standardized
    # the training loss is on the standardized target: far below the target's variance
    variance = float(np.var(data.train.y["value"]))
    assert result.epochs[-1].outputs["value"]["loss"] < 2
    assert result.val_metrics["value"]["mse"] < variance


def test_labels_and_the_positive_class_are_kept_in_the_model_file(trained: Any) -> None:
    _, result, _ = trained
    info = read_model_info(result.model_path)
    assert info is not None
    assert info.outputs["flag"].labels == ("no", "yes") and info.outputs["flag"].positive == "yes"
    assert info.outputs["kind"].labels == ("setosa", "versicolor", "virginica")
    assert info.outputs["value"].type == "regression"
    assert result.labels == {"flag": ["no", "yes"], "kind": ["setosa", "versicolor", "virginica"]}


def test_binary_labels_follow_the_documented_positive_class(tmp_path: Path) -> None:
    from trainyard.specs.targets import binary_labels

    assert binary_labels(pd.Series([0, 1, 1])) == [0, 1]
    assert binary_labels(pd.Series([True, False])) == [False, True]
    assert binary_labels(pd.Series(["False", "True", "True"])) == ["False", "True"]
    assert binary_labels(pd.Series(["yes", "no"])) == ["no", "yes"]
    assert "three" not in str(binary_labels(pd.Series(["a", "b", "c"])))
    assert "declare `type: category`" in str(binary_labels(pd.Series(["a", "b", "c"])))


def _validate(folder: Path, spec: str) -> Any:
    return CliRunner().invoke(main, ["validate", str(write_spec(folder, spec))], catch_exceptions=False)


@pytest.mark.parametrize(
    ("change", "line"),
    [
        (
            (
                "value: {target: value, normalize: true}",
                "value: {target: value, loss: sparse_categorical_crossentropy}",
            ),
            "outputs.value.loss: sparse_categorical_crossentropy needs a classification head, but this output is a"
            " regression (a linear head): declare `type: category`",
        ),
        (
            ("value: {target: value, normalize: true}", "value: {target: value, loss: binary_crossentropy}"),
            "outputs.value.loss: binary_crossentropy needs a classification head",
        ),
        (
            ("flag: {target: churned, type: binary}", "flag: {target: churned, type: binary, loss: mse}"),
            "outputs.flag.loss: a binary output trains with binary_crossentropy, received 'mse'",
        ),
        (
            ("flag: {target: churned, type: binary}", "flag: {target: species, type: binary}"),
            "outputs.flag.target: a binary target has two labels, column has 3 ('setosa', 'versicolor', 'virginica')",
        ),
        (
            ("kind: {target: species, type: category}", "kind: {target: one, type: category}"),
            "outputs.kind.target: a category target needs at least two labels, the training split has one ('only')",
        ),
        (
            ("kind: {target: species, type: category}", "kind: {target: species, type: categorical}"),
            "outputs.kind.type: unknown output type 'categorical' (did you mean 'category'?)",
        ),
        (
            ("flag: {target: churned, type: binary}", "flag: {target: churned, type: binary, activation: relu}"),
            "outputs.flag.activation: a binary output ends in sigmoid",
        ),
        (
            ("flag: {target: churned, type: binary}", "flag: {target: churned, type: binary, normalize: true}"),
            "outputs.flag.normalize: only a regression target can be normalized; this output is binary",
        ),
        (
            ("weight: exposure", "weight: negative"),
            "data.weight: column 'negative' has 1 negative weight(s) such as -1",
        ),
        (("weight: exposure", "weight: holes"), "data.weight: column 'holes' has 1 missing value(s) (line 3)"),
        (("weight: exposure", "weight: exposur"), "data.weight: unknown column 'exposur' (did you mean 'exposure'?)"),
    ],
)
def test_a_head_loss_or_target_that_do_not_fit_is_one_line_with_its_path_and_exit_2(
    tmp_path: Path, change: tuple[str, str], line: str
) -> None:
    table = make_table(tmp_path, rows=60)
    frame = pd.read_csv(table)
    frame["one"] = "only"
    frame["negative"] = np.where(np.arange(len(frame)) == 5, -1.0, 1.0)
    frame["holes"] = np.where(np.arange(len(frame)) == 1, np.nan, 1.0)
    frame.to_csv(table, index=False)
    result = _validate(tmp_path, SPEC.replace(*change))
    assert result.exit_code == 2
    assert line in result.stderr
    assert "Traceback" not in result.stderr


def test_a_label_only_the_validation_split_has_is_refused_before_training(tmp_path: Path) -> None:
    from trainyard.specs.data import _split_rows

    table = make_table(tmp_path, rows=60)
    frame = pd.read_csv(table)
    _, valid_rows, _ = _split_rows(60, 0.25, 0.2, 3)  # the split of SPEC
    frame.loc[valid_rows[0], "species"] = "unseen"
    frame.to_csv(table, index=False)
    result = _validate(tmp_path, SPEC)
    assert result.exit_code == 2
    assert (
        "outputs.kind.target: label 'unseen' of the validation split is not in the training split (1 row(s))"
        in result.stderr
    )
