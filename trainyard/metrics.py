"""The metrics trainyard reports per output: their names, which way is better, and each output's headline.

Every command, the dashboard, sweeps and comparisons name metrics the same way. An output reports a
set of metrics over the whole validation (and test) split after each epoch; its *headline* metric is
the one shown when there is room for one number, and what early stopping and sweeps minimise by
default. Pure data and a few functions: no NumPy, TensorFlow or database.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: The kind of an output when its spec gives no ``type``: a regression on numeric targets.
DEFAULT_OUTPUT_TYPE = "regression"


@dataclass(frozen=True)
class Metric:
    """A reported metric: its name in JSON and specs, its label on screen, and which way is better."""

    name: str
    label: str
    higher_is_better: bool = False

    def better(self, a: float, b: float) -> bool:
        """True when ``a`` is strictly better than ``b``."""
        return a > b if self.higher_is_better else a < b


#: Every metric an output may report, by name.
METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("mse", "MSE"),
        Metric("mae", "MAE"),
        Metric("poisson_deviance", "Poisson deviance"),
        Metric("log_loss", "log loss"),
        Metric("accuracy", "accuracy", higher_is_better=True),
        Metric("auc", "AUC", higher_is_better=True),
    )
}

#: The headline metric of each output type.
HEADLINE: dict[str, str] = {"regression": "mse", "binary": "log_loss", "category": "log_loss"}


def metric(name: str) -> Metric:
    """The metric called ``name``; an unknown name is taken as one to minimise, labelled as is."""
    return METRICS.get(name) or Metric(name, name)


def output_type(spec_document: Mapping[str, Any] | None, output: str) -> str:
    """The type of ``output`` in a stored spec document (``regression`` when not given or unknown)."""
    outputs = (spec_document or {}).get("outputs")
    entry = outputs.get(output) if isinstance(outputs, Mapping) else None
    kind = entry.get("type") if isinstance(entry, Mapping) else None
    return kind if isinstance(kind, str) and kind in HEADLINE else DEFAULT_OUTPUT_TYPE


def headline(kind: str) -> str:
    """The headline metric of an output of type ``kind`` (``mse`` for a regression)."""
    return HEADLINE.get(kind, HEADLINE[DEFAULT_OUTPUT_TYPE])


def headline_value(metrics: Mapping[str, float | None], kind: str = DEFAULT_OUTPUT_TYPE) -> float | None:
    """The headline metric's value in one output's ``{metric: value}``; falls back to the first metric given."""
    name = headline(kind)
    if name in metrics:
        return metrics[name]
    return next(iter(metrics.values()), None)


def best(values: Mapping[Any, float | None], name: str) -> Any | None:
    """The key whose finite value of metric ``name`` is best (ties: the first), or None."""
    chosen, chosen_value = None, None
    for key, value in values.items():
        if value is None or not math.isfinite(value):
            continue
        if chosen_value is None or metric(name).better(value, chosen_value):
            chosen, chosen_value = key, value
    return chosen
