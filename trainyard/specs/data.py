"""The rows a spec trains on: reading CSV/Parquet/built-in tables, checking columns, splitting.

A used column with values its input cannot take (missing values in a numeric input without a
``missing`` rule, text in a numeric column) is a :class:`DataError` naming the column, the number
of bad rows and the first bad lines, found when the spec is loaded, never a NaN loss later.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from trainyard.errors import DataError, Problem
from trainyard.specs.features import InputStats, fit_inputs, model_inputs, text_column_hint
from trainyard.specs.schema import BUILTIN_DATASETS, BUILTIN_PREFIX, JobSpec, did_you_mean
from trainyard.specs.targets import Label, binary_labels, category_labels, encode
from trainyard.specs.targets import _python as _scalar

if TYPE_CHECKING:
    import pandas as pd

_FINGERPRINT_CHUNK = 1 << 16
_CACHE_SIZE = 4


@dataclass(frozen=True)
class Split:
    """One set of rows: ``x`` per model input (as :func:`~trainyard.specs.features.model_inputs` makes
    them: float32, or str objects for category inputs) and ``y`` per model output (float32), aligned by row.

    A classification output's ``y`` holds label indices (see :class:`Dataset`); ``weight`` is the
    rows' ``data.weight`` column, None without one.
    """

    x: dict[str, np.ndarray]
    y: dict[str, np.ndarray]
    weight: np.ndarray | None = None

    def __len__(self) -> int:
        return len(next(iter(self.y.values())))


@dataclass(frozen=True)
class Dataset:
    """The three sets of a spec; ``test`` is None when the spec has none."""

    train: Split
    valid: Split
    test: Split | None
    #: The labels of each classification output, in the order of its units (learned from ``train``).
    labels: dict[str, list[Label]] = field(default_factory=dict)


def data_paths(spec: JobSpec) -> list[Path]:
    """The files the spec reads (absolute once loaded through ``load_spec``); built-in sources are not files."""
    return list(spec.data_files().values())


def outside_roots(spec: JobSpec, roots: Sequence[Path], label: str) -> list[Problem]:
    """A problem for each data file of ``spec`` that is not under one of ``roots`` (symlinks followed).

    Built-in data sets are always allowed. ``label`` says where the roots come from, for the message.
    """
    resolved_roots = [Path(root).resolve() for root in roots]
    allowed = os.pathsep.join(str(root) for root in resolved_roots)
    problems = []
    for role, path in spec.data_files().items():
        resolved = Path(path).resolve()
        if not any(resolved.is_relative_to(root) for root in resolved_roots):
            problems.append(Problem(f"data.{role}", f"{resolved} is outside {label} ({allowed})"))
    return problems


def data_fingerprint(spec: JobSpec) -> str:
    """A hash that changes when any data file changes: size, mtime and sha256 of its head and tail."""
    digest = hashlib.sha256()
    if spec.data.source and spec.data.source.startswith(BUILTIN_PREFIX):
        import sklearn

        digest.update(f"{spec.data.source}:{sklearn.__version__}".encode())
    for role, path in spec.data_files().items():
        try:
            stat = path.stat()
            with path.open("rb") as fh:
                head = fh.read(_FINGERPRINT_CHUNK)
                fh.seek(max(stat.st_size - _FINGERPRINT_CHUNK, 0))
                tail = fh.read(_FINGERPRINT_CHUNK)
        except OSError as exc:
            raise DataError(Problem(f"data.{role}", f"cannot read {str(path)!r}: {exc.strerror or exc}")) from None
        digest.update(f"{role}:{path}:{stat.st_size}:{stat.st_mtime_ns}:".encode())
        digest.update(hashlib.sha256(head + tail).digest())
    return digest.hexdigest()


def check_data(spec: JobSpec) -> list[Problem]:
    """Every data problem of a spec: unreadable files, unknown columns, missing or non-numeric values, too few rows."""
    problems: list[Problem] = []
    for role, frame_or_problem in _frames(spec).items():
        if isinstance(frame_or_problem, Problem):
            problems.append(frame_or_problem)
            continue
        frame, is_csv = frame_or_problem
        where = f" in {role} file" if role in ("train", "valid", "test") else ""
        delimiter = _delimiter_hint([str(c) for c in frame.columns]) if is_csv else ""
        if delimiter and any(c not in frame.columns for c in spec.used_columns()):
            problems.append(Problem(f"data.{role}", f"{_where(spec, role)} has a single column {delimiter}"))
            continue
        problems += _check_columns(spec, frame, where, is_csv)
        if not problems and len(frame) == 0:
            problems.append(Problem(f"data.{role}", f"{_where(spec, role)} has a header but no rows"))
        elif not problems and role == "source":
            split = spec.data.effective_split
            n_valid, n_test = _split_sizes(len(frame), split.valid, split.test)
            if len(frame) - n_valid - n_test < 1 or n_valid < 1:
                problems.append(Problem("data.split", f"{len(frame)} rows leave no rows for training or validation"))
    if not problems:
        problems += _label_problems(spec, _frames(spec))
    return problems


def input_stats(spec: JobSpec) -> dict[str, InputStats]:
    """What each input's columns become, learned from the spec's training split (see ``features``); raises DataError."""
    return fit_inputs(spec.inputs, load_data(spec).train.x)


def load_data(spec: JobSpec) -> Dataset:
    """Read and split the spec's data into float32 arrays per input and output; raises DataError."""
    problems = check_data(spec)  # the data may have changed since the spec was loaded
    if problems:
        raise DataError(problems)
    frames = _frames(spec)  # cached by check_data: read once
    if "source" in frames:
        frame = frames["source"][0]  # type: ignore[index]
        split = spec.data.effective_split
        train_rows, valid_rows, test_rows = _split_rows(len(frame), split.valid, split.test, split.seed)
        labels = _labels(spec, _parts(spec, frames))
        table = _arrays(spec, frame, labels)
        return Dataset(
            train=_take(table, train_rows),
            valid=_take(table, valid_rows),
            test=_take(table, test_rows) if len(test_rows) else None,
            labels=labels,
        )
    labels = _labels(spec, _parts(spec, frames))
    sets = {role: _take(_arrays(spec, frames[role][0], labels), None) for role in frames}  # type: ignore[index]
    return Dataset(train=sets["train"], valid=sets["valid"], test=sets.get("test"), labels=labels)


