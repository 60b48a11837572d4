"""The four spec files in specs/ build exactly the article's Keras models (layers, shapes, parameters).

The article's code is transcribed from ../shared/seed/ and built here directly with Keras, for the
input sizes of ``builtin:diabetes`` (10 features; wide = 4 and deep = 8 columns).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from worker_fixtures import article_spec

from trainyard.specs import build_model, load_data, load_spec, validate_spec

SPECS = Path(__file__).resolve().parents[2] / "specs"


def article_mlp(n: int):
    from tensorflow import keras

    # The article writes `keras.layers.Dense(input_shape=X_train.shape[1:])` as first layer, which
    # Keras rejects (Dense needs `units`); what it describes is the input layer.
    return keras.models.Sequential(
        [
            keras.layers.Input(shape=(n,)),
            keras.layers.Dense(5, activation="relu"),
            keras.layers.Dense(4, activation="relu"),
            keras.layers.Dense(3, activation="relu"),
            keras.layers.Dense(1),
        ]
    )


def article_wide_deep(n: int):
    from tensorflow import keras

    input_layer = keras.layers.Input(shape=(n,))
    hidden_layer_1 = keras.layers.Dense(5, activation="relu")(input_layer)
    hidden_layer_2 = keras.layers.Dense(4, activation="relu")(hidden_layer_1)
    hidden_layer_3 = keras.layers.Dense(3, activation="relu")(hidden_layer_2)
    concat = keras.layers.Concatenate()([input_layer, hidden_layer_3])
    output_layer = keras.layers.Dense(1)(concat)
    return keras.Model(inputs=[input_layer], outputs=[output_layer])


def article_multi_input(input_wide_size: int, input_deep_size: int):
    from tensorflow import keras

    input_wide = keras.layers.Input(shape=[input_wide_size], name="wide")
    input_deep = keras.layers.Input(shape=[input_deep_size], name="deep")
    hidden_layer_1 = keras.layers.Dense(5, activation="relu")(input_deep)
    hidden_layer_2 = keras.layers.Dense(4, activation="relu")(hidden_layer_1)
    hidden_layer_3 = keras.layers.Dense(3, activation="relu")(hidden_layer_2)
    concat = keras.layers.Concatenate()([input_wide, hidden_layer_3])
    output_layer = keras.layers.Dense(1)(concat)
    return keras.Model(inputs=[input_wide, input_deep], outputs=[output_layer])


def article_multi_output(input_wide_size: int, input_deep_size: int):
    from tensorflow import keras

    input_wide = keras.layers.Input(shape=[input_wide_size], name="wide")
    input_deep = keras.layers.Input(shape=[input_deep_size], name="deep")
    hidden_layer_1 = keras.layers.Dense(5, activation="relu")(input_deep)
    hidden_layer_2 = keras.layers.Dense(4, activation="relu")(hidden_layer_1)
    hidden_layer_3 = keras.layers.Dense(3, activation="relu")(hidden_layer_2)
    concat = keras.layers.Concatenate()([input_wide, hidden_layer_3])
    output_1 = keras.layers.Dense(1, name="output_1")(concat)
    output_2 = keras.layers.Dense(1, name="output_2")(hidden_layer_3)
    return keras.Model(inputs=[input_wide, input_deep], outputs=[output_1, output_2])


def structure(model) -> list[tuple]:
    """Each layer as (class, output shape, parameters, activation, input shapes), order-independent."""
    rows = []
    for layer in model.layers:
        if type(layer).__name__ == "InputLayer":
            continue  # a Sequential model does not list its input layer; input shapes are compared below
        inputs = []
        for node in layer._inbound_nodes:
            inputs += [tuple(t.shape) for t in node.input_tensors]
        activation = getattr(layer, "activation", None)
        rows.append(
            (
                type(layer).__name__,
                tuple(layer.output.shape),
                layer.count_params(),
                getattr(activation, "__name__", None),
                tuple(inputs),
            )
        )
    rows.append(("inputs", tuple(sorted(tuple(t.shape) for t in model.inputs))))
    return sorted(rows, key=repr)


CASES = {
    "mlp.yaml": lambda: article_mlp(10),
    "wide_deep.yaml": lambda: article_wide_deep(10),
    "multi_input.yaml": lambda: article_multi_input(4, 8),
    "multi_output.yaml": lambda: article_multi_output(4, 8),
}


@pytest.mark.parametrize("filename", sorted(CASES))
def test_spec_builds_the_articles_model(filename: str) -> None:
    spec = article_spec(SPECS / filename)
    ours = build_model(spec)
    theirs = CASES[filename]()
    assert ours.count_params() == theirs.count_params()
    assert structure(ours) == structure(theirs)
    summary = validate_spec(spec)
    assert summary.total_params == theirs.count_params() == summary.trainable_params


def test_parameter_counts_are_the_hand_computed_ones() -> None:
    # 10*5+5 + 5*4+4 + 4*3+3 + 3*1+1 = 98, the wide & deep head sees 10 + 3 inputs: 14 instead of 4
    expected = {"mlp.yaml": 98, "wide_deep.yaml": 108, "multi_input.yaml": 92, "multi_output.yaml": 96}
    for filename, count in expected.items():
        assert validate_spec(load_spec(SPECS / filename)).total_params == count


def test_multi_output_spec_keeps_the_articles_loss_weights() -> None:
    spec = load_spec(SPECS / "multi_output.yaml")
    assert {name: out.weight for name, out in spec.outputs.items()} == {"output_1": 0.9, "output_2": 0.1}
    assert {out.loss for out in spec.outputs.values()} == {"mean_squared_error"}
    assert spec.training.epochs == 100
    assert article_spec(SPECS / "multi_output.yaml").training.optimizer.name == "sgd"


@pytest.mark.parametrize("filename", ["iris.yaml", "breast_cancer.yaml"])
def test_the_classification_examples_validate_on_their_builtin_tables(filename: str) -> None:
    spec = load_spec(SPECS / "examples" / filename)
    summary = validate_spec(spec)
    [(name, out)] = spec.outputs.items()
    assert summary.outputs[name] == (3 if out.type == "category" else 1)


def test_the_claims_example_takes_its_table_as_it_is_text_categories_and_missing_values() -> None:
    spec = load_spec(SPECS / "examples" / "claims.yaml")
    assert spec.inputs["area"].is_category and spec.data.weight == "exposure"
    data = load_data(spec)
    assert data.train.x["area"].dtype.kind in "OUS"  # raw text columns, encoded inside the model
    summary = validate_spec(spec)
    assert summary.outputs["frequency"] == 1
