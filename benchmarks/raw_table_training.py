"""Target 8: the training core on California housing as it is, against a plain ``model.fit`` script
with the same Keras preprocessing layers.

The spec reads the raw table: eight numeric columns (``total_bedrooms`` with its missing values
filled in with the training split's median, all normalised) and ``ocean_proximity`` as a category
(one-hot, ``StringLookup``), an MLP of 32 and 16 units, target ``median_income`` (the
benchmarks' target on this table, in its own units, so the baseline needs no target scaling). The baseline is what a
Keras user writes for the same job: the vocabulary, median and moments taken from the training rows
with pandas/numpy, a functional model with ``keras.ops.where`` filling NaN in, ``Normalization``,
``StringLookup(output_mode="one_hot")``, the same Dense layers, ``compile`` + ``fit(batch_size=32,
validation_data=...)`` + ``evaluate``, strings passed as ``tf.string`` tensors. Both get the same rows
(trainyard's split), seed and epochs, alternating in one process; the ratio of the median samples/s
is reported with the relative difference of the final validation MSE (target <= 1e-5).

    python benchmarks/raw_table_training.py --repeats 3 --epochs 50
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import CALIFORNIA, describe

TARGET = 5.0
NUMBERS = [
    "longitude",
    "latitude",
    "housing_median_age",
    "total_rooms",
    "total_bedrooms",
    "population",
    "households",
]


def raw_document(epochs: int) -> dict:
    return {
        "name": "california_raw",
        "data": {"source": str(CALIFORNIA), "split": {"valid": 0.2, "test": 0.2, "seed": 42}},
        "inputs": {
            "numbers": {"columns": NUMBERS, "missing": "median", "normalize": True},
            "ocean": {"columns": ["ocean_proximity"], "type": "category"},
        },
        "layers": [
            {"type": "Concatenate", "input": ["numbers", "ocean"]},
            {"type": "Dense", "units": 32, "activation": "relu"},
            {"type": "Dense", "units": 16, "activation": "relu"},
        ],
        "outputs": {"income": {"target": "median_income"}},
        "training": {"optimizer": {"name": "adam", "learning_rate": 0.001}, "epochs": epochs, "batch_size": 32},
    }


def plain_model(train_x: dict, keras):
    """The Keras user's own model: preprocessing learned from the training rows, then the same MLP."""
    import pandas as pd

    numbers = train_x["numbers"].astype(np.float64)
    median = np.nanmedian(numbers, axis=0)
    filled = np.where(np.isnan(numbers), median, numbers)
    counts = pd.Series(train_x["ocean"][:, 0]).value_counts()
    vocabulary = sorted(counts.index, key=lambda v: (-counts[v], v))

    L = keras.layers
    numbers_in = keras.Input((len(NUMBERS),), name="numbers")
    ocean_in = keras.Input((1,), name="ocean", dtype="string")
    x = keras.ops.where(keras.ops.isnan(numbers_in), median.astype(np.float32), numbers_in)
    x = L.Normalization(mean=filled.mean(axis=0), variance=filled.var(axis=0))(x)
    ocean = L.StringLookup(vocabulary=vocabulary, output_mode="one_hot")(ocean_in)
    h = L.Concatenate()([x, ocean])
    h = L.Dense(32, activation="relu")(h)
    h = L.Dense(16, activation="relu")(h)
    return keras.Model({"numbers": numbers_in, "ocean": ocean_in}, {"income": L.Dense(1, name="income")(h)})


def run_plain(spec, data) -> tuple[float, float]:
    import keras
    import tensorflow as tf

    def x_of(split):
        return {"numbers": split.x["numbers"], "ocean": tf.constant(split.x["ocean"])}

    start = time.perf_counter()
    keras.utils.set_random_seed(spec.training.seed)
    model = plain_model(data.train.x, keras)
    model.compile(loss="mean_squared_error", optimizer=keras.optimizers.Adam(learning_rate=0.001))
    model.fit(
        x_of(data.train),
        data.train.y,
        epochs=spec.training.epochs,
        batch_size=32,
        validation_data=(x_of(data.valid), data.valid.y),
        verbose=0,
    )
    model.evaluate(x_of(data.test), data.test.y, verbose=0)
    elapsed = time.perf_counter() - start
    predicted = model.predict(x_of(data.valid), verbose=0)["income"].astype(np.float64).ravel()
    return elapsed, float(np.mean((predicted - data.valid.y["income"].astype(np.float64).ravel()) ** 2))


def run_trainyard(spec, data, workdir: Path) -> tuple[float, float]:
    from trainyard.training import train

    start = time.perf_counter()
    result = train(spec, model_path=workdir / "raw.keras", data=data)
    return time.perf_counter() - start, result.val_mse["income"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=50)
    args = parser.parse_args()
    if not CALIFORNIA.exists():
        print(f"{CALIFORNIA} not found", file=sys.stderr)
        return 2

    import tensorflow as tf

    from trainyard.specs import load_data, load_spec

    spec = load_spec(raw_document(args.epochs))
    data = load_data(spec)
    print(f"{describe()}, tensorflow {tf.__version__}")
    print(
        f"# California housing raw ({len(data.train)} training rows, total_bedrooms missing in"
        f" {int(np.isnan(data.train.x['numbers']).any(axis=1).sum())} of them), {args.epochs} epochs of batch 32,"
        f" median of {args.repeats} runs each, alternating"
    )
    plain_t, ours_t, diffs = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            t, plain_val = run_plain(spec, data)
            plain_t.append(t)
            t, ours_val = run_trainyard(spec, data, Path(tmp))
            ours_t.append(t)
            diffs.append(abs(ours_val - plain_val) / abs(plain_val))
            print(
                f"run: plain {plain_t[-1]:.2f} s, trainyard {ours_t[-1]:.2f} s, val MSE {plain_val:.6g} / {ours_val:.6g}"
            )
    samples = len(data.train) * args.epochs
    p, o = statistics.median(plain_t), statistics.median(ours_t)
    ratio = p / o
    met = ratio >= TARGET and max(diffs) <= 1e-5
    print(f"plain {samples / p:.0f} samples/s, trainyard {samples / o:.0f} samples/s")
    print(
        f"# ratio: {ratio:.2f} (target >= {TARGET}), largest relative val-MSE difference {max(diffs):.1e}"
        f" (target <= 1e-5) {'ok' if met else 'OVER TARGET'}"
    )
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