# -- reading -----------------------------------------------------------------------------------------

_cache: OrderedDict[tuple[str, int, int, str], pd.DataFrame] = OrderedDict()


def _frames(spec: JobSpec) -> dict[str, tuple[pd.DataFrame, bool] | Problem]:
    roles = {"source": spec.data.source, "train": spec.data.train, "valid": spec.data.valid, "test": spec.data.test}
    out: dict[str, tuple[pd.DataFrame, bool] | Problem] = {}
    for role, where in roles.items():
        if where is None:
            continue
        if where.startswith(BUILTIN_PREFIX):
            name = where[len(BUILTIN_PREFIX) :]
            if name not in BUILTIN_DATASETS:
                out[role] = Problem(
                    f"data.{role}",
                    f"unknown built-in data set {where!r} (available: {', '.join(BUILTIN_PREFIX + b for b in BUILTIN_DATASETS)})",
                )
            else:
                out[role] = (_builtin(name), False)
            continue
        out[role] = _read_file(role, Path(where), spec.data.csv.read_options() if spec.data.csv else {})
    return out


def _builtin(name: str) -> pd.DataFrame:
    key = (BUILTIN_PREFIX + name, 0, 0, "")
    if key not in _cache:
        from sklearn import datasets

        _remember(key, getattr(datasets, f"load_{name}")(as_frame=True).frame)
    return _cache[key]


