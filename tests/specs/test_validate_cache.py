"""validate_spec remembers specs that built: a sweep over seeds is validated once, anything else is not reused."""

from __future__ import annotations

import pytest

from trainyard.errors import SpecError
from trainyard.specs import load_spec, validate_spec


def spec(name: str = "sweep", units: int = 5, seed: int = 1, epochs: int = 3, optimizer: object = "sgd"):
    return load_spec(
        {
            "name": name,
            "data": {"source": "builtin:diabetes"},
            "inputs": ["age", "sex", "bmi"],
            "layers": [{"type": "Dense", "units": units, "activation": "relu"}],
            "outputs": {"out": {"target": "target"}},
            "training": {"epochs": epochs, "seed": seed, "optimizer": optimizer},
        },
        check_data=False,
    )


def test_a_sweep_over_seeds_and_epochs_gets_each_specs_own_name() -> None:
    first = validate_spec(spec("run_a", seed=1, epochs=3))
    again = validate_spec(spec("run_b", seed=2, epochs=9))
    assert (first.name, again.name) == ("run_a", "run_b")
    assert again.layers == first.layers and again.total_params == first.total_params == (3 + 1) * 5 + (5 + 1) * 1


def test_a_different_layer_is_built_again() -> None:
    validate_spec(spec(units=5))
    assert validate_spec(spec(units=7)).total_params == (3 + 1) * 7 + (7 + 1) * 1


def test_a_bad_optimizer_argument_is_refused_after_the_same_model_validated() -> None:
    validate_spec(spec(optimizer="sgd"))
    with pytest.raises(SpecError, match="training.optimizer.learning_rat"):
        validate_spec(spec(optimizer={"name": "sgd", "learning_rat": 0.1}))
