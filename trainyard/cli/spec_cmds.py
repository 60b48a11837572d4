"""``trainyard validate`` and ``trainyard train``: check specs and train them in this process."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from trainyard.cli.quiet import quiet_tensorflow
from trainyard.display import format_metric, headline_text
from trainyard.errors import SpecError
from trainyard.metrics import metric
from trainyard.training import BaseSink, EpochMetrics


@click.command("validate")
@click.argument("specs", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--set", "overrides", multiple=True, metavar="PATH=VALUE", help="Override a field, e.g. training.epochs=5."
)
def validate_cmd(specs: tuple[Path, ...], overrides: tuple[str, ...]) -> None:
    """Check SPEC files (schema, layer graph, data, Keras shapes) and print each model's layers.

    Exits 0 when every spec is valid; otherwise prints every problem of every file and exits 2.
    """
    quiet_tensorflow()
    from trainyard.specs import input_stats, load_spec, validate_spec

    out = Console()
    err = Console(stderr=True)
    failed = 0
    for path in specs:
        try:
            spec = load_spec(path, overrides=overrides)
            summary = validate_spec(spec)
            stats = input_stats(spec)
        except SpecError as exc:
            failed += 1
            count = len(exc.problems)
            err.print(
                f"[bold red]{path}[/]: {count} problem{'s' if count != 1 else ''}", highlight=False, soft_wrap=True
            )
            for problem in exc.problems:
                err.print(f"  {problem}", highlight=False, markup=False, soft_wrap=True)
            continue
        table = Table(title=f"{path}: {summary.name}", title_justify="left")
        table.add_column("layer")
        table.add_column("type")
        table.add_column("output shape")
        table.add_column("params", justify="right")
        table.add_column("input")
        for layer in summary.layers:
            shape = "(" + ", ".join("None" if d is None else str(d) for d in layer.output_shape) + ")"
            table.add_row(layer.name, layer.type, shape, f"{layer.params:,}", ", ".join(layer.inputs))
        out.print(table)
        out.print(
            f"total params: {summary.total_params:,} (trainable {summary.trainable_params:,},"
            f" non-trainable {summary.non_trainable_params:,})",
            highlight=False,
        )
        columns = Table(
            title="inputs: what each column becomes (learned from the training split)", title_justify="left"
        )
        for heading in ("input", "column", "type", "becomes"):
            columns.add_column(heading, overflow="fold")
        for name, fitted in stats.items():
            for i, (column, kind, becomes) in enumerate(fitted.describe()):
                columns.add_row(name if i == 0 else "", column, kind, becomes)
        out.print(columns)
    if failed:
        sys.exit(2)


@click.command("train")
@click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON object (val_metrics, test_metrics, val_mse, test_mse, epochs, model_path) on stdout.",
)
@click.option(
    "--set", "overrides", multiple=True, metavar="PATH=VALUE", help="Override a field, e.g. training.epochs=5."
)
@click.option(
    "--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), help="Where to save the .keras model."
)
def train_cmd(spec_path: Path, as_json: bool, overrides: tuple[str, ...], out_path: Path | None) -> None:
    """Train SPEC in this process, with a progress bar per epoch, and save the model.

    Prints the final validation and test metrics of every output; the model goes to --out, or by
    default to $TRAINYARD_ARTIFACT_ROOT/local/<name>-<timestamp>.keras.
    """
    quiet_tensorflow()
    from trainyard.config import Settings
    from trainyard.specs import load_spec
    from trainyard.training import train

    spec = load_spec(spec_path, overrides=overrides)
    if out_path is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        out_path = Settings.from_env().artifact_root / "local" / f"{spec.name}-{stamp}.keras"

    err = Console(stderr=True)
    kinds = {name: out.type for name, out in spec.outputs.items()}
    with _Progress(err, spec.training.epochs, kinds) as sink:
        result = train(spec, sink, model_path=out_path)

    if as_json:
        doc: dict[str, Any] = {
            "name": spec.name,
            "val_mse": result.val_mse,
            "test_mse": result.test_mse,
            "val_metrics": result.val_metrics,
            "test_metrics": result.test_metrics,
            "best_epoch": result.best_epoch,
            "stopped_epoch": result.stopped_epoch,
            "outputs": {name: _output_doc(kind, result.labels.get(name)) for name, kind in kinds.items()},
            "epochs": [m.as_dict() for m in result.epochs],
            "model_path": str(result.model_path),
        }
        click.echo(json.dumps(doc))
        return
    out = Console()
    table = Table(title=f"{spec.name}: final metrics", title_justify="left")
    table.add_column("output")
    table.add_column("metric")
    table.add_column("validation", justify="right")
    table.add_column("test", justify="right")
    for name, kind in kinds.items():
        values = result.val_metrics.get(name, {})
        tests = (result.test_metrics or {}).get(name, {})
        label = name if kind == "regression" else f"{name} ({_kind_text(kind, result.labels.get(name))})"
        for i, metric_name in enumerate(values):
            table.add_row(
                label if i == 0 else "",
                metric(metric_name).label,
                format_metric(values[metric_name]),
                format_metric(tests.get(metric_name)),
            )
    out.print(table)
    if result.stopped_epoch is not None and result.stop_reason:
        out.print(result.stop_reason, highlight=False)
    out.print(f"model saved to {result.model_path}", highlight=False, soft_wrap=True)


def _output_doc(kind: str, labels: list[Any] | None) -> dict[str, Any]:
    doc: dict[str, Any] = {"type": kind}
    if labels:
        doc["labels"] = list(labels)
        if kind == "binary":
            doc["positive"] = labels[1]
    return doc


def _kind_text(kind: str, labels: list[Any] | None) -> str:
    """``binary, positive class 'yes'`` / ``category, 3 labels``."""
    if kind == "binary" and labels:
        return f"binary, positive class {labels[1]!r}"
    if kind == "category" and labels:
        return f"category, {len(labels)} labels"
    return kind


class _Progress(BaseSink):
    """A training sink drawing one Rich progress bar per epoch, labelled with each output's headline
    validation metric."""

    def __init__(self, console: Console, epochs: int, outputs: dict[str, str]) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.epochs = epochs
        self.outputs = outputs
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[metrics]}"),
            console=console,
            transient=False,
        )
        self.task: Any = None
        self.task_epoch = 0

    def __enter__(self) -> _Progress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def on_batch(self, epoch: int, step: int, steps: int) -> None:
        if epoch != self.task_epoch:
            self.task_epoch = epoch
            self.task = self.progress.add_task(f"epoch {epoch}/{self.epochs}", total=steps, metrics="")
        self.progress.update(self.task, completed=step)

    def on_epoch(self, metrics: EpochMetrics) -> None:
        text = "  ".join(
            f"{name} val {headline_text(values, self.outputs.get(name, 'regression'))}"
            for name, values in metrics.val_metrics.items()
        )
        if self.task is not None and self.task_epoch == metrics.epoch:
            self.progress.update(self.task, metrics=text)


COMMANDS: list[click.Command] = [validate_cmd, train_cmd]
