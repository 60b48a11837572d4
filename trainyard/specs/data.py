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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from trainyard.errors import DataError, Problem
from trainyard.specs.features import InputStats, fit_inputs, model_inputs, text_column_hint
from trainyard.specs.schema import BUILTIN_DATASETS, BUILTIN_PREFIX, JobSpec, did_you_mean

if TYPE_CHECKING:
    import pandas as pd

_FINGERPRINT_CHUNK = 1 << 16
_CACHE_SIZE = 4


@dataclass(frozen=True)
class Split:
    """One set of rows: ``x`` per model input (as :func:`~trainyard.specs.features.model_inputs` makes
    them: float32, or str objects for category inputs) and ``y`` per model output (float32), aligned by row."""

    x: dict[str, np.ndarray]
    y: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(next(iter(self.y.values())))


@dataclass(frozen=True)
class Dataset:
    """The three sets of a spec; ``test`` is None when the spec has none."""

    train: Split
    valid: Split
    test: Split | None


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
        n_valid, n_test = _split_sizes(len(frame), split.valid, split.test)
        order = np.random.default_rng(split.seed).permutation(len(frame))
        test_rows, valid_rows, train_rows = order[:n_test], order[n_test : n_test + n_valid], order[n_test + n_valid :]
        table = _arrays(spec, frame)
        return Dataset(
            train=_take(table, train_rows),
            valid=_take(table, valid_rows),
            test=_take(table, test_rows) if n_test else None,
        )
    sets = {role: _take(_arrays(spec, frames[role][0]), None) for role in frames}  # type: ignore[index]
    return Dataset(train=sets["train"], valid=sets["valid"], test=sets.get("test"))


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
        from sklearn.datasets import load_diabetes

        _remember(key, load_diabetes(as_frame=True).frame)
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
            uses.append((f"outputs.{name}.target", out.target[0], "target"))
        else:
            uses += [(f"outputs.{name}.target[{j}]", col, "target") for j, col in enumerate(out.target)]
    checked: dict[tuple[str, str], str | None] = {}
    for path, col, kind in uses:
        if (col, kind) not in checked:
            checked[col, kind] = _column_problem(frame, col, available, is_csv, kind)
        if checked[col, kind] is not None:
            problems.append(Problem(path, f"{checked[col, kind]}{where}"))
    return problems


def _column_problem(frame: pd.DataFrame, col: str, available: list[str], is_csv: bool, kind: str) -> str | None:
    import pandas as pd

    if col not in frame.columns:
        hint = did_you_mean(col, available) or f" (available: {', '.join(available)})"
        return f"unknown column {col!r}{hint}"
    series = frame[col]
    if isinstance(series, pd.DataFrame):
        return f"column {col!r} appears more than once"
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


def _arrays(spec: JobSpec, frame: pd.DataFrame) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The whole table as the model's inputs (:func:`model_inputs`) and its targets (float32)."""
    import pandas as pd

    x = model_inputs(spec.inputs, frame)
    table = {c: pd.to_numeric(frame[c]).to_numpy(dtype=np.float32) for out in spec.outputs.values() for c in out.target}
    y = {name: np.stack([table[c] for c in out.target], axis=1) for name, out in spec.outputs.items()}
    return x, y


def _take(arrays: tuple[dict[str, np.ndarray], dict[str, np.ndarray]], rows: np.ndarray | None) -> Split:
    x, y = arrays

    def pick(matrix: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(matrix if rows is None else matrix[rows])

    return Split(x={name: pick(v) for name, v in x.items()}, y={name: pick(v) for name, v in y.items()})
