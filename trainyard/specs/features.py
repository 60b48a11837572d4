"""Input features: raw table columns -> the model's input arrays, and the preprocessing inside the model.

A spec input is one model input (``keras.Input`` named after it) holding its columns side by side:

- ``numeric`` (the default): ``float32``, shape ``(rows, columns)``; NaN marks a missing value. With
  ``missing`` the model fills NaN in with the training split's mean, median, zero or a constant,
  and ``missing_indicator`` adds one 0/1 column per column (1 where the value was missing);
  ``normalize`` standardises with the training split's mean and variance (after filling in).
- ``category``: strings, shape ``(rows, columns)``. Integers are given as their decimal text
  (``3``, whether the file holds ``3`` or ``3.0``), a missing value as the empty string ``""``,
  which is a category of its own. Each column is looked up in its own vocabulary (``StringLookup``:
  the ``max_categories`` most frequent values of the training split; any other value, including
  one never seen in training, goes to one out-of-vocabulary bucket) and encoded one-hot or as a
  learned embedding; the encodings of the columns are concatenated.

Everything learned from data (vocabularies, filled-in values, normalisation statistics) is learned
from the training split only (:func:`fit_inputs`) and lives inside the saved model, which takes the
raw columns: :func:`model_inputs` turns a DataFrame of raw rows into the model's input dict, for
training, validation and prediction alike. The preprocessing uses Keras' own layers and ``keras.ops``
only (no custom classes), so the model loads in plain Keras with ``safe_mode=True``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from trainyard import defaults
from trainyard.errors import DataError, Problem
from trainyard.specs.schema import ConstantFill, InputSpec, JobSpec

if TYPE_CHECKING:
    import pandas as pd

#: The category a missing value falls in (what :func:`model_inputs` passes for it).
MISSING_TOKEN = ""

#: Keras' out-of-vocabulary token; a category value spelled like it joins the out-of-vocabulary bucket.
OOV_TOKEN = "[UNK]"


@dataclass(frozen=True)
class ColumnStats:
    """What one input column became, learned from the training split.

    Numeric columns: ``missing`` (count in the training split), ``fill`` (the value a missing one
    becomes, None without ``missing``), ``mean``/``variance`` (after filling in; None without
    ``normalize``). Category columns: ``vocabulary`` (most frequent first), ``distinct`` (values seen
    in training), ``rows_out_of_vocabulary`` (training rows whose value was cut by ``max_categories``).
    """

    column: str
    rows: int
    missing: int = 0
    fill: float | None = None
    mean: float | None = None
    variance: float | None = None
    vocabulary: tuple[str, ...] = ()
    distinct: int = 0
    rows_out_of_vocabulary: int = 0


@dataclass(frozen=True)
class InputStats:
    """The fitted preprocessing of one spec input: its columns' statistics and the width it reaches the layers with."""

    spec: InputSpec
    columns: tuple[ColumnStats, ...]

    @property
    def width(self) -> int:
        return feature_width(self.spec, self)

    def describe(self) -> list[tuple[str, str, str]]:
        """``(column, type, what it became)`` per column, for ``trainyard validate``."""
        return [(c.column, self.spec.type, _describe_column(self.spec, c)) for c in self.columns]


def embedding_dim(spec: InputSpec, vocabulary_size: int) -> int:
    """The embedding width of a category column: ``embedding_dim``, else a rule of thumb growing with the vocabulary."""
    if spec.embedding_dim is not None:
        return spec.embedding_dim
    return max(1, min(defaults.EMBEDDING_DIM_MAX, round(1.6 * (vocabulary_size + 1) ** 0.56)))


def feature_width(spec: InputSpec, stats: InputStats | None) -> int:
    """How many features the input hands to the layers."""
    k = len(spec.columns)
    if not spec.is_category:
        return k * (2 if spec.missing_indicator else 1)
    sizes = [len(c.vocabulary) for c in stats.columns] if stats is not None else [1] * k
    if spec.effective_encoding == "one_hot":
        return sum(size + 1 for size in sizes)
    return sum(embedding_dim(spec, size) for size in sizes)


def input_dtype(spec: InputSpec) -> str:
    """The dtype of the model input: ``float32`` for numeric inputs, ``string`` for category inputs."""
    return "string" if spec.is_category else "float32"


