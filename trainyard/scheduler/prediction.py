"""Predictions of a trained model on raw rows: ``trainyard.predict`` and ``trainyard predict``.

A model is named by its job (the store gives its spec and its file) or by its ``.keras`` file
(trainyard records the inputs' columns and the outputs' labels inside it). Rows are the raw columns
the spec trained on (extra columns ignored, the target not needed), turned into the model's inputs
by :func:`trainyard.specs.model_inputs`, as in training. The predictions are one column per
regression output (``<output>``; ``<output>_<target>`` for an output of several targets), the
probability of the positive class for a binary output, and for a category output the predicted
label (``<output>``) followed by one ``<output>_proba_<label>`` column per label.

Files are streamed in chunks of ``defaults.PREDICT_CHUNK_ROWS`` rows: memory is bounded by the chunk,
not the file. Models are loaded in Keras' safe mode.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from trainyard import defaults
from trainyard.config import Settings
from trainyard.errors import DataError, Problem, TrainyardError

if TYPE_CHECKING:
    import keras
    import pandas as pd

    from trainyard.specs.schema import InputSpec


#: The suffixes ``predict`` reads and writes.
_CSV = (".csv",)
_PARQUET = (".parquet", ".pq")


class PredictionError(TrainyardError):
    """A model cannot be used for predictions: no such job or file, a job without a model, a file
    that is not a trainyard model, one that safe mode refuses to load."""


@dataclass(frozen=True)
class OutputColumns:
    """How one output of the model becomes prediction columns."""

    name: str
    type: str = "regression"
    labels: tuple[Any, ...] = ()
    target: tuple[str, ...] = ()

    def columns(self, units: int) -> list[str]:
        if self.type == "category":
            return [self.name] + [f"{self.name}_proba_{label}" for label in self.labels]
        if self.type == "binary" or units == 1:
            return [self.name]
        names = self.target if len(self.target) == units else tuple(str(i) for i in range(units))
        return [f"{self.name}_{t}" for t in names]


@dataclass
class Predictor:
    """A loaded model with what it takes (its inputs' columns) and what it gives (its outputs' columns)."""

    model: keras.Model
    inputs: dict[str, InputSpec]
    outputs: list[OutputColumns]
    source: str
    csv_options: dict[str, Any] = field(default_factory=dict)
    _call: Any = None

    @property
    def columns(self) -> list[str]:
        """The raw columns the model reads, in first-use order."""
        return list(dict.fromkeys(c for inp in self.inputs.values() for c in inp.columns))

    def predict(self, frame: pd.DataFrame, *, first_line: int | None = None) -> pd.DataFrame:
        """The prediction columns for a DataFrame of raw rows (same index)."""
        import numpy as np
        import pandas as pd

        from trainyard.specs import model_inputs

        x = model_inputs(self.inputs, frame, first_line=first_line)
        raw = (
            self._run(x)
            if len(frame)
            else {o.name: np.zeros((0, self._units(o.name)), np.float32) for o in self.outputs}
        )
        out: dict[str, Any] = {}
        for output in self.outputs:
            values = np.asarray(raw[output.name])
            values = values.reshape(len(frame), -1)
            names = output.columns(values.shape[1])
            if output.type == "category":
                labels = np.asarray(output.labels, dtype=object)
                out[names[0]] = labels[values.argmax(axis=1)] if len(frame) else labels[:0]
                for j, name in enumerate(names[1:]):
                    out[name] = values[:, j]
            else:
                for j, name in enumerate(names):
                    out[name] = values[:, j]
        return pd.DataFrame(out, index=frame.index)

    def _units(self, name: str) -> int:
        return int(self.model.get_layer(name).output.shape[-1])

    def _run(self, x: dict[str, Any]) -> dict[str, Any]:
        import tensorflow as tf

        if self._call is None:
            model = self.model
            # one trace for every chunk size (the last chunk is shorter)
            self._call = tf.function(lambda inputs: model(inputs, training=False), reduce_retracing=True)
        tensors = {
            name: tf.constant(v, dtype=tf.string) if v.dtype == object else tf.constant(v) for name, v in x.items()
        }
        result = self._call(tensors)
        if not isinstance(result, Mapping):
            names = [o.name for o in self.outputs]
            result = dict(zip(names, result if isinstance(result, (list, tuple)) else [result]))
        return {name: value.numpy() for name, value in result.items()}


# -- opening a model -------------------------------------------------------------------------------


def open_predictor(job_or_path: int | str | os.PathLike[str], *, settings: Settings | None = None) -> Predictor:
    """The model of a job (an id) or of a ``.keras`` file, ready to predict; raises PredictionError."""
    from trainyard.specs import spec_from_document

    if isinstance(job_or_path, os.PathLike) or (
        isinstance(job_or_path, str) and (job_or_path.endswith(".keras") or os.sep in job_or_path)
    ):
        path = Path(job_or_path)
        info = _read_record(path)
        if info is None or not isinstance(info.get("inputs"), Mapping):
            raise PredictionError(
                f"{str(path)!r} does not record the columns its inputs take (a model saved by another tool,"
                " or by an older trainyard): predict with its job id instead"
            )
        inputs = _inputs_of(info["inputs"], str(path))
        return _predictor(path, inputs, info, str(path))

    from trainyard.scheduler.operations import open_store, parse_job_id

    job = open_store(settings).get_job(parse_job_id(job_or_path))
    if not job.model_path:
        raise PredictionError(f"job {job.id} is {job.state}: it has no model yet")
    spec = spec_from_document(job.spec_document or {})
    info = _read_record(Path(job.model_path)) or {}
    options = spec.data.csv.read_options() if spec.data.csv is not None else {}
    info = {**info, "csv": info.get("csv", options)}
    targets = {name: out.target for name, out in spec.outputs.items()}
    return _predictor(Path(job.model_path), dict(spec.inputs), info, f"job {job.id}", targets)


def _predictor(
    path: Path,
    inputs: dict[str, InputSpec],
    info: Mapping[str, Any],
    source: str,
    targets: Mapping[str, Sequence[str]] | None = None,
) -> Predictor:
    import keras

    from trainyard.specs.limits import Limits, recursion_room

    if not path.is_file():
        raise PredictionError(f"{source}: model file not found: {str(path)!r}")
    recursion_room(Limits.from_env().max_depth)  # Keras loads a model by recursing over its graph
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # noqa: BLE001 - Keras raises ValueError/TypeError/OSError for files it refuses
        text = " ".join(str(exc).split())[:300]
        raise PredictionError(f"{source}: cannot load {str(path)!r} (in safe mode): {text}") from None
    recorded = info.get("outputs") if isinstance(info.get("outputs"), Mapping) else {}
    # the spec's order (the job's spec, or as recorded), then any other output of the model
    order = [n for n in [*(targets or {}), *recorded] if n in model.output_names]
    outputs = []
    for name in dict.fromkeys([*order, *model.output_names]):
        entry = recorded.get(name) if isinstance(recorded.get(name), Mapping) else {}
        target = tuple(entry.get("target") or (targets or {}).get(name) or ())
        outputs.append(
            OutputColumns(
                name=name,
                type=str(entry.get("type", "regression")),
                labels=tuple(entry.get("labels") or ()),
                target=target,
            )
        )
    csv_options = info.get("csv") if isinstance(info.get("csv"), Mapping) else {}
    return Predictor(model=model, inputs=inputs, outputs=outputs, source=source, csv_options=dict(csv_options))


def _inputs_of(doc: Mapping[str, Any], source: str) -> dict[str, InputSpec]:
    from pydantic import ValidationError

    from trainyard.specs.schema import InputSpec

    try:
        return {str(name): InputSpec.model_validate(value) for name, value in doc.items()}
    except ValidationError:
        raise PredictionError(f"{source}: its recorded inputs are not readable by this trainyard") from None


def _read_record(path: Path) -> dict[str, Any] | None:
    """The raw ``trainyard.json`` of a ``.keras`` file (:class:`~trainyard.specs.targets.ModelInfo`'s
    ``inputs``, ``outputs``, ``csv``), None without it; unlike ``read_model_info`` it tells a missing
    file and a file that is no archive apart."""
    from trainyard.specs.targets import MODEL_INFO_ENTRY  # the specs (and NumPy) load when a model is read

    try:
        with zipfile.ZipFile(path) as archive:
            if MODEL_INFO_ENTRY not in archive.namelist():
                return None
            doc = json.loads(archive.read(MODEL_INFO_ENTRY))
    except FileNotFoundError:
        raise PredictionError(f"model file not found: {str(path)!r}") from None
    except (OSError, zipfile.BadZipFile, ValueError):
        raise PredictionError(f"{str(path)!r} is not a .keras model file") from None
    return doc if isinstance(doc, dict) else None


# -- the Python API --------------------------------------------------------------------------------


def predict(
    job_or_path: int | str | os.PathLike[str], frame: pd.DataFrame, *, settings: Settings | None = None
) -> pd.DataFrame:
    """Predictions for a DataFrame of raw rows: the model of a job (an id) or of a ``.keras`` file.

    Returns a DataFrame with the same index and one or more columns per output (see the module
    docstring). Raises :class:`~trainyard.errors.DataError` for a missing input column or a value
    an input cannot take, :class:`PredictionError` when there is no usable model.
    """
    return open_predictor(job_or_path, settings=settings).predict(frame, first_line=None)


# -- files -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PredictionRun:
    """What :func:`predict_file` did: rows predicted, the columns written and where."""

    rows: int
    columns: list[str]
    out: str | None
    source: str


def predict_file(
    predictor: Predictor,
    data: Path,
    *,
    out: Path | None = None,
    keep: Sequence[str] = (),
    chunk_rows: int = defaults.PREDICT_CHUNK_ROWS,
    stdout: TextIO | None = None,
    progress: Callable[[int, float], None] | None = None,
) -> PredictionRun:
    """Predict every row of a CSV or Parquet file, ``chunk_rows`` at a time.

    Writes the ``keep`` columns then the prediction columns to ``out`` (CSV or Parquet by its suffix;
    written to a temporary file renamed into place at the end, so a failure leaves no half-written
    file) or, without ``out``, as CSV to ``stdout``. ``progress(rows, fraction)`` hears every chunk.
    """
    suffix = data.suffix.lower()
    if suffix not in _CSV + _PARQUET:
        raise DataError(Problem("DATA", f"expected a .csv or .parquet file, received {str(data)!r}"))
    if out is not None and out.suffix.lower() not in _CSV + _PARQUET:
        raise DataError(Problem("--out", f"expected a file ending in .csv or .parquet, received {str(out)!r}"))
    if not data.is_file():
        raise DataError(Problem("DATA", f"file not found: {str(data)!r}"))
    header = _header(data, predictor.csv_options)
    wanted = predictor.columns
    absent = [c for c in wanted if c not in header]
    if absent:
        raise DataError(
            Problem(
                str(data),
                f"missing column{'s' if len(absent) > 1 else ''} {', '.join(map(repr, absent))}"
                f" (the model takes: {', '.join(wanted)})",
            )
        )
    missing_keep = [c for c in keep if c not in header]
    if missing_keep:
        raise DataError(Problem("--keep", f"no column {', '.join(map(repr, missing_keep))} in {str(data)!r}"))
    read = list(dict.fromkeys([*keep, *wanted]))

    rows = 0
    columns: list[str] = []
    with _writer(out, stdout) as write:
        for chunk, fraction in _chunks(data, read, chunk_rows, predictor.csv_options):
            predicted = predictor.predict(chunk, first_line=rows + 2 if suffix in _CSV else None)
            if keep:
                import pandas as pd

                kept = chunk[list(keep)]
                clash = [c for c in predicted.columns if c in kept.columns]
                predicted = pd.concat([kept, predicted.drop(columns=clash)], axis=1)
            if not columns:
                columns = list(predicted.columns)
            write(predicted)
            rows += len(chunk)
            if progress is not None:
                progress(rows, fraction)
    return PredictionRun(rows=rows, columns=columns, out=str(out) if out else None, source=predictor.source)


def _header(data: Path, csv_options: Mapping[str, Any]) -> list[str]:
    import pandas as pd

    try:
        if data.suffix.lower() in _CSV:
            return [str(c) for c in pd.read_csv(data, nrows=0, skipinitialspace=True, **csv_options).columns]
        import pyarrow.parquet as pq

        return list(pq.ParquetFile(data).schema_arrow.names)
    except pd.errors.EmptyDataError:
        raise DataError(Problem(str(data), "the file is empty (not even a header line)")) from None
    except Exception as exc:  # noqa: BLE001 - pandas/pyarrow raise many kinds; all mean "unreadable"
        raise DataError(Problem(str(data), f"cannot read it: {str(exc).strip().splitlines()[0][:200]}")) from None


def _chunks(
    data: Path, columns: list[str], chunk_rows: int, csv_options: Mapping[str, Any]
) -> Iterator[tuple[pd.DataFrame, float]]:
    """``(rows, fraction of the file read)`` chunk after chunk."""
    import pandas as pd

    if data.suffix.lower() in _CSV:
        size = max(data.stat().st_size, 1)
        with open(data, "rb") as fh:
            reader = pd.read_csv(fh, usecols=columns, chunksize=chunk_rows, skipinitialspace=True, **csv_options)  # type: ignore[call-overload]
            try:
                for chunk in reader:
                    yield chunk, min(fh.tell() / size, 1.0)
            except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
                raise DataError(
                    Problem(str(data), f"cannot read it: {str(exc).strip().splitlines()[0][:200]}")
                ) from None
        return
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(data)
    total = max(parquet.metadata.num_rows, 1)
    done = 0
    for batch in parquet.iter_batches(batch_size=chunk_rows, columns=columns):
        frame = batch.to_pandas()
        frame.index = range(done, done + len(frame))
        done += len(frame)
        yield frame, done / total


@contextlib.contextmanager
def _writer(out: Path | None, stdout: TextIO | None) -> Iterator[Callable[[pd.DataFrame], None]]:
    """A function writing chunk after chunk (the header once); to a temporary file renamed over ``out``."""
    if out is None:
        stream = stdout or sys.stdout
        first = [True]

        def to_stdout(frame: pd.DataFrame) -> None:
            frame.to_csv(stream, index=False, header=first[0])
            first[0] = False

        yield to_stdout
        return

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    parquet = out.suffix.lower() in _PARQUET
    state: dict[str, Any] = {}
    try:
        if parquet:
            import pyarrow as pa
            import pyarrow.parquet as pq

            def to_parquet(frame: pd.DataFrame) -> None:
                table = pa.Table.from_pandas(frame, preserve_index=False)
                if "writer" not in state:
                    state["writer"] = pq.ParquetWriter(tmp, table.schema)
                state["writer"].write_table(table.cast(state["writer"].schema))

            yield to_parquet
            if "writer" in state:
                state["writer"].close()
            else:
                import pandas as pd

                pd.DataFrame().to_parquet(tmp)
        else:
            with open(tmp, "w", newline="") as fh:

                def to_csv(frame: pd.DataFrame) -> None:
                    frame.to_csv(fh, index=False, header="started" not in state)
                    state["started"] = True

                yield to_csv
        os.replace(tmp, out)
    except BaseException:
        if "writer" in state:
            with contextlib.suppress(Exception):
                state["writer"].close()
        tmp.unlink(missing_ok=True)
        raise
