"""The training core's shortcuts (one cached iterator, compiled validation, steps per execution) train
the very same model as a plain ``model.compile(...); model.fit(x, y, ...)`` with the same seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from worker_fixtures import article_spec

from trainyard.specs import Split, build_model, fit_inputs, load_data, load_spec, make_optimizer
from trainyard.training import _fit_batches, tensors, train

SPECS = Path(__file__).resolve().parents[2] / "specs"


def _plain_fit_val_mse(spec, data) -> dict[str, float]:
    """What the article's script does: build, compile, fit on arrays with shuffling, default batches
    (the same preprocessing layers inside the model, string columns as tf.string tensors)."""
    import keras

    keras.utils.set_random_seed(spec.training.seed)
    model = build_model(spec, fit_inputs(spec.inputs, data.train.x))
    model.compile(
        optimizer=make_optimizer(spec),
        loss={name: out.loss for name, out in spec.outputs.items()},
        loss_weights={name: out.weight for name, out in spec.outputs.items()},
    )
    model.fit(
        tensors(data.train.x),
        data.train.y,
        epochs=spec.training.epochs,
        batch_size=spec.training.batch_size,
        validation_data=(tensors(data.valid.x), data.valid.y),
        verbose=0,
    )
    predictions = model.predict(tensors(data.valid.x), verbose=0)
    if not isinstance(predictions, dict):
        predictions = dict(zip(spec.outputs, predictions if isinstance(predictions, list) else [predictions]))
    return {
        name: float(np.mean((np.asarray(predictions[name], np.float64).ravel() - y.astype(np.float64).ravel()) ** 2))
        for name, y in data.valid.y.items()
    }


def _table_with_categories(folder: Path) -> Path:
    """Rows of my own making: a text and an integer category column, numbers with missing values."""
    import pandas as pd

    rng = np.random.default_rng(5)
    n = 300
    city = rng.choice(["Paris", "Lyon", "Nice", None], size=n, p=[0.4, 0.3, 0.2, 0.1])
    zone = rng.integers(1, 6, size=n)
    size = rng.normal(50, 10, size=n)
    size[rng.random(n) < 0.1] = np.nan
    price = np.nan_to_num(size, nan=50) * 0.1 + zone + (city == "Paris") * 2 + rng.normal(0, 0.1, size=n)
    path = folder / "cities.csv"
    pd.DataFrame({"city": city, "zone": zone, "size": size, "price": price}).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("filename", ["mlp.yaml", "multi_output.yaml", "categories"])
def test_train_ends_with_the_weights_of_plain_model_fit(filename: str, tmp_path: Path) -> None:
    if filename == "categories":
        spec = load_spec(
            {
                "name": "categories",
                "data": {"source": str(_table_with_categories(tmp_path))},
                "inputs": {
                    "size": {"columns": ["size"], "missing": "mean", "missing_indicator": True, "normalize": True},
                    "place": {"columns": ["city", "zone"], "type": "category"},
                    "city": {"columns": ["city"], "type": "category", "encoding": "embedding", "embedding_dim": 2},
                },
                "layers": [{"type": "Concatenate", "input": ["size", "place", "city"]}, {"type": "Dense", "units": 4}],
                "outputs": {"price": {"target": "price"}},
                "training": {"epochs": 4, "optimizer": {"name": "adam", "learning_rate": 0.01}},
            }
        )
    else:
        spec = article_spec(SPECS / filename, overrides=["training.epochs=4"])
    assert spec.training.shuffle  # the default, as in the article's fit
    data = load_data(spec)
    expected = _plain_fit_val_mse(spec, data)
    result = train(spec, model_path=tmp_path / "m.keras", data=data)
    assert set(result.val_mse) == set(expected)
    for name, value in expected.items():
        assert result.val_mse[name] == pytest.approx(value, rel=1e-5)
        assert result.epochs[-1].val_mse[name] == pytest.approx(value, rel=1e-5)


def _rows_fit_trains_on(split: Split, batch_size: int, epochs: int, seed: int) -> list[list[tuple[int, ...]]]:
    """The batches plain ``model.fit(x, y, batch_size=, shuffle=True)`` hands to ``train_step``, as row
    numbers per batch per epoch (column ``a`` of ``split.x`` holds the row number)."""
    import keras
    import tensorflow as tf

    seen: list[tuple[dict, dict]] = []

    class Recording(keras.Model):
        def train_step(self, data):  # type: ignore[no-untyped-def]
            x, y = data
            seen.append((_numpy(x), _numpy(y)))
            return {"loss": tf.constant(0.0)}

    keras.utils.set_random_seed(seed)
    inputs = {name: keras.Input((x.shape[1],), name=name) for name, x in split.x.items()}
    joined = keras.layers.Concatenate()(list(inputs.values()))
    model = Recording(inputs, {name: keras.layers.Dense(y.shape[1], name=name)(joined) for name, y in split.y.items()})
    model.compile(run_eagerly=True)
    model.fit(split.x, split.y, batch_size=batch_size, shuffle=True, epochs=epochs, verbose=0)
    steps = -(-len(split) // batch_size)
    assert len(seen) == steps * epochs
    return [[_rows(x, y) for x, y in seen[e * steps : (e + 1) * steps]] for e in range(epochs)]


def _numpy(tensors: dict) -> dict[str, np.ndarray]:
    return {name: np.asarray(value) for name, value in tensors.items()}


def _rows(x: dict[str, np.ndarray], y: dict[str, np.ndarray]) -> tuple[int, ...]:
    """The row numbers of one batch, after checking that every input and target came from those rows."""
    rows = x["a"][:, 0].astype(int)
    assert np.array_equal(x["b"], np.stack([rows * 2, rows * 3], axis=1).astype(np.float32))
    assert np.array_equal(y["out"][:, 0], (rows * 5).astype(np.float32))
    assert np.array_equal(y["other"][:, 0], (rows * 7).astype(np.float32))
    return tuple(int(r) for r in rows)


def test_fit_batches_are_the_batches_plain_fit_trains_on_every_epoch() -> None:
    """Tripwire for ``_fit_batches``, private Keras (its docstring says why): the core caches one pass
    and repeats it, so ``fit`` must draw exactly these batches, in this order, and the same every epoch."""
    n = 70  # batches of 16: four full ones and a last one of 6
    r = np.arange(n, dtype=np.float32)
    split = Split(
        x={"a": r.reshape(n, 1), "b": np.stack([r * 2, r * 3], axis=1)},
        y={"out": (r * 5).reshape(n, 1), "other": (r * 7).reshape(n, 1)},
    )
    import keras

    keras.utils.set_random_seed(11)
    ours = [_rows(_numpy(x), _numpy(y)) for x, y in _fit_batches(split, 16, shuffle=True)]
    fits = _rows_fit_trains_on(split, 16, epochs=2, seed=11)

    assert [len(b) for b in ours] == [16, 16, 16, 16, 6]
    assert sorted(r for b in ours for r in b) == list(range(n))  # every row once
    assert ours != sorted(ours)  # shuffled
    assert fits[0] == ours, "plain model.fit draws other batches than _fit_batches: see its docstring"
    assert fits[1] == ours, "plain model.fit no longer draws the same permutation every epoch"