def _read_file(role: str, path: Path, csv_options: dict[str, object]) -> tuple[pd.DataFrame, bool] | Problem:
    import pandas as pd

    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        return Problem(f"data.{role}", f"expected a .csv or .parquet file, received {str(path)!r}")
    try:
        stat = path.stat()
    except FileNotFoundError:
        return Problem(f"data.{role}", f"file not found: {str(path)!r}")
    except OSError as exc:
        return Problem(f"data.{role}", f"cannot read {str(path)!r}: {exc.strerror or exc}")
    key = (str(path), stat.st_size, stat.st_mtime_ns, repr(sorted(csv_options.items())) if suffix == ".csv" else "")
    if key not in _cache:
        try:
            if suffix == ".csv":
                frame = pd.read_csv(path, skipinitialspace=True, **csv_options)  # type: ignore[call-overload]
            else:
                frame = pd.read_parquet(path)
        except pd.errors.EmptyDataError:
            return Problem(f"data.{role}", f"{str(path)!r} is empty (not even a header line)")
        except UnicodeDecodeError as exc:
            encoding = csv_options.get("encoding", "utf-8")
            return Problem(
                f"data.{role}",
                f"cannot read {str(path)!r} as {encoding} ({exc.reason} at byte {exc.start});"
                " set data.csv.encoding (such as latin-1 or cp1252)",
            )
        except Exception as exc:  # noqa: BLE001 - pandas/pyarrow raise many kinds; all mean "unreadable"
            return Problem(f"data.{role}", f"cannot read {str(path)!r}: {_first_line(exc)}")
        _remember(key, frame)
    return _cache[key], suffix == ".csv"


def _remember(key: tuple[str, int, int, str], frame: pd.DataFrame) -> None:
    _cache[key] = frame
    while len(_cache) > _CACHE_SIZE:
        _cache.popitem(last=False)


# -- checking ----------------------------------------------------------------------------------------


def _check_columns(spec: JobSpec, frame: pd.DataFrame, where: str, is_csv: bool) -> list[Problem]:
    problems: list[Problem] = []
    available = [str(c) for c in frame.columns]
    # (path, column, how it is used): "category" takes any value, "imputed" a number or nothing
    uses: list[tuple[str, str, str]] = []
    for name, inp in spec.inputs.items():
        kind = "category" if inp.is_category else "imputed" if inp.missing is not None else "number"
        uses += [(f"inputs.{name}.columns[{j}]", col, kind) for j, col in enumerate(inp.columns)]
    for name, out in spec.outputs.items():
        if len(out.target) == 1:
            # a classification target takes labels ("binary"/"category"), a regression numbers
            kind = "target" if out.type == "regression" else f"{out.type} target"
            uses.append((f"outputs.{name}.target", out.target[0], kind))
        else:
            uses += [(f"outputs.{name}.target[{j}]", col, "target") for j, col in enumerate(out.target)]
    if spec.data.weight is not None:
        uses.append(("data.weight", spec.data.weight, "weight"))
    checked: dict[tuple[str, str], str | None] = {}
    for path, col, kind in uses:
        if (col, kind) not in checked:
            if kind in ("binary target", "category target"):
                checked[col, kind] = _label_column_problem(frame, col, available, kind.split()[0], is_csv)
            else:
                checked[col, kind] = _column_problem(
                    frame, col, available, is_csv, "number" if kind == "weight" else kind
                )
                if checked[col, kind] is None and kind == "weight":
                    checked[col, kind] = _weight_problem(frame[col], is_csv)
        if checked[col, kind] is not None:
            problems.append(Problem(path, f"{checked[col, kind]}{where}"))
    return problems


def _label_column_problem(frame: pd.DataFrame, col: str, available: list[str], kind: str, is_csv: bool) -> str | None:
    """What is wrong with a classification target column: unknown, missing values, not two labels."""
    series = _one_column(frame, col, available)
    if isinstance(series, str):
        return series
    missing = series.isna().to_numpy()
    if missing.any():
        return f"column {col!r} has {int(missing.sum())} missing value(s) ({_rows(missing, is_csv)}); a target needs a label on every row"
    if kind == "binary":
        labels = binary_labels(series)
        if isinstance(labels, str):
            return labels
    return None


def _weight_problem(series: pd.Series, is_csv: bool) -> str | None:
    """A weight column (already known numeric, finite, complete) must not be negative."""
    import pandas as pd

    values = pd.to_numeric(series).to_numpy(dtype="float64")
    negative = values < 0
    if negative.any():
        return (
            f"column {series.name!r} has {int(negative.sum())} negative weight(s) such as {values[negative][0]:g}"
            f" ({_rows(negative, is_csv)}); weights must be 0 or more"
        )
    return None


