"""The training core's shortcuts (one cached iterator, compiled validation, steps per execution) train
the very same model as a plain ``model.compile(...); model.fit(x, y, ...)`` with the same seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from trainyard.specs import build_model, load_data, load_spec, make_optimizer
from trainyard.training import train

SPECS = Path(__file__).resolve().parents[2] / "specs"


def _plain_fit_val_mse(spec, data) -> dict[str, float]:
    """What the article's script does: build, compile, fit on arrays with shuffling, default batches."""
    import keras

    keras.utils.set_random_seed(spec.training.seed)
    model = build_model(spec)
    model.compile(
        optimizer=make_optimizer(spec),
        loss={name: out.loss for name, out in spec.outputs.items()},
        loss_weights={name: out.weight for name, out in spec.outputs.items()},
    )
    model.fit(
        data.train.x,
        data.train.y,
        epochs=spec.training.epochs,
        batch_size=spec.training.batch_size,
        validation_data=(data.valid.x, data.valid.y),
        verbose=0,
    )
    predictions = model.predict(data.valid.x, verbose=0)
    if not isinstance(predictions, dict):
        predictions = dict(zip(spec.outputs, predictions if isinstance(predictions, list) else [predictions]))
    return {
        name: float(np.mean((np.asarray(predictions[name], np.float64).ravel() - y.astype(np.float64).ravel()) ** 2))
        for name, y in data.valid.y.items()
    }


@pytest.mark.parametrize("filename", ["mlp.yaml", "multi_output.yaml"])
def test_train_ends_with_the_weights_of_plain_model_fit(filename: str, tmp_path: Path) -> None:
    spec = load_spec(SPECS / filename, overrides=["training.epochs=4"])
    assert spec.training.shuffle  # the default, as in the article's fit
    data = load_data(spec)
    expected = _plain_fit_val_mse(spec, data)
    result = train(spec, model_path=tmp_path / "m.keras", data=data)
    assert set(result.val_mse) == set(expected)
    for name, value in expected.items():
        assert result.val_mse[name] == pytest.approx(value, rel=1e-5)
        assert result.epochs[-1].val_mse[name] == pytest.approx(value, rel=1e-5)
