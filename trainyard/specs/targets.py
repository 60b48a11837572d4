"""What a classification target's values mean: its labels, its positive class, and where they are kept.

A ``binary`` target holds 0/1, true/false or two labels; the positive class (predicted as the
probability of the model's one sigmoid unit) is 1, ``true``, or the second of the two labels in sorted
order (``no``/``yes``: ``yes``). A ``category`` target's labels are the sorted distinct values of the
training split; the model's softmax unit ``i`` is the probability of ``labels[i]``.

The labels are learned from data, so they live with the model: :func:`write_model_info` adds a
``trainyard.json`` entry to the saved ``.keras`` archive (Keras ignores entries it does not know, so
the file still loads in plain Keras), and :func:`read_model_info` reads it back for ``predict`` and
``show``. No NumPy, pandas or TensorFlow at import time.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

#: Most labels a category output may have (one softmax unit each; an id column is not a category).
MAX_CATEGORY_LABELS = 1000

#: The entry of a ``.keras`` archive that holds what trainyard knows of the model's outputs.
MODEL_INFO_ENTRY = "trainyard.json"

Label = str | int | float | bool


@dataclass(frozen=True)
class OutputInfo:
    """One output of a saved model: its type, and for classifications its labels.

    ``labels`` are the classes in the order of the model's units: ``[negative, positive]`` for a binary
    output (its one unit is the probability of ``labels[1]``), the softmax order for a category.
    """

    type: str
    labels: tuple[Label, ...] = ()
    target: tuple[str, ...] = ()

    @property
    def positive(self) -> Label | None:
        """The class a binary output's probability is for."""
        return self.labels[1] if self.type == "binary" and len(self.labels) == 2 else None

    def as_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"type": self.type, "target": list(self.target)}
        if self.labels:
            doc["labels"] = list(self.labels)
        if self.positive is not None:
            doc["positive"] = self.positive
        return doc


@dataclass(frozen=True)
class ModelInfo:
    """What trainyard records inside a ``.keras`` file: each output's type and labels; each input's
    spec document (its columns and preprocessing, :func:`trainyard.specs.features.input_record`) and
    how CSV files are read, so that ``trainyard predict MODEL.keras`` needs no job."""

    outputs: dict[str, OutputInfo] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)
    csv: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"outputs": {name: info.as_dict() for name, info in self.outputs.items()}}
        if self.inputs:
            doc["inputs"] = dict(self.inputs)
            doc["csv"] = dict(self.csv)
        return doc

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> ModelInfo:
        outputs = doc.get("outputs") if isinstance(doc, Mapping) else None
        if not isinstance(outputs, Mapping):
            return cls()
        inputs, csv = doc.get("inputs"), doc.get("csv")
        return cls(
            inputs=dict(inputs) if isinstance(inputs, Mapping) else {},
            csv=dict(csv) if isinstance(csv, Mapping) else {},
            outputs={
                str(name): OutputInfo(
                    type=str(entry.get("type", "regression")),
                    labels=tuple(entry.get("labels") or ()),
                    target=tuple(entry.get("target") or ()),
                )
                for name, entry in outputs.items()
                if isinstance(entry, Mapping)
            },
        )


def write_model_info(path: str | Path, info: ModelInfo) -> None:
    """Add the ``trainyard.json`` entry to a freshly saved ``.keras`` archive."""
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr(MODEL_INFO_ENTRY, json.dumps(info.as_dict()))  # the outputs in the spec's order


def read_model_info(path: str | Path) -> ModelInfo | None:
    """The outputs' types and labels recorded in a ``.keras`` file; None for a file without them
    (saved by another tool, or by a trainyard older than typed outputs)."""
    try:
        with zipfile.ZipFile(path) as archive:
            if MODEL_INFO_ENTRY not in archive.namelist():
                return None
            return ModelInfo.from_dict(json.loads(archive.read(MODEL_INFO_ENTRY)))
    except (OSError, zipfile.BadZipFile, ValueError):
        return None


# -- labels of a column --------------------------------------------------------------------------


def _python(value: Any) -> Label:
    """A numpy/pandas scalar as a JSON-ready Python value (integral floats as ints)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value  # type: ignore[no-any-return]


def _sorted(values: Sequence[Any]) -> list[Label]:
    labels = [_python(v) for v in values]
    try:
        return sorted(labels)  # type: ignore[type-var]
    except TypeError:  # mixed kinds (numbers and strings in one object column): sort by their text
        return sorted(labels, key=str)


def binary_labels(series: pd.Series) -> list[Label] | str:
    """``[negative, positive]`` of a binary target column without missing values, or why it is not binary."""
    import pandas as pd

    distinct = pd.unique(series)
    if pd.api.types.is_bool_dtype(series):
        labels: list[Label] = [False, True]
    elif pd.api.types.is_numeric_dtype(series) and set(_python(v) for v in distinct) <= {0, 1}:
        labels = [0, 1]
    else:
        as_text = {str(v).lower(): v for v in distinct}
        if len(distinct) == 2 and set(as_text) == {"true", "false"}:
            labels = [_python(as_text["false"]), _python(as_text["true"])]
        else:
            labels = _sorted(list(distinct))
    present = {_python(v) for v in distinct}
    if len(distinct) > 2:
        shown = ", ".join(repr(v) for v in _sorted(list(distinct))[:5]) + (", ..." if len(distinct) > 5 else "")
        return f"a binary target has two labels, column has {len(distinct)} ({shown}): declare `type: category`"
    if len(distinct) < 2:
        only = repr(next(iter(present))) if present else "none"
        return f"a binary target needs two labels, column has one ({only})"
    return labels


def category_labels(series: pd.Series) -> list[Label] | str:
    """The sorted labels of a category target's training rows, or why there are too few or too many."""
    import pandas as pd

    distinct = pd.unique(series)
    if len(distinct) < 2:
        only = repr(_python(distinct[0])) if len(distinct) else "none"
        return f"a category target needs at least two labels, the training split has one ({only})"
    if len(distinct) > MAX_CATEGORY_LABELS:
        return (
            f"a category target takes at most {MAX_CATEGORY_LABELS:,} labels (one softmax unit each),"
            f" the training split has {len(distinct):,}"
        )
    return _sorted(list(distinct))


def encode(series: pd.Series, labels: Sequence[Label]) -> np.ndarray:
    """Each value's index in ``labels`` as float32 (-1 for a value that is not a label)."""
    import numpy as np
    import pandas as pd

    values = pd.Series([_python(v) for v in series.to_numpy()], dtype=object)
    index = {label: i for i, label in enumerate(labels)}
    codes = values.map(lambda v: index.get(v, -1)).to_numpy(dtype=np.float32)
    return codes