def _label_problems(spec: JobSpec, frames: dict[str, tuple[pd.DataFrame, bool] | Problem]) -> list[Problem]:
    """Classification targets: enough labels in the training split, no label the training split lacks,
    and weights that leave something to learn from."""
    problems: list[Problem] = []
    parts = _parts(spec, frames)
    for name, out in spec.outputs.items():
        if out.type == "regression":
            continue
        path = f"outputs.{name}.target"
        col = out.target[0]
        labels = _labels_or_problem(out.type, parts, col)
        if isinstance(labels, str):
            problems.append(Problem(path, labels))
            continue
        known = set(labels)
        for role in ("validation", "test"):
            if role not in parts or not len(parts[role]):
                continue
            values = parts[role][col]
            unseen = ~np.array([_scalar(v) in known for v in values], dtype=bool)
            if unseen.any():
                problems.append(
                    Problem(
                        path,
                        f"label {_scalar(values[unseen].iloc[0])!r} of the {role} split is not in the training split"
                        f" ({int(unseen.sum())} row(s)); the model can only predict the training split's labels",
                    )
                )
    if spec.data.weight is not None:
        weights = parts["training"][spec.data.weight]
        if not float(weights.astype("float64").sum()) > 0:
            problems.append(Problem("data.weight", "the weights of the training split sum to 0: nothing to learn from"))
    return problems


def _parts(spec: JobSpec, frames: dict[str, tuple[pd.DataFrame, bool] | Problem]) -> dict[str, pd.DataFrame]:
    """The ``training``/``validation``/``test`` rows of a spec's (readable) frames."""
    if "source" in frames:
        frame = frames["source"][0]  # type: ignore[index]
        split = spec.data.effective_split
        rows = _split_rows(len(frame), split.valid, split.test, split.seed)
        return dict(zip(("training", "validation", "test"), (frame.iloc[r] for r in rows)))
    roles = (("training", "train"), ("validation", "valid"), ("test", "test"))
    return {role: frames[key][0] for role, key in roles if key in frames}  # type: ignore[index]


def _labels_or_problem(kind: str, parts: dict[str, pd.DataFrame], col: str) -> list[Label] | str:
    if kind == "category":
        return category_labels(parts["training"][col])
    return binary_labels(_whole_column(parts, col))


def _whole_column(parts: dict[str, pd.DataFrame], col: str) -> pd.Series:
    """A column over every part: a binary target's two labels are those of the whole column."""
    import pandas as pd

    return pd.concat([part[col] for part in parts.values()], ignore_index=True)


def _labels(spec: JobSpec, parts: dict[str, pd.DataFrame]) -> dict[str, list[Label]]:
    """The labels of each classification output (the data is already checked): a category's from the
    ``"training"`` part, a binary's from every part."""
    out: dict[str, list[Label]] = {}
    for name, spec_out in spec.outputs.items():
        if spec_out.type == "regression":
            continue
        labels = _labels_or_problem(spec_out.type, parts, spec_out.target[0])
        if isinstance(labels, str):  # the data changed since it was checked
            raise DataError(Problem(f"outputs.{name}.target", labels))
        out[name] = labels
    return out


def _one_column(frame: pd.DataFrame, col: str, available: list[str]) -> pd.Series | str:
    """The column ``col`` of ``frame``, or what is wrong: unknown (with a hint) or there more than once."""
    import pandas as pd

    if col not in frame.columns:
        hint = did_you_mean(col, available) or f" (available: {', '.join(available)})"
        return f"unknown column {col!r}{hint}"
    series = frame[col]
    if isinstance(series, pd.DataFrame):
        return f"column {col!r} appears more than once"
    return series


def _column_problem(frame: pd.DataFrame, col: str, available: list[str], is_csv: bool, kind: str) -> str | None:
    import pandas as pd

    series = _one_column(frame, col, available)
    if isinstance(series, str):
        return series
    if kind == "category":
        return None
    numeric = pd.to_numeric(series, errors="coerce") if not pd.api.types.is_numeric_dtype(series) else series
    if pd.api.types.is_bool_dtype(series):
        numeric = series.astype("float64")
    missing = series.isna().to_numpy()
    non_numeric = numeric.isna().to_numpy() & ~missing
    infinite = np.zeros(len(series), dtype=bool)
    if not non_numeric.any():
        infinite = np.isinf(numeric.to_numpy(dtype="float64"))
    if kind == "imputed":
        missing = np.zeros(len(series), dtype=bool)  # filled in inside the model
    parts = []
    if missing.any():
        fill = " (set `missing: median`, mean, zero or {constant: x} on the input to fill them in)"
        parts.append(
            f"{int(missing.sum())} missing value(s) ({_rows(missing, is_csv)}){fill if kind == 'number' else ''}"
        )
    if non_numeric.any():
        first = series[non_numeric].iloc[0]
        parts.append(
            f"{int(non_numeric.sum())} non-numeric value(s) such as {first!r} ({_rows(non_numeric, is_csv)})"
            + text_column_hint(series, non_numeric)
        )
    if infinite.any():
        parts.append(f"{int(infinite.sum())} infinite value(s) ({_rows(infinite, is_csv)})")
    if parts:
        return f"column {col!r} has " + " and ".join(parts)
    return None


