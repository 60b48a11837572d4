"""Jobs side by side: the spec fields that differ between them, and their final metrics.

A comparison is built from the jobs' records with their spec documents (one read:
:meth:`Store.jobs_with_specs`) and is pure from there: :func:`flatten` turns a spec document into
``{path: value}`` with the paths of the spec (``training.optimizer.learning_rate``,
``layers[0].units``; a list of plain values such as an input's columns is one value), the fields are
the paths whose values are not the same in every job, and each output contributes two metric
columns, its headline metric (:mod:`trainyard.metrics`) over the validation split and over the test
split of the final model. The best value of each metric column is marked. :func:`render` lays the
table out for a terminal: columns that do not fit its width go into further sections below, each
repeating the job's id and name, so a wide comparison stays readable on 80 columns.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from trainyard import metrics as _metrics
from trainyard.db.records import JobRecord, isoformat
from trainyard.display import format_duration, format_mse
from trainyard.errors import TrainyardError

#: Spec paths never listed as differing fields: the name has its own column.
_NOT_FIELDS = frozenset({"name"})

#: The columns ``--sort`` accepts besides metric columns and fields.
SORT_COLUMNS = ("id", "name", "state", "epochs", "duration")

_MISSING = object()


def flatten(document: Any, prefix: str = "") -> dict[str, Any]:
    """``{path: value}`` of every leaf of a spec document, with the spec's own paths.

    Mappings nest with ``.``, lists of mappings or lists by index (``layers[0].units``); a list of
    plain values (columns, a target list) is one leaf, as is an empty mapping.
    """
    if isinstance(document, Mapping):
        if not document:
            return {prefix: {}} if prefix else {}
        flat: dict[str, Any] = {}
        for key, value in document.items():
            flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    if isinstance(document, list) and any(isinstance(item, (Mapping, list)) for item in document):
        flat = {}
        for index, item in enumerate(document):
            flat.update(flatten(item, f"{prefix}[{index}]"))
        return flat
    return {prefix: document}


@dataclass(frozen=True)
class MetricColumn:
    """One metric column: ``split`` (``val`` or ``test``) of ``metric`` for ``output``."""

    split: str
    output: str
    metric: str

    @property
    def key(self) -> str:
        """``val.<output>.<metric>``: the column's name in JSON and in ``--sort``."""
        return f"{self.split}.{self.output}.{self.metric}"

    @property
    def label(self) -> str:
        return f"{self.split.upper()} {self.output} {_metrics.metric(self.metric).label}"

    @property
    def higher_is_better(self) -> bool:
        return _metrics.metric(self.metric).higher_is_better


@dataclass(frozen=True)
class Row:
    """One job of a comparison."""

    job: JobRecord
    fields: dict[str, Any]  # the differing fields' values (absent: the job's spec has no such path)
    values: dict[str, float | None]  # by MetricColumn.key

    @property
    def duration(self) -> float | None:
        """Seconds from the (last) start to the end; None while not finished."""
        if self.job.started_at is None or self.job.finished_at is None:
            return None
        return max(0.0, (self.job.finished_at - self.job.started_at).total_seconds())


