"""``trainyard dashboard`` (the live terminal view) and ``trainyard plot`` (training curves as a PNG)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from trainyard import defaults


@click.command()
@click.option("--once", is_flag=True, help="Print a single frame and exit (for scripts and logs).")
@click.option("--json", "as_json", is_flag=True, help="Print the same snapshot as JSON and exit.")
@click.option(
    "--refresh",
    "refresh_seconds",
    type=click.FloatRange(min=0.1),
    default=defaults.DASHBOARD_REFRESH_SECONDS,
    show_default=True,
    metavar="SECONDS",
    help="Seconds between two frames.",
)
@click.option(
    "--recent",
    type=click.IntRange(min=0),
    default=defaults.DASHBOARD_RECENT_JOBS,
    show_default=True,
    help="How many recently finished jobs to show.",
)
@click.option("--tag", help="Only the jobs with this tag (the workers are all shown).")
def dashboard(once: bool, as_json: bool, refresh_seconds: float, recent: int, tag: str | None) -> None:
    """Watch the queue, the workers and every running model's validation MSE, live (Ctrl-C quits).

    The dashboard only reads the store, in short transactions: it never slows workers down, and
    it creates nothing (before the first job is queued it shows an empty store).
    """
    from rich.console import Console

    from trainyard.config import Settings
    from trainyard.dashboard.live import LiveDashboard, print_frame
    from trainyard.dashboard.snapshot import snapshot_reader

    read = snapshot_reader(Settings.from_env().db_url, recent=recent, tag=tag)
    if as_json:
        click.echo(json.dumps(read().to_json(), indent=2))
    elif once:
        print_frame(read, Console())
    else:
        LiveDashboard(read, console=Console(), refresh_seconds=refresh_seconds).run()


@click.command()
@click.argument("jobs", metavar="JOB...", nargs=-1)
@click.option(
    "--sweep", "sweep_id", metavar="ID", default=None, help="Plot a sweep: the objective per trial and per parameter."
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Image to write (default: trainyard-jobs-<ids>.png here); the suffix picks the format.",
)
def plot(jobs: tuple[str, ...], sweep_id: str | None, out: Path | None) -> None:
    """Plot the per-output training loss and validation MSE of one or several JOBs (ids, as in
    ``trainyard jobs``), one panel per output, one colour per job; or, with ``--sweep ID``, a
    sweep's objective per trial and per parameter."""
    from trainyard.config import Settings
    from trainyard.dashboard.plot import default_plot_path, plot_curves, read_curves
    from trainyard.db.queries import open_existing
    from trainyard.errors import JobNotFound, SweepNotFound, TrainyardError
    from trainyard.scheduler.operations import parse_job_id

    if sweep_id is not None:
        if jobs:
            raise TrainyardError("give either JOB ids or --sweep ID, not both")
        from trainyard.dashboard.sweep_plot import default_sweep_plot_path, plot_sweep
        from trainyard.scheduler.sweeps import parse_sweep_id, sweep_document

        number = parse_sweep_id(sweep_id)
        store = open_existing(Settings.from_env().db_url)
        if store is None:
            raise SweepNotFound(number)
        written = plot_sweep(sweep_document(store, store.get_sweep(number)), out or default_sweep_plot_path(number))
        click.echo(f"wrote {written}")
        return
    if not jobs:
        raise TrainyardError("give at least one JOB id, or --sweep ID")
    ids = list(dict.fromkeys(parse_job_id(job) for job in jobs))
    store = open_existing(Settings.from_env().db_url)
    if store is None:  # nothing was ever submitted here
        raise JobNotFound(ids[0])
    written = plot_curves(read_curves(store, ids), out or default_plot_path(ids))
    click.echo(f"wrote {written}")


COMMANDS: list[click.Command] = [dashboard, plot]
