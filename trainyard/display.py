"""How trainyard shows job states and metrics on a terminal, the same in every command and the dashboard."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from rich.text import Text

from trainyard import metrics
from trainyard.db.records import JobState

#: Rich style of each job state.
STATE_STYLE = {
    JobState.QUEUED: "yellow",
    JobState.RUNNING: "cyan",
    JobState.SUCCEEDED: "green",
    JobState.FAILED: "red",
    JobState.CANCELLED: "magenta",
    JobState.PRUNED: "blue",
}


def styled_state(state: JobState) -> str:
    """The state as Rich markup: ``[green]succeeded[/]``."""
    return f"[{STATE_STYLE[state]}]{state.value}[/]"


def format_mse(value: float | None) -> str:
    """An MSE for people: 4 significant digits, whole numbers from 1,000 to 10 million (where an
    exponent is harder to read), ``–`` when unknown, ``nan``/``inf`` as is."""
    if value is None:
        return "–"
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if 1e3 <= abs(value) < 1e7:
        return f"{value:.0f}"
    return f"{value:.4g}"


def format_metric(value: float | None) -> str:
    """Any reported metric, written as :func:`format_mse` writes an MSE."""
    return format_mse(value)


def headline_name(values: Mapping[str, float | None], kind: str | None = None) -> str | None:
    """The headline metric among one output's ``{metric: value}``: its type's when ``kind`` is known,
    else ``mse`` or ``log_loss`` (whichever it reports), else the first."""
    for name in ((metrics.headline(kind),) if kind else ()) + ("mse", "log_loss"):
        if name in values:
            return name
    return next(iter(values), None)


def headline_text(values: Mapping[str, float | None], kind: str | None = None) -> str:
    """One output's headline metric, named: ``MSE 2915``, ``log loss 0.3127``; ``–`` with none."""
    name = headline_name(values, kind)
    if name is None:
        return "–"
    return f"{metrics.metric(name).label} {format_metric(values[name])}"


def headline_cell(name: str, value: float | None) -> str:
    """A value of the metric ``name`` in a column of headline metrics: an MSE as a bare number (the
    column says MSE), any other metric named (``log loss 0.0841``)."""
    if name == "mse" or value is None:
        return format_mse(value)
    return f"{metrics.metric(name).label} {format_metric(value)}"


def final_cell(values: Mapping[str, float | None] | None, mse: float | None = None) -> str:
    """One output's final headline metric from its ``{metric: value}`` (``mse``: its stored MSE, which
    jobs of older trainyard versions carry alone)."""
    values = values or {}
    name = headline_name(values)
    if name is None or name == "mse":
        return format_mse(mse if mse is not None else values.get("mse"))
    return headline_cell(name, values.get(name))


def only_mse(jobs: Iterable[Any]) -> bool:
    """True when every output of ``jobs`` (records with ``val_metrics``) has the MSE as its headline."""
    return all(
        (headline_name(job.val_metrics.get(name) or {}) or "mse") == "mse" for job in jobs for name in job.output_names
    )


def format_headlines(outputs: Mapping[str, Mapping[str, float | None]]) -> str:
    """``{"value": {"mse": 2915.3, ...}, "flag": {"log_loss": 0.31, ...}}`` -> ``value MSE 2915, flag log loss 0.31``."""
    return ", ".join(f"{name} {headline_text(values)}" for name, values in outputs.items() if values)


def format_metrics(values: Mapping[str, float | None]) -> str:
    """Every metric of one output: ``MSE 2915, MAE 41.2``."""
    return ", ".join(f"{metrics.metric(name).label} {format_metric(value)}" for name, value in values.items())


def stopped_text(stopped_epoch: int | None, best_epoch: int | None) -> str | None:
    """``stopped early at epoch 37, best epoch 27`` (or the parts known); None for a run that did neither."""
    parts = []
    if stopped_epoch is not None:
        parts.append(f"stopped early at epoch {stopped_epoch}")
    if best_epoch is not None:
        parts.append(f"best epoch {best_epoch}")
    return ", ".join(parts) or None


def format_mse_map(values: Mapping[str, float | None]) -> str:
    """``{"output_1": 17577.2, "output_2": 0.1234}`` -> ``output_1=17577, output_2=0.1234``."""
    return ", ".join(f"{name}={format_mse(value)}" for name, value in values.items())


def format_duration(seconds: float | None) -> str:
    """``42s``, ``3m05s``, ``2h07m``, ``3d04h``; ``–`` when unknown."""
    if seconds is None:
        return "–"
    total = max(0, int(round(seconds)))
    if total < 60:
        return f"{total}s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def progress_bar(done: int, total: int, width: int) -> Text:
    """``━━━━━━────`` : ``done`` of ``total`` as a bar of ``width`` cells (plain text, so logs show it too)."""
    total = max(total, 1)
    filled = round(width * min(max(done, 0), total) / total)
    bar = Text("━" * filled, style="cyan")
    bar.append("─" * (width - filled), style="dim")
    return bar


def format_bytes(size: int | None) -> str:
    """``0 B``, ``812 B``, ``14.2 KiB``, ``3.1 MiB``, ``1.20 GiB``; ``–`` when unknown."""
    if size is None:
        return "–"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            break
        value /= 1024
    if unit == "B":
        return f"{int(value)} B"
    return f"{value:.3g} {unit}" if value < 100 else f"{value:.0f} {unit}"


def format_params(params: Mapping[str, object] | None) -> str:
    """A trial's parameters on one line: ``layers[0].units=16, training.batch_size=32``."""
    return ", ".join(f"{path}={value}" for path, value in (params or {}).items())
