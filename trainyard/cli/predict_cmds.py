"""``trainyard predict``: a trained model's predictions for a file of raw rows."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click
from rich.console import Console

from trainyard.cli.quiet import quiet_tensorflow


@click.command("predict")
@click.argument("model", metavar="(JOB | MODEL.keras)")
@click.argument("data", metavar="DATA", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write here (.csv or .parquet); default: CSV on stdout.",
)
@click.option(
    "--keep", "keep", multiple=True, metavar="COL", help="Copy this column of DATA to the output (repeatable)."
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON object (rows, columns, out) on stdout; needs --out."
)
def predict_cmd(model: str, data: Path, out: Path | None, keep: tuple[str, ...], as_json: bool) -> None:
    """Predict every row of DATA (a CSV or Parquet file of the raw columns the model trained on).

    MODEL is a job id or a .keras file saved by trainyard. The output holds the --keep columns, then
    one column per output (a binary output: its probability; a category output: the predicted label
    and one <output>_proba_<label> column per label). Extra columns in DATA are ignored; a missing
    one is exit 2, naming it and the columns the model takes.
    """
    from trainyard.errors import DataError, Problem

    if as_json and out is None:
        raise DataError(Problem("--json", "prints a summary of the run: give --out for the predictions"))
    quiet_tensorflow()
    from trainyard.scheduler.prediction import open_predictor, predict_file

    err = Console(stderr=True)
    predictor = open_predictor(Path(model) if _is_file(model) else model)
    started = time.monotonic()
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("predict"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[rows]:,} rows"),
        TimeElapsedColumn(),
        console=err,
        transient=out is None,
        disable=not err.is_terminal,
    ) as progress:
        task = progress.add_task("predict", total=1.0, rows=0)
        run = predict_file(
            predictor,
            data,
            out=out,
            keep=keep,
            stdout=sys.stdout,
            progress=lambda rows, fraction: progress.update(task, completed=fraction, rows=rows),
        )
    seconds = time.monotonic() - started
    if as_json:
        click.echo(
            json.dumps(
                {
                    "model": run.source,
                    "rows": run.rows,
                    "columns": run.columns,
                    "out": run.out,
                    "seconds": round(seconds, 3),
                }
            )
        )
    elif out is not None:
        err.print(f"{run.rows:,} rows predicted by {run.source} written to {out}", highlight=False, soft_wrap=True)


COMMANDS: list[click.Command] = [predict_cmd]


def _is_file(text: str) -> bool:
    """Whether ``text`` names an existing file; a name the OS refuses (too long) names none, so a
    5,000-digit job id is "no job with id ...", not an ``OSError``."""
    try:
        return Path(text).is_file()
    except OSError:
        return False
