"""The California housing table as it is (a text column, missing values) trains, and the saved model
takes raw rows: in plain Keras, in safe mode, with unseen categories and NaN."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trainyard.specs import load_data, load_spec, model_inputs
from trainyard.training import tensors, train

NUMBERS = ["longitude", "latitude", "housing_median_age", "total_rooms", "total_bedrooms", "population", "households"]


@pytest.fixture(scope="module")
def trained(california_csv: Path, tmp_path_factory: pytest.TempPathFactory):
    spec = load_spec(
        {
            "name": "california",
            "data": {"source": str(california_csv), "split": {"valid": 0.2, "test": 0.1, "seed": 1}},
            "inputs": {
                "numbers": {"columns": NUMBERS, "missing": "median", "missing_indicator": True, "normalize": True},
                "income": {"columns": ["median_income"], "normalize": True},
                "ocean": {"columns": ["ocean_proximity"], "type": "category"},
            },
            "layers": [
                {"type": "Concatenate", "input": ["numbers", "income", "ocean"]},
                {"type": "Dense", "units": 16, "activation": "relu"},
            ],
            "outputs": {"value": {"target": "median_house_value"}},
            "training": {"epochs": 2, "batch_size": 128, "optimizer": {"name": "adam", "learning_rate": 0.05}},
        }
    )
    path = tmp_path_factory.mktemp("model") / "california.keras"
    return spec, train(spec, model_path=path)


def test_raw_california_trains_and_its_metrics_are_the_saved_models(trained) -> None:
    import keras

    spec, result = trained
    model = keras.models.load_model(result.model_path, safe_mode=True)
    data = load_data(spec)
    assert np.isnan(data.train.x["numbers"]).any()  # total_bedrooms reaches the model raw
    predictions = model.predict(tensors(data.valid.x), verbose=0)["value"].astype(np.float64)
    mse = float(np.mean((predictions - data.valid.y["value"].astype(np.float64)) ** 2))
    assert result.val_mse["value"] == pytest.approx(mse, rel=1e-5)
    impute = model.get_layer("numbers_impute")
    bedrooms = data.train.x["numbers"][:, NUMBERS.index("total_bedrooms")]
    filled = impute(np.full((1, len(NUMBERS)), np.nan, np.float32)).numpy()[0]
    assert filled[NUMBERS.index("total_bedrooms")] == pytest.approx(np.nanmedian(bedrooms))


def test_saved_model_predicts_raw_rows_with_unseen_categories_and_nan(trained, california_csv: Path) -> None:
    import keras

    spec, result = trained
    model = keras.models.load_model(result.model_path, safe_mode=True)
    rows = pd.read_csv(california_csv).head(6)
    rows.loc[0, "ocean_proximity"] = "ON THE MOON"  # never seen in training: the out-of-vocabulary bucket
    rows.loc[1, "ocean_proximity"] = np.nan
    rows.loc[2, ["total_bedrooms", "households"]] = np.nan
    x = model_inputs(spec.inputs, rows.drop(columns=["median_house_value"]))
    assert x["ocean"][:2, 0].tolist() == ["ON THE MOON", ""]
    # what a plain Keras user writes: string columns as tf.string, numbers as float32 with NaN
    import tensorflow as tf

    plain = model.predict({name: tf.constant(v) for name, v in x.items()}, verbose=0)["value"]
    assert np.isfinite(plain).all()
    unchanged = model.predict(tensors(model_inputs(spec.inputs, rows.iloc[3:])), verbose=0)["value"]
    assert np.allclose(plain[3:], unchanged)
    layer_types = {type(layer).__name__ for layer in model.layers}
    assert {"StringLookup", "Normalization", "Functional"} <= layer_types