@dataclass(frozen=True)
class Comparison:
    """Jobs side by side: ``fields`` (the paths that differ), ``columns`` (metrics), one row per job
    and the best job of each metric column (``best``: key -> job id; absent when no value)."""

    fields: list[str]
    columns: list[MetricColumn]
    rows: list[Row]
    best: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The comparison as ``trainyard compare --json`` prints it."""
        return {
            "fields": list(self.fields),
            "columns": [
                {
                    "key": c.key,
                    "split": c.split,
                    "output": c.output,
                    "metric": c.metric,
                    "higher_is_better": c.higher_is_better,
                    "best_job": self.best.get(c.key),
                }
                for c in self.columns
            ],
            "jobs": [
                {
                    "id": row.job.id,
                    "name": row.job.name,
                    "state": row.job.state.value,
                    "tags": list(row.job.tags),
                    "epochs_done": row.job.epochs_done,
                    "epochs_total": row.job.epochs_total,
                    "duration_seconds": _rounded(row.duration),
                    "finished_at": isoformat(row.job.finished_at),
                    "fields": {path: row.fields.get(path) for path in self.fields},
                    "metrics": {c.key: _metrics.finite(row.values.get(c.key)) for c in self.columns},
                    "best": [c.key for c in self.columns if self.best.get(c.key) == row.job.id],
                }
                for row in self.rows
            ],
        }


def compare(jobs: Sequence[JobRecord], sort: str | None = None) -> Comparison:
    """The comparison of ``jobs`` (records with their spec documents), in the order given or sorted
    by ``sort`` (:func:`sort_key`'s names; metrics best first, missing values last)."""
    flats = [flatten(job.spec_document or {}) for job in jobs]
    paths = _merged_paths(flats)
    fields = [
        path
        for path in paths
        if path not in _NOT_FIELDS and len({_hashable(flat.get(path, _MISSING)) for flat in flats}) > 1
    ]
    columns = _metric_columns(jobs)
    rows = [
        Row(
            job=job,
            fields={path: flat[path] for path in fields if path in flat},
            values={column.key: _value(job, column) for column in columns},
        )
        for job, flat in zip(jobs, flats)
    ]
    best: dict[str, int] = {}
    for column in columns:
        chosen = _metrics.best({row.job.id: row.values[column.key] for row in rows}, column.metric)
        if chosen is not None:
            best[column.key] = chosen
    comparison = Comparison(fields=fields, columns=columns, rows=rows, best=best)
    if sort is not None:
        comparison = Comparison(fields, columns, sorted_rows(comparison, sort), best)
    return comparison


def _merged_paths(flats: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every path of the documents in document order: a path only some have comes right after the
    path before it in the first document that has it (``layers[2].units`` after ``layers[1]``'s)."""
    merged: list[str] = []
    known: set[str] = set()
    for flat in flats:
        if known.issuperset(flat):
            continue
        previous: str | None = None
        for path in flat:
            if path not in known:
                at = merged.index(previous) + 1 if previous is not None else 0
                merged.insert(at, path)
                known.add(path)
            previous = path
    return merged


def sort_choices(comparison: Comparison) -> list[str]:
    """Every name ``--sort`` accepts for this comparison."""
    return [*(c.key for c in comparison.columns), *SORT_COLUMNS, *comparison.fields]


def sorted_rows(comparison: Comparison, name: str) -> list[Row]:
    """The rows sorted by ``name``: a metric column's key (``val.y.mse``; also ``val.mse``, ``mse``,
    ``val`` and ``test`` for the first output's), ``id``, ``name``, ``state``, ``epochs``,
    ``duration`` or a field's path. Metrics sort best first, missing values last."""
    column = _find_column(comparison.columns, name)
    rows = list(comparison.rows)
    if column is not None:
        sign = -1.0 if column.higher_is_better else 1.0

        def metric_key(row: Row) -> tuple[bool, float, int]:
            value = row.values.get(column.key)
            missing = value is None or not math.isfinite(value)
            return (missing, 0.0 if missing else sign * float(value), row.job.id)  # type: ignore[arg-type]

        return sorted(rows, key=metric_key)
    if name in SORT_COLUMNS:
        simple = {
            "id": lambda row: (False, row.job.id),
            "name": lambda row: (False, row.job.name),
            "state": lambda row: (False, row.job.state.value),
            "epochs": lambda row: (False, row.job.epochs_done),
            "duration": lambda row: (row.duration is None, row.duration or 0.0),
        }[name]
        return sorted(rows, key=lambda row: (*simple(row), row.job.id))
    if name in comparison.fields:

        def field_key(row: Row) -> tuple[int, Any, str, int]:
            value = row.fields.get(name, _MISSING)
            if value is _MISSING or value is None:
                return (2, 0, "", row.job.id)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return (0, value, "", row.job.id)
            return (1, 0, str(value), row.job.id)

        return sorted(rows, key=field_key)
    choices = ", ".join(sort_choices(comparison)) or "id"
    raise TrainyardError(f"--sort: no column {name!r} in this comparison; expected one of {choices}")


def _find_column(columns: Sequence[MetricColumn], name: str) -> MetricColumn | None:
    for column in columns:
        if name == column.key:
            return column
    split, _, rest = name.partition(".")
    if split in ("val", "test"):
        candidates = [c for c in columns if c.split == split]
        if not rest:
            return candidates[0] if candidates else None
        return next((c for c in candidates if c.metric == rest or c.output == rest), None)
    if name.startswith(("val_", "test_")):
        split, _, metric = name.partition("_")
        return next((c for c in columns if c.split == split and c.metric == metric), None)
    return next((c for c in columns if c.split == "val" and c.metric == name), None)


def _metric_columns(jobs: Iterable[JobRecord]) -> list[MetricColumn]:
    """Per output (in first-seen order), its headline metric over the validation and the test split."""
    outputs: dict[str, str] = {}
    for job in jobs:
        names = list((job.spec_document or {}).get("outputs") or {}) or job.output_names
        for name in [*names, *job.output_names]:
            if name not in outputs:
                outputs[name] = _metrics.headline(_metrics.output_type(job.spec_document, name))
    return [MetricColumn(split, output, metric) for output, metric in outputs.items() for split in ("val", "test")]


def _value(job: JobRecord, column: MetricColumn) -> float | None:
    found = (job.val_metrics if column.split == "val" else job.test_metrics).get(column.output) or {}
    value = found.get(column.metric)
    if value is None and column.metric == "mse":
        value = (job.val_mse if column.split == "val" else job.test_mse).get(column.output)
    return _metrics.finite(value)


def _rounded(value: float | None) -> float | None:
    return round(value, 3) if value is not None else None


def _hashable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), _hashable(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, float) and value.is_integer():
        return value  # 1.0 and 1 compare equal, as they should
    return value


# ---------------------------------------------------------------- the terminal view


def format_value(value: Any) -> str:
    """A field's value in a cell: plain values as YAML would show them, lists joined."""
    if value is _MISSING:
        return "–"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {format_value(v)}" for k, v in value.items()) + "}"
    return str(value)


Cell = tuple[str, str | None]  # (text, Rich style)


def cells(comparison: Comparison) -> tuple[list[str], list[list[Cell]], list[bool]]:
    """``(headers, rows of (text, style) cells, right-aligned per column)`` of the comparison."""
    from trainyard.display import STATE_STYLE

    headers = ["ID", "NAME", "STATE", "EPOCHS", "TIME", *(c.label for c in comparison.columns), *comparison.fields]
    numeric = [
        all(isinstance(row.fields.get(path), (int, float)) for row in comparison.rows if path in row.fields)
        for path in comparison.fields
    ]
    right = [True, False, False, True, True, *([True] * len(comparison.columns)), *numeric]
    table: list[list[Cell]] = []
    marked = len(comparison.rows) > 1
    for row in comparison.rows:
        job = row.job
        line: list[Cell] = [
            (str(job.id), None),
            (job.name, None),
            (job.state.value, STATE_STYLE[job.state]),
            (f"{job.epochs_done}/{job.epochs_total}", None),
            (format_duration(row.duration), None),
        ]
        for column in comparison.columns:
            text = format_mse(row.values.get(column.key))
            if marked and comparison.best.get(column.key) == job.id:
                line.append((f"*{text}", "bold green"))
            else:
                line.append((text, None))
        line.extend((format_value(row.fields.get(path, _MISSING)), None) for path in comparison.fields)
        table.append(line)
    return headers, table, right


#: Spaces between two columns of the terminal view.
GAP = 2


def render(comparison: Comparison, width: int) -> list[Any]:
    """The comparison as Rich texts for a terminal ``width`` columns wide, one per section: ID and
    NAME, then as many other columns as fit; the columns left over go into further sections below,
    each again with ID and NAME, so nothing is squeezed into an unreadable sliver. A cell wider than
    half the terminal is cut with ``…``. Best values: ``*``, bold green."""
    from rich.text import Text

    headers, rows, right = cells(comparison)
    limit = max(12, width // 2)
    widths = [min(max([len(headers[i]), *(len(r[i][0]) for r in rows)]), limit) for i in range(len(headers))]
    widths[1] = min(widths[1], 24)
    fixed = [0, 1]
    base = sum(widths[i] for i in fixed) + GAP * (len(fixed) - 1)
    sections: list[list[int]] = [[]]
    used = base
    for index in range(len(fixed), len(headers)):
        need = GAP + widths[index]
        if sections[-1] and used + need > width:
            sections.append([])
            used = base
        sections[-1].append(index)
        used += need

    def cell(text: str, index: int) -> str:
        size = widths[index]
        if len(text) > size:
            text = text[: size - 1] + "…"
        return text.rjust(size) if right[index] else text.ljust(size)

    texts = []
    for section in sections:
        columns = [*fixed, *section]
        lines = [Text((" " * GAP).join(cell(headers[i], i) for i in columns).rstrip(), style="bold")]
        for row in rows:
            line = Text()
            for n, index in enumerate(columns):
                if n:
                    line.append(" " * GAP)
                text, style = row[index]
                line.append(cell(text, index), style=style)
            line.rstrip()
            lines.append(line)
        out = Text("\n", no_wrap=True, overflow="crop").join(lines)
        out.no_wrap, out.overflow = True, "crop"
        texts.append(out)
    return texts
