"""``trainyard compare | export | delete``: what people do with finished jobs.

``--json`` prints machine-readable JSON on stdout and nothing else there; messages go to stderr.
"""

from __future__ import annotations

import contextlib
import gc
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from trainyard.db.records import JobState


@contextlib.contextmanager
def _out_of_the_collectors_way() -> Iterator[None]:
    """While a results command runs, keep what the process held before it (imported modules, click's
    objects) out of the garbage collector's reach: a full collection walks every tracked object, so
    otherwise each of the few full collections a command of 1,000 jobs triggers walks the whole
    imported heap again (measured: ``benchmarks/results_commands.py``). Given back at the end, for
    a program that runs the command in its own process."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _select(job_ids: tuple[str, ...], tag: str | None, sweep: str | None = None) -> list[Any]:
    """The jobs named by id, with ``tag`` or of ``sweep`` (with their specs), in that order."""
    from trainyard.results.select import select_jobs
    from trainyard.scheduler import operations

    return select_jobs(operations.open_store(), job_ids, tag=tag, sweep=sweep)


@click.command()
@click.argument("job_ids", nargs=-1, metavar="JOB...")
@click.option("--tag", help="Compare the jobs with this tag (besides any JOB given).")
@click.option("--sweep", metavar="ID", help="Compare the trials of this sweep (besides any JOB given).")
@click.option(
    "--sort", "sort", metavar="METRIC", help="Sort by a column: val.OUTPUT.METRIC (best first), a field, duration..."
)
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as one JSON object.")
@_out_of_the_collectors_way()
def compare(job_ids: tuple[str, ...], tag: str | None, sweep: str | None, sort: str | None, as_json: bool) -> None:
    """Jobs side by side: the spec fields that differ, state, epochs, duration, and the final
    validation and test headline metric of every output; the best value of each metric is marked *."""
    from rich.console import Console

    from trainyard.results.compare import compare as build

    comparison = build(_select(job_ids, tag, sweep), sort=sort)
    if as_json:
        click.echo(json.dumps(comparison.to_json(), indent=2, allow_nan=False))
        return
    from trainyard.results.compare import render

    console = Console(highlight=False, soft_wrap=False)
    for index, table in enumerate(render(comparison, console.width)):
        if index:
            console.print()
        console.print(table)
    if not comparison.fields and len(comparison.rows) > 1:
        click.echo("the specs of these jobs do not differ", err=True)


@click.command()
@click.argument("job_ids", nargs=-1, metavar="JOB...")
@click.option("--tag", help="Export the jobs with this tag (besides any JOB given).")
@click.option(
    "--tensorboard",
    "tensorboard_dir",
    type=click.Path(file_okay=False, path_type=Path),
    metavar="DIR",
    help="Write TensorBoard event files (one run per job, HParams included) under DIR.",
)
@click.option(
    "--csv",
    "csv_file",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    metavar="FILE",
    help="Write every stored epoch as a tidy CSV (job, epoch, output, metric, value); - for stdout.",
)
@_out_of_the_collectors_way()
def export(job_ids: tuple[str, ...], tag: str | None, tensorboard_dir: Path | None, csv_file: Path | None) -> None:
    """Export the stored epochs of jobs: TensorBoard event files (``tensorboard --logdir DIR``) and/or a CSV."""
    from trainyard.errors import TrainyardError
    from trainyard.results import export as exporting
    from trainyard.scheduler import operations

    if tensorboard_dir is None and csv_file is None:
        raise TrainyardError("say where to: --tensorboard DIR and/or --csv FILE")
    jobs = _select(job_ids, tag)
    store = operations.open_store()
    if tensorboard_dir is not None:
        runs = exporting.write_tensorboard(store, jobs, tensorboard_dir)
        click.echo(
            f"wrote {len(runs)} run(s) under {tensorboard_dir}; view them with: tensorboard --logdir {tensorboard_dir}",
            err=True,
        )
    if csv_file is not None:
        rows = exporting.write_csv(store, jobs, csv_file)
        if str(csv_file) != "-":
            click.echo(f"wrote {rows} row(s) of {len(jobs)} job(s) to {csv_file}", err=True)


@click.command()
@click.argument("job_ids", nargs=-1, metavar="JOB...")
@click.option(
    "--state",
    type=click.Choice([s.value for s in JobState.finished_states()]),
    help="Only jobs that ended in this state.",
)
@click.option(
    "--older-than", "older_than", metavar="AGE", help="Only jobs that ended longer ago than AGE (30d, 12h, 90m)."
)
@click.option("--sweep", metavar="ID", help="Delete this sweep and all its trials (it must not be running).")
@click.option("--dry-run", is_flag=True, help="List what would be deleted and the disk it would free; delete nothing.")
@_out_of_the_collectors_way()
def delete(
    job_ids: tuple[str, ...], state: str | None, older_than: str | None, sweep: str | None, dry_run: bool
) -> None:
    """Delete finished jobs (named, chosen by --state and --older-than, or a whole --sweep) with their
    epochs, models and files.

    A queued or running job is refused (cancel it first), and then nothing is deleted. A trial of a
    running sweep is kept: refused when named, left out by --state and --older-than.
    """
    from trainyard.config import Settings
    from trainyard.display import format_bytes
    from trainyard.errors import TrainyardError
    from trainyard.results import cleanup
    from trainyard.scheduler import operations
    from trainyard.scheduler.sweeps import parse_sweep_id

    settings = Settings.from_env()
    store = operations.open_store(settings)
    doomed = cleanup.choose(store, settings, job_ids, state=state, older_than=older_than, sweep=sweep)
    swept = store.get_sweep(parse_sweep_id(sweep)) if sweep is not None else None
    if not doomed and swept is None:
        click.echo("no job to delete", err=True)
        return
    if dry_run:
        for item in doomed:
            click.echo(f"{item.job.id}\t{item.job.name}\t{item.job.state}\t{format_bytes(item.disk_bytes)}")
        total = sum(item.disk_bytes for item in doomed)
        also = f" and sweep {swept.id} ({swept.name})" if swept is not None else ""
        click.echo(
            f"would delete {len(doomed)} job(s){also} and free {format_bytes(total)} (dry run: nothing deleted)",
            err=True,
        )
        return
    deleted, kept = cleanup.delete(store, settings, doomed)
    for item in deleted:
        click.echo(f"{item.job.id}\t{item.job.name}\tdeleted\t{format_bytes(item.disk_bytes)}")
    for job_id in kept:
        click.echo(f"job {job_id} was not deleted: it was queued again, or its sweep runs again, meanwhile", err=True)
    total = sum(item.disk_bytes for item in deleted)
    click.echo(f"deleted {len(deleted)} job(s), freed {format_bytes(total)}", err=True)
    if swept is not None:
        if store.delete_sweep(swept.id):
            click.echo(f"deleted sweep {swept.id} ({swept.name})", err=True)
        else:
            raise TrainyardError(
                f"sweep {swept.id} ({swept.name}) was not deleted: it runs again or has new trials; nothing more deleted"
            )


COMMANDS: list[click.Command] = [compare, export, delete]
