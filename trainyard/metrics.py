"""The metrics trainyard reports per output: their names, which way is better, and each output's headline.

Every command, the dashboard, sweeps and comparisons name metrics the same way. An output reports a
set of metrics over the whole validation (and test) split after each epoch; its *headline* metric is
the one shown when there is room for one number, and what early stopping and sweeps minimise by
default. :func:`compute` computes them over a split, each equal to scikit-learn's function of the
same name (``mean_squared_error``, ``mean_absolute_error``, ``mean_poisson_deviance``, ``log_loss``,
``accuracy_score``, ``roc_auc_score``) with the rows' weights as ``sample_weight``. Importing this
module stays cheap: NumPy is imported by :func:`compute`, TensorFlow and the database never.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

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


def names(kind: str, loss: str | None = None) -> tuple[str, ...]:
    """The metrics an output of type ``kind`` trained with ``loss`` reports, headline first."""
    if kind == "binary":
        return ("log_loss", "accuracy", "auc")
    if kind == "category":
        return ("log_loss", "accuracy")
    return ("mse", "mae", "poisson_deviance") if loss == "poisson" else ("mse", "mae")


def compute(
    kind: str, y: np.ndarray, p: np.ndarray, weight: np.ndarray | None = None, loss: str | None = None
) -> dict[str, float | None]:
    """Every metric of :func:`names` over one split, in float64; None where it is not defined (weights
    summing to 0, an AUC with one class present, a Poisson deviance of a non-positive prediction).

    ``y`` is the target as the split holds it (label indices for a classification), ``p`` the model's
    predictions: values for a regression, the positive class's probability for a binary output,
    one probability per label for a category. ``weight`` weighs each row (None: all 1).
    """
    import numpy as np

    n = len(y)
    w = np.ones(n) if weight is None else np.asarray(weight, dtype=np.float64).reshape(n)
    total = float(w.sum())
    if n == 0 or not total > 0:
        return dict.fromkeys(names(kind, loss))
    y = np.asarray(y, dtype=np.float64).reshape(n, -1)
    p = np.asarray(p, dtype=np.float64).reshape(n, -1)
    out: dict[str, float | None] = {}
    if kind == "regression":
        # scikit-learn averages each column over the weighted rows, then the columns
        out["mse"] = float(np.mean(np.average((y - p) ** 2, axis=0, weights=w)))
        out["mae"] = float(np.mean(np.average(np.abs(y - p), axis=0, weights=w)))
        if loss == "poisson":
            out["poisson_deviance"] = _poisson_deviance(y, p, w)
        return out
    eps = np.finfo(np.float64).eps  # as scikit-learn clips float64 probabilities
    if kind == "binary":
        positive = np.clip(p[:, 0], eps, 1 - eps)
        truth = y[:, 0] > 0.5
        per_row = -np.where(truth, np.log(positive), np.log(1 - positive))
        out["log_loss"] = float(np.average(per_row, weights=w))
        out["accuracy"] = float(np.average((p[:, 0] > 0.5) == truth, weights=w))
        out["auc"] = _auc(truth, p[:, 0], w)
        return out
    labels = y[:, 0].astype(np.int64)
    clipped = np.clip(p, eps, 1 - eps)
    out["log_loss"] = float(np.average(-np.log(clipped[np.arange(n), labels]), weights=w))
    out["accuracy"] = float(np.average(np.argmax(p, axis=1) == labels, weights=w))
    return out


def _poisson_deviance(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> float | None:
    import numpy as np

    if (p <= 0).any() or (y < 0).any():
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        term = np.where(y > 0, y * np.log(y / p), 0.0)
    deviance = 2 * (term - y + p)
    return float(np.mean(np.average(deviance, axis=0, weights=w)))


def _auc(truth: np.ndarray, score: np.ndarray, w: np.ndarray) -> float | None:
    """The weighted area under the ROC curve: the chance a positive row scores above a negative one
    (ties count half), as scikit-learn's trapezoids give it."""
    import numpy as np

    positive, negative = float(w[truth].sum()), float(w[~truth].sum())
    if not positive > 0 or not negative > 0:
        return None
    distinct, group = np.unique(score, return_inverse=True)
    pos = np.bincount(group, weights=np.where(truth, w, 0.0), minlength=len(distinct))
    neg = np.bincount(group, weights=np.where(truth, 0.0, w), minlength=len(distinct))
    below = np.cumsum(neg) - neg  # negative weight scoring strictly lower than each group
    return float(np.sum(pos * (below + 0.5 * neg)) / (positive * negative))


def finite(value: Any) -> float | None:
    """``value`` as a float when it is a finite number, else None (a stored NaN, a string, nothing)."""
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