def input_signature(inputs: Mapping[str, InputSpec]) -> dict[str, dict[str, Any]]:
    """What the saved model takes, per input: ``{"dtype", "shape": [None, columns], "columns", "type"}``."""
    return {
        name: {
            "dtype": input_dtype(inp),
            "shape": [None, len(inp.columns)],
            "columns": list(inp.columns),
            "type": inp.type,
        }
        for name, inp in inputs.items()
    }


def signature_from_document(document: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """:func:`input_signature` of a stored spec document's inputs; empty for a document that has none readable."""
    from pydantic import ValidationError

    raw = (document or {}).get("inputs")
    if isinstance(raw, list):  # the Sequential shorthand, as a stored document never has it
        raw = {"features": {"columns": raw}}
    if not isinstance(raw, Mapping):
        return {}
    try:
        return input_signature({str(k): InputSpec.model_validate(v) for k, v in raw.items()})
    except ValidationError:
        return {}


def input_record(spec: JobSpec) -> dict[str, Any]:
    """What a saved model must carry to take raw rows without its spec: ``{"inputs": {...}, "csv": {...}}``
    (each input's spec document, and how the spec's CSV files are read). ``trainyard predict MODEL.keras``
    reads it back from the ``trainyard.json`` entry of the archive."""
    return {
        "inputs": {name: inp.document() for name, inp in spec.inputs.items()},
        "csv": spec.data.csv.read_options() if spec.data.csv is not None else {},
    }


# -- raw rows -> model inputs --------------------------------------------------------------------------


def model_inputs(
    inputs: Mapping[str, InputSpec], frame: pd.DataFrame, *, first_line: int | None = 2
) -> dict[str, np.ndarray]:
    """The model's input dict for a DataFrame of raw rows: ``{input: array (rows, columns)}``.

    Numeric inputs are ``float32`` (NaN for a missing value), category inputs ``object`` arrays of
    ``str`` (see the module docstring). Extra columns are ignored. Raises :class:`DataError` for a
    missing column (naming the columns the inputs expect), a non-numeric or infinite value in a
    numeric column, or a missing one in a numeric input without ``missing``. ``first_line`` is the
    file line of the frame's first row, for messages (None: say "row" and count from 0).
    """
    expected = list(dict.fromkeys(c for inp in inputs.values() for c in inp.columns))
    absent = [c for c in expected if c not in frame.columns]
    if absent:
        raise DataError(
            Problem(
                "",
                f"missing column{'s' if len(absent) > 1 else ''} {', '.join(map(repr, absent))}"
                f" (the model's inputs take: {', '.join(expected)})",
            )
        )
    numbers: dict[str, np.ndarray] = {}
    texts: dict[str, np.ndarray] = {}
    problems: list[Problem] = []
    out: dict[str, np.ndarray] = {}
    for name, inp in inputs.items():
        if inp.is_category:
            for c in inp.columns:
                if c not in texts:
                    texts[c] = category_text(frame[c])
            out[name] = np.stack([texts[c] for c in inp.columns], axis=1) if inp.columns else np.empty((len(frame), 0))
            continue
        for c in inp.columns:
            if c not in numbers:
                numbers[c], problem = _numbers(frame[c], c, first_line)
                if problem:
                    problems.append(Problem(f"inputs.{name}", problem))
            if inp.missing is None and c in numbers:
                bad = np.isnan(numbers[c])
                if bad.any():
                    problems.append(
                        Problem(
                            f"inputs.{name}",
                            f"column {c!r} has {int(bad.sum())} missing value(s) ({_rows(bad, first_line)})"
                            " and the input has no `missing` rule to fill them in",
                        )
                    )
        out[name] = np.stack([numbers[c] for c in inp.columns], axis=1)
    if problems:
        raise DataError(list(dict.fromkeys(problems)))
    return out


def category_text(series: pd.Series) -> np.ndarray:
    """A column as category strings: integers as decimal text (``3.0`` -> ``"3"``), missing as ``""``."""
    import pandas as pd

    values = series.to_numpy()
    if pd.api.types.is_bool_dtype(series):
        return np.where(values, "true", "false").astype(object)
    if pd.api.types.is_numeric_dtype(series):
        floats = series.to_numpy(dtype=np.float64, na_value=np.nan)
        missing = np.isnan(floats)
        integral = ~missing & np.isfinite(floats) & (np.floor(floats) == floats) & (np.abs(floats) < 2**53)
        text = np.empty(len(values), dtype=object)
        if integral.any():
            text[integral] = floats[integral].astype(np.int64).astype(str)
        other = ~missing & ~integral
        if other.any():
            text[other] = [repr(float(v)) for v in floats[other]]
        text[missing] = MISSING_TOKEN
        return text
    missing = pd.isna(series).to_numpy()
    text = series.to_numpy(dtype=object).copy()
    other = np.fromiter((not isinstance(v, str) for v in text), dtype=bool, count=len(text)) & ~missing
    if other.any():  # numbers and booleans among text (a DataFrame built by hand, a chunk with gaps)
        text[other] = [_canonical(v) for v in text[other]]
    if missing.any():
        text[missing] = MISSING_TOKEN
    return text


def _canonical(value: Any) -> str:
    """One value as :func:`category_text` writes it in a column of its type."""
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return str(int(f)) if math.isfinite(f) and f.is_integer() and abs(f) < 2**53 else repr(f)
    return str(value)


def _numbers(series: pd.Series, column: str, first_line: int | None) -> tuple[np.ndarray, str | None]:
    import pandas as pd

    if pd.api.types.is_bool_dtype(series):
        return series.to_numpy(dtype=np.float32), None
    if pd.api.types.is_numeric_dtype(series):
        values = series.to_numpy(dtype=np.float32, na_value=np.nan)  # nullable Int64/Float64 too
        bad_text = None
    else:
        coerced = pd.to_numeric(series, errors="coerce")
        values = coerced.to_numpy(dtype=np.float32)
        text = np.isnan(values) & ~pd.isna(series).to_numpy()
        bad_text = text if text.any() else None
    if bad_text is not None:
        first = series[bad_text].iloc[0]
        return values, (
            f"column {column!r} has {int(bad_text.sum())} non-numeric value(s) such as {first!r}"
            f" ({_rows(bad_text, first_line)}){text_column_hint(series, bad_text)}"
        )
    infinite = np.isinf(values)
    if infinite.any():
        return values, f"column {column!r} has {int(infinite.sum())} infinite value(s) ({_rows(infinite, first_line)})"
    return values, None


def text_column_hint(series: pd.Series, non_numeric: np.ndarray) -> str:
    """``; declare it `type: category` ...`` when most present values of a column are text, else ``""``."""
    present = int((~series.isna()).sum())
    if present and non_numeric.sum() * 2 >= present:
        return "; it is a text column: declare it `type: category` in an input of its own"
    return ""


def _rows(mask: np.ndarray, first_line: int | None) -> str:
    idx = np.flatnonzero(mask)[:3]
    label = "line" if first_line is not None else "row"
    shown = ", ".join(str(i + (first_line or 0)) for i in idx)
    more = ", ..." if mask.sum() > len(idx) else ""
    return f"{label}{'s' if mask.sum() > 1 else ''} {shown}{more}"


# -- fitting on the training split ---------------------------------------------------------------------


def fit_inputs(inputs: Mapping[str, InputSpec], x: Mapping[str, np.ndarray]) -> dict[str, InputStats]:
    """The statistics of every input, learned from the training split's arrays (``model_inputs`` of it).

    Raises :class:`DataError` when a statistic cannot be taken (a column missing in every training row).
    """
    stats: dict[str, InputStats] = {}
    problems: list[Problem] = []
    for name, inp in inputs.items():
        columns = []
        for j, column in enumerate(inp.columns):
            values = x[name][:, j]
            if inp.is_category:
                columns.append(_fit_category(inp, column, values))
                continue
            fitted, problem = _fit_numeric(inp, column, values)
            if problem:
                problems.append(Problem(f"inputs.{name}.missing", problem))
            columns.append(fitted)
        stats[name] = InputStats(spec=inp, columns=tuple(columns))
    if problems:
        raise DataError(problems)
    return stats


def _fit_numeric(inp: InputSpec, column: str, values: np.ndarray) -> tuple[ColumnStats, str | None]:
    v = values.astype(np.float64)
    missing = np.isnan(v)
    fill = None
    if inp.missing is not None:
        observed = v[~missing]
        if isinstance(inp.missing, ConstantFill):
            fill = inp.missing.constant
        elif inp.missing == "zero":
            fill = 0.0
        elif not len(observed):
            return ColumnStats(column, len(v), int(missing.sum())), (
                f"column {column!r} is missing in every training row: there is no {inp.missing} to fill in"
            )
        else:
            fill = float(np.mean(observed) if inp.missing == "mean" else np.median(observed))
        v = np.where(missing, fill, v)
    mean = variance = None
    if inp.normalize:
        mean, variance = float(v.mean()), float(v.var())
    return ColumnStats(column, len(v), int(missing.sum()), fill, mean, variance), None


def _fit_category(inp: InputSpec, column: str, values: np.ndarray) -> ColumnStats:
    import pandas as pd

    counts = pd.Series(values, dtype=object).value_counts(sort=False)
    counts = counts.drop(OOV_TOKEN, errors="ignore")
    # most frequent first, ties in the values' order: the same vocabulary on every machine
    order = sorted(zip(counts.index, counts.to_numpy()), key=lambda kv: (-int(kv[1]), str(kv[0])))
    limit = inp.max_categories or defaults.MAX_CATEGORIES
    kept = order[:limit]
    cut = sum(int(n) for _, n in order[limit:])
    return ColumnStats(
        column,
        len(values),
        missing=int(counts.get(MISSING_TOKEN, 0)),
        vocabulary=tuple(str(v) for v, _ in kept),
        distinct=len(order),
        rows_out_of_vocabulary=cut,
    )


def _describe_column(inp: InputSpec, c: ColumnStats) -> str:
    if inp.is_category:
        size = len(c.vocabulary)
        parts = [f"{size} value{'s' if size != 1 else ''} + out-of-vocabulary"]
        if c.missing:
            parts.append(f"missing ({c.missing} rows) is a value")
        if c.rows_out_of_vocabulary:
            share = 100 * c.rows_out_of_vocabulary / max(c.rows, 1)
            parts.append(
                f"truncated: {c.distinct} distinct, the {size} most frequent kept (max_categories),"
                f" {c.rows_out_of_vocabulary} rows ({share:.1f}%) out of vocabulary"
            )
        if inp.effective_encoding == "one_hot":
            parts.append(f"one-hot ({size + 1} columns)")
        else:
            parts.append(f"embedding {embedding_dim(inp, size)}")
        return "; ".join(parts)
    parts = []
    if inp.missing is not None:
        how = "constant" if isinstance(inp.missing, ConstantFill) else inp.missing
        parts.append(f"{c.missing} missing -> {_number(c.fill)} ({how})")
        if inp.missing_indicator:
            parts.append("+ indicator")
    if inp.normalize and c.mean is not None and c.variance is not None:
        parts.append(f"normalized (mean {_number(c.mean)}, std {_number(math.sqrt(c.variance))})")
    return "; ".join(parts) or "as is"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


# -- inside the model ----------------------------------------------------------------------------------


def layer_names(name: str, inp: InputSpec) -> tuple[dict[str, tuple[str, ...]], dict[str, str], str]:
    """The preprocessing layers :func:`preprocess` adds for input ``name``, from the spec alone.

    Returns ``{layer: the layers feeding it}``, ``{layer: the type to show}`` for the small functional
    sub-models (``Impute``, ``MissingIndicator``, ``Column``), and the layer whose output the rest of
    the model sees (``name`` itself when there is no preprocessing).
    """
    inbound: dict[str, tuple[str, ...]] = {}
    kinds: dict[str, str] = {}
    if inp.is_category:
        k = len(inp.columns)
        ends = []
        for j in range(k):
            suffix = "" if k == 1 else f"_{j}"
            source = name
            if k > 1:
                inbound[f"{name}_column{suffix}"] = (name,)
                kinds[f"{name}_column{suffix}"] = "Column"
                source = f"{name}_column{suffix}"
            inbound[f"{name}_lookup{suffix}"] = (source,)
            end = f"{name}_lookup{suffix}"
            if inp.effective_encoding == "embedding":
                inbound[f"{name}_embedding{suffix}"] = (end,)
                inbound[f"{name}_flatten{suffix}"] = (f"{name}_embedding{suffix}",)
                end = f"{name}_flatten{suffix}"
            ends.append(end)
        if k == 1:
            return inbound, kinds, ends[0]
        inbound[f"{name}_features"] = tuple(ends)
        return inbound, kinds, f"{name}_features"
    end = name
    if inp.missing is not None:
        inbound[f"{name}_impute"] = (name,)
        kinds[f"{name}_impute"] = "Impute"
        end = f"{name}_impute"
    if inp.normalize:
        inbound[f"{name}_normalization"] = (end,)
        end = f"{name}_normalization"
    if inp.missing_indicator:
        inbound[f"{name}_missing"] = (name,)
        kinds[f"{name}_missing"] = "MissingIndicator"
        inbound[f"{name}_features"] = (end, f"{name}_missing")
        end = f"{name}_features"
    return inbound, kinds, end


def preprocess(name: str, inp: InputSpec, tensor: Any, stats: InputStats | None) -> Any:
    """The tensor the layers see for input ``name``: ``tensor`` (the raw ``keras.Input``) prepared as the spec says.

    ``stats`` are the training split's (:func:`fit_inputs`); without them (a shape check only) the
    layers get neutral statistics and one-entry vocabularies.
    """
    import keras

    k = len(inp.columns)
    if inp.is_category:
        ends = []
        for j in range(k):
            suffix = "" if k == 1 else f"_{j}"
            column = tensor if k == 1 else _column_model(f"{name}_column{suffix}", k, j)(tensor)
            vocabulary = list(stats.columns[j].vocabulary) if stats is not None else ["-"]
            if inp.effective_encoding == "one_hot":
                lookup = keras.layers.StringLookup(
                    vocabulary=vocabulary, oov_token=OOV_TOKEN, output_mode="one_hot", name=f"{name}_lookup{suffix}"
                )
                ends.append(lookup(column))
                continue
            lookup = keras.layers.StringLookup(
                vocabulary=vocabulary, oov_token=OOV_TOKEN, name=f"{name}_lookup{suffix}"
            )
            dim = embedding_dim(inp, len(vocabulary))
            embedded = keras.layers.Embedding(len(vocabulary) + 1, dim, name=f"{name}_embedding{suffix}")(
                lookup(column)
            )
            ends.append(keras.layers.Reshape((dim,), name=f"{name}_flatten{suffix}")(embedded))
        return ends[0] if k == 1 else keras.layers.Concatenate(name=f"{name}_features")(ends)

    raw = tensor
    if inp.missing is not None:
        fill = np.array([c.fill for c in stats.columns] if stats is not None else [0.0] * k, dtype=np.float32)
        tensor = _impute_model(f"{name}_impute", k, fill)(tensor)
    if inp.normalize:
        if stats is not None:
            mean = np.array([c.mean for c in stats.columns])
            variance = np.array([c.variance for c in stats.columns])
        else:
            mean, variance = np.zeros(k), np.ones(k)
        tensor = keras.layers.Normalization(mean=mean, variance=variance, name=f"{name}_normalization")(tensor)
    if inp.missing_indicator:
        indicator = _indicator_model(f"{name}_missing", k)(raw)
        tensor = keras.layers.Concatenate(name=f"{name}_features")([tensor, indicator])
    return tensor


def _impute_model(name: str, k: int, fill: np.ndarray) -> Any:
    """A tiny functional model replacing NaN by ``fill`` (per column): built-in ops, safe to load."""
    import keras

    x = keras.Input((k,), dtype="float32", name=f"{name}_in")
    return keras.Model(x, keras.ops.where(keras.ops.isnan(x), fill, x), name=name)


def _indicator_model(name: str, k: int) -> Any:
    import keras

    x = keras.Input((k,), dtype="float32", name=f"{name}_in")
    return keras.Model(x, keras.ops.cast(keras.ops.isnan(x), "float32"), name=name)


def _column_model(name: str, k: int, j: int) -> Any:
    import keras

    x = keras.Input((k,), dtype="string", name=f"{name}_in")
    return keras.Model(x, x[:, j : j + 1], name=name)
