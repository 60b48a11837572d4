"""The model builder: parameter counts for any MLP, which layer types a spec may use, merge layers."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trainyard.errors import SpecError
from trainyard.specs import allowed_layer_types, load_spec, validate_spec

COLUMNS = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]


def mlp(n_inputs: int, widths: list[int], targets: int = 1) -> dict:
    return {
        "name": "mlp",
        "data": {"source": "builtin:diabetes"},
        "inputs": COLUMNS[:n_inputs],
        "layers": [{"type": "Dense", "units": w, "activation": "relu"} for w in widths],
        "outputs": {"out": {"target": ["target", "s6"][:targets]}},
        "training": {"epochs": 1},
    }


@settings(max_examples=15, deadline=None)
@given(
    n_inputs=st.integers(1, 10),
    widths=st.lists(st.integers(1, 64), min_size=0, max_size=4),
    targets=st.integers(1, 2),
)
def test_mlp_parameter_count_is_the_dense_formula(n_inputs: int, widths: list[int], targets: int) -> None:
    spec = load_spec(mlp(n_inputs, widths, targets), check_data=False)
    sizes = [n_inputs, *widths, targets]
    expected = sum((a + 1) * b for a, b in zip(sizes, sizes[1:]))
    summary = validate_spec(spec)
    assert summary.total_params == summary.trainable_params == expected
    assert summary.outputs == {"out": targets}
    assert summary.layers[-1].output_shape == (None, targets)


def test_allowed_layer_types_keep_the_common_ones_and_refuse_code_and_wrappers() -> None:
    allowed = set(allowed_layer_types())
    assert {
        "Dense",
        "Dropout",
        "BatchNormalization",
        "Concatenate",
        "Add",
        "Normalization",
        "LayerNormalization",
    } <= allowed
    assert not allowed & {
        "Lambda",
        "TFSMLayer",
        "TimeDistributed",
        "Bidirectional",
        "RNN",
        "Layer",
        "InputLayer",
        "Wrapper",
    }


def test_merge_and_regularisation_layers_build_with_their_shapes() -> None:
    spec = load_spec(
        {
            "name": "merge",
            "data": {"source": "builtin:diabetes"},
            "inputs": {"a": {"columns": COLUMNS[:4], "normalize": True}, "b": {"columns": COLUMNS[4:]}},
            "layers": [
                {"name": "ha", "type": "Dense", "units": 8, "activation": "relu", "input": "a"},
                {
                    "name": "hb",
                    "type": "Dense",
                    "units": 8,
                    "activation": "relu",
                    "input": "b",
                    "kernel_regularizer": "l2",
                },
                {"name": "sum", "type": "Add", "input": ["ha", "hb"]},
                {"name": "bn", "type": "BatchNormalization"},
                {"name": "drop", "type": "Dropout", "rate": 0.2},
            ],
            "outputs": {"y": {"target": "target"}},
            "training": {"epochs": 1},
        }
    )
    summary = validate_spec(spec)
    shapes = {layer.name: layer.output_shape for layer in summary.layers}
    assert shapes["sum"] == (None, 8) and shapes["drop"] == (None, 8)
    # what feeds each layer (the `input` column of `trainyard validate`): a normalised input feeds
    # only its Normalization layer, which feeds every layer that names the input
    assert {layer.name: layer.inputs for layer in summary.layers} == {
        "a": (),
        "b": (),
        "a_normalization": ("a",),
        "ha": ("a_normalization",),
        "hb": ("b",),
        "sum": ("ha", "hb"),
        "bn": ("sum",),
        "drop": ("bn",),
        "y": ("drop",),
    }
    # BatchNormalization: 4 * 8 weights, of which moving mean and variance (16) are not trainable
    assert summary.non_trainable_params == 16
    assert [layer.type for layer in summary.layers].count("Normalization") == 1


def test_every_layer_problem_is_reported_together() -> None:
    doc = mlp(4, [5, 4])
    doc["layers"][0]["type"] = "Lambda"
    doc["layers"][1]["unit"] = 3
    with pytest.raises(SpecError) as caught:
        validate_spec(load_spec(doc))
    assert [p.path for p in caught.value.problems] == ["layers[0].type", "layers[1].unit"]