def _delimiter_hint(available: list[str]) -> str:
    """A CSV read as one column whose name holds ``;``, tab or ``|`` uses another delimiter."""
    if len(available) == 1:
        for sep, label, text in ((";", "';'", "';'"), ("\t", "tabs", '"\\t"'), ("|", "'|'", "'|'")):
            if sep in available[0]:
                return f"(it seems to be separated by {label}, not commas): set `data.csv: {{sep: {text}}}`"
    return ""


def _where(spec: JobSpec, role: str) -> str:
    where = getattr(spec.data, role, None)
    return repr(where) if where and not where.startswith(BUILTIN_PREFIX) else "the data"


def _rows(mask: np.ndarray, is_csv: bool) -> str:
    idx = np.flatnonzero(mask)[:3]
    label = "line" if is_csv else "row"
    # CSV line numbers are 1-based and count the header line
    shown = ", ".join(str(i + 2 if is_csv else i) for i in idx)
    more = ", ..." if mask.sum() > len(idx) else ""
    return f"{label}{'s' if mask.sum() > 1 else ''} {shown}{more}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# -- arrays ------------------------------------------------------------------------------------------


def _split_sizes(n: int, valid: float, test: float) -> tuple[int, int]:
    return int(round(n * valid)), int(round(n * test))


def _split_rows(n: int, valid: float, test: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``(train, valid, test)`` row numbers of a table of ``n`` rows cut by its split."""
    n_valid, n_test = _split_sizes(n, valid, test)
    order = np.random.default_rng(seed).permutation(n)
    return order[n_test + n_valid :], order[n_test : n_test + n_valid], order[:n_test]


_Arrays = tuple[dict[str, np.ndarray], dict[str, np.ndarray], "np.ndarray | None"]


def _arrays(spec: JobSpec, frame: pd.DataFrame, labels: dict[str, list[Label]]) -> _Arrays:
    """The whole table as the model's inputs (:func:`model_inputs`), its targets (float32: numbers as
    they are, a classification target as label indices) and its rows' weights (None without)."""
    import pandas as pd

    x = model_inputs(spec.inputs, frame)
    coded = {spec.outputs[name].target[0]: values for name, values in labels.items()}
    table = {
        c: pd.to_numeric(frame[c]).to_numpy(dtype=np.float32)
        for out in spec.outputs.values()
        for c in out.target
        if c not in coded
    }
    table.update({c: encode(frame[c], values) for c, values in coded.items()})
    y = {name: np.stack([table[c] for c in out.target], axis=1) for name, out in spec.outputs.items()}
    weight = pd.to_numeric(frame[spec.data.weight]).to_numpy(dtype=np.float32) if spec.data.weight else None
    return x, y, weight


def _take(arrays: _Arrays, rows: np.ndarray | None) -> Split:
    x, y, weight = arrays

    def pick(matrix: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(matrix if rows is None else matrix[rows])

    return Split(
        x={name: pick(v) for name, v in x.items()},
        y={name: pick(v) for name, v in y.items()},
        weight=pick(weight) if weight is not None else None,
    )


def target_labels(spec: JobSpec) -> dict[str, list[Label]]:
    """The labels of each classification output as training will learn them; empty when the data
    cannot be read or is not valid (its problems are :func:`check_data`'s to report)."""
    if all(out.type == "regression" for out in spec.outputs.values()):
        return {}
    frames = _frames(spec)
    if any(isinstance(f, Problem) for f in frames.values()) or check_data(spec):
        return {}
    return _labels(spec, _parts(spec, frames))
