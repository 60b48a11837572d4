"""``trainyard worker | run | reconcile``: training on this machine.

``trainyard worker`` is the friendly face of ``celery -A trainyard.worker worker``: it finds the
GPUs, chooses how many training processes to run, prints the choice and runs the Celery worker in
this process (any extra arguments after ``--`` go to Celery). ``trainyard run SPEC...`` is the
one-command local experience: submit, train with a background worker, watch, summarise.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

import click

from trainyard import defaults
from trainyard.db.records import JobRecord, JobState
from trainyard.display import (
    final_cell,
    format_headlines,
    format_mse,
    format_mse_map,
    only_mse,
    progress_bar,
    styled_state,
)


def _settings() -> Any:
    from trainyard.config import Settings

    return Settings.from_env()


@click.command(context_settings={"ignore_unknown_options": True})
@click.option(
    "-n",
    "--name",
    "name",
    default="trainyard@%h",
    show_default=True,
    help="Celery node name; unique per worker (%h is the host name).",
)
@click.option(
    "-c",
    "--concurrency",
    type=click.IntRange(min=1),
    default=None,
    help="Training processes (default: chosen from the GPUs and cores).",
)
@click.option(
    "--per-gpu",
    is_flag=True,
    help="One training process per GPU, each pinned with CUDA_VISIBLE_DEVICES (default: one process over all GPUs with MirroredStrategy).",
)
@click.option("--loglevel", "-l", default="INFO", show_default=True, help="Celery log level.")
@click.option("--dry-run", is_flag=True, help="Print what would run and exit.")
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED, metavar="[-- CELERY_ARGS...]")
def worker(
    name: str, concurrency: int | None, per_gpu: bool, loglevel: str, dry_run: bool, celery_args: tuple[str, ...]
) -> None:
    """Run a worker here: claim queued jobs and train them until stopped (Ctrl-C or SIGTERM hands
    a running job back to the queue)."""
    import shlex

    from trainyard.config import redact_url
    from trainyard.queue import check_broker
    from trainyard.worker import devices
    from trainyard.worker.command import celery_command, worker_args

    settings = _settings()
    gpus = devices.detect_gpus()
    plan = devices.plan_worker(gpus, per_gpu=per_gpu, concurrency=concurrency)
    if per_gpu and not plan.per_gpu:
        click.echo(f"--per-gpu: needs two GPUs or more, {len(gpus)} found; ignored", err=True)
    argv = worker_args(name, plan.concurrency, loglevel, celery_args)
    click.echo(f"trainyard worker {name}: {plan.describe()}")
    click.echo(f"  broker:    {redact_url(settings.broker_url)}")
    click.echo(f"  store:     {redact_url(settings.db_url)}")
    click.echo(f"  artifacts: {settings.artifact_root}")
    click.echo(f"  celery:    {shlex.join(celery_command(argv))}")
    if dry_run:
        return
    check_broker(settings)
    os.environ.update(plan.env)
    from trainyard.worker import app

    app.worker_main(argv)


@click.command()
@click.option("--loop", is_flag=True, help="Keep reconciling every --interval seconds until Ctrl-C.")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=None,
    help="Seconds between passes (default TRAINYARD_RECONCILE_SECONDS or 10).",
)
def reconcile(loop: bool, interval: float | None) -> None:
    """Requeue jobs whose worker died and re-send broker messages that were lost.

    Every worker already does this every few seconds; this command is for operators (or cron).
    """
    from trainyard.db import Store
    from trainyard.queue import reconcile as reconcile_once

    settings = _settings()
    store = Store.open(settings.db_url)
    period = interval if interval is not None else settings.reconcile_seconds
    while True:
        report = reconcile_once(store, settings)
        click.echo(str(report))
        if report.broker_error and not loop:
            from trainyard.errors import BrokerError

            raise BrokerError(report.broker_error)
        if not loop:
            return
        try:
            time.sleep(period)
        except KeyboardInterrupt:
            return


@click.command()
@click.argument("specs", nargs=-1, required=True, metavar="SPEC...")
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="PATH=VALUE",
    help="Override a spec field before validation (repeatable), e.g. training.epochs=5.",
)
@click.option("--priority", type=int, default=defaults.PRIORITY, show_default=True, help="Higher runs first.")
@click.option(
    "-c",
    "--concurrency",
    type=click.IntRange(min=1),
    default=None,
    help="Training processes of the local worker (default: chosen from the GPUs and cores).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=None,
    help="Give up (exit 1) after this many seconds; the jobs stay queued.",
)
def run(
    specs: tuple[str, ...], overrides: tuple[str, ...], priority: int, concurrency: int | None, timeout: float | None
) -> None:
    """Submit SPECs, train them here with a background worker, show progress, print a summary.

    Exits 0 when every job succeeded, 1 otherwise. Ctrl-C stops the worker; the jobs stay queued.
    Given one sweep file instead, runs the sweep: its trials live, then its ranked trials (exit 0
    once it finished with a best trial).
    """
    from rich.console import Console

    from trainyard.cli.quiet import quiet_tensorflow
    from trainyard.db import Store
    from trainyard.scheduler import operations
    from trainyard.sweeps import is_sweep_file
    from trainyard.worker import devices
    from trainyard.worker.local import LocalWorker

    sweep_files = [path for path in specs if is_sweep_file(path)]
    if sweep_files:
        if len(specs) > 1 or overrides:
            from trainyard.errors import TrainyardError

            raise TrainyardError(
                f"{sweep_files[0]}: a sweep file runs alone and without --set (its parameters say what varies)"
            )
        _run_sweep(specs[0], concurrency, timeout)
        return

    settings = _settings()
    settings.ensure_home()
    console = Console(stderr=True, highlight=False)
    gpus = devices.detect_gpus()
    plan = devices.plan_worker(gpus, concurrency=concurrency)
    if plan.concurrency > len(specs):  # no more training processes than jobs: each imports TensorFlow
        plan = devices.plan_worker(gpus, concurrency=max(1, len(specs)))
    name = f"run-{os.getpid()}@%h"
    log_path = settings.home / "logs" / f"run-{os.getpid()}.log"
    env = {**os.environ, **plan.env}
    # Start the worker first: its start and its TensorFlow import overlap ours and the validation.
    local = LocalWorker(name, log_path, concurrency=plan.concurrency, env=env).start()
    try:
        quiet_tensorflow()  # submitting validates, which builds each model
        jobs = operations.submit(list(specs), overrides=overrides, priority=priority, settings=settings)
    except BaseException:
        local.stop()
        raise
    console.print(f"queued {len(jobs)} job(s); local worker: {plan.describe()}; log: {log_path}")
    store = Store.open(settings.db_url)
    ids = [job.id for job in jobs]
    view = _watch(store, ids, local, console, timeout)
    if view.interrupted:
        console.print("stopping the worker (a running job is handed back)...")
        local.stop()
        waiting = [j.id for j in store.get_jobs(ids) if not j.state.is_finished]
        console.print(
            f"interrupted: job(s) {', '.join(map(str, waiting)) or '-'} stay queued; `trainyard worker` trains them"
        )
        sys.exit(130)
    final = view.last or store.get_jobs(ids)
    console.line()
    stopped = local.stop()
    Console(highlight=False).print(summary_table(final))
    unfinished = [j for j in final if not j.state.is_finished]
    if unfinished:
        reason = "timed out" if local.alive() or stopped == 0 else f"the worker exited with status {stopped}"
        console.print(f"[red]{reason}[/]; job(s) {', '.join(str(j.id) for j in unfinished)} stay queued")
        if local.returncode() not in (None, 0):
            console.print(local.log_tail())
    sys.exit(0 if all(j.state is JobState.SUCCEEDED for j in final) else 1)


def _run_sweep(path: str, concurrency: int | None, timeout: float | None) -> None:
    """``trainyard run sweep.yaml``: submit the sweep, train its trials with a local worker, live."""
    from rich.console import Console

    from trainyard.cli.quiet import quiet_tensorflow
    from trainyard.cli.sweep_cmds import sweep_panel
    from trainyard.dashboard.live import LiveDashboard
    from trainyard.db import Store, SweepState
    from trainyard.scheduler import sweeps
    from trainyard.sweeps import SweepDefinition
    from trainyard.worker import devices
    from trainyard.worker.local import LocalWorker

    settings = _settings()
    settings.ensure_home()
    console = Console(stderr=True, highlight=False)
    gpus = devices.detect_gpus()
    plan = devices.plan_worker(gpus, concurrency=concurrency)
    name = f"run-{os.getpid()}@%h"
    log_path = settings.home / "logs" / f"run-{os.getpid()}.log"
    # Start the worker first: its start and its TensorFlow import overlap ours and the sweep's checks.
    local = LocalWorker(name, log_path, concurrency=plan.concurrency, env={**os.environ, **plan.env}).start()
    try:
        quiet_tensorflow()  # the sweep's checks build the model at each parameter's extremes
        record, queued = sweeps.submit_sweep(path, settings=settings)
    except BaseException:
        local.stop()
        raise
    parallel = SweepDefinition.from_document(record.definition).parallel
    console.print(
        f"sweep {record.id} ({record.name}): {len(queued)} trial(s) queued, {parallel} at once; "
        f"local worker: {plan.describe()}; log: {log_path}"
    )
    store = Store.open(settings.db_url)
    deadline = None if timeout is None else time.monotonic() + timeout

    def over(document: dict[str, Any]) -> bool:
        timed_out = deadline is not None and time.monotonic() >= deadline
        return document["state"] != SweepState.RUNNING.value or not local.alive() or timed_out

    view = LiveDashboard(
        lambda: sweeps.sweep_document(store, store.get_sweep(record.id), exact=False),
        draw=sweep_progress,
        console=console,
        refresh_seconds=defaults.RUN_REFRESH_SECONDS,
    )
    with _interrupt_on_termination():
        view.run(until=over)
    if view.interrupted:
        console.print("stopping the worker (a running trial is handed back)...")
        local.stop()
        console.print(f"interrupted: sweep {record.id} goes on with `trainyard worker`")
        sys.exit(130)
    console.line()
    stopped = local.stop()
    final = sweeps.sweep_document(store, store.get_sweep(record.id))
    Console(highlight=False).print(sweep_panel(final))
    if final["state"] == SweepState.RUNNING.value:
        reason = "timed out" if local.alive() or stopped == 0 else f"the worker exited with status {stopped}"
        console.print(f"[red]{reason}[/]; sweep {record.id} goes on with `trainyard worker`")
        if local.returncode() not in (None, 0):
            console.print(local.log_tail())
    sys.exit(0 if final["state"] == SweepState.FINISHED.value and final["best"] else 1)


def sweep_progress(
    document: dict[str, Any], now: datetime, width: int, *, height: int | None = None, problem: str | None = None
) -> Any:
    """The live view of ``trainyard run sweep.yaml``: the sweep's counts and best, then its queued and
    running trials (as many as ``height`` lines hold, the running ones first)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    from trainyard.dashboard.render import fit_rows
    from trainyard.display import format_params

    best = document.get("best")
    head = (
        f"sweep {document['id']} {document['name']}: {document['done']}/{document['total']} done, "
        f"{document['counts']['running']} running, {document['counts']['pruned']} pruned; best "
        + (f"{format_mse(best['objective'])} (job {best['job']}: {format_params(best['params'])})" if best else "–")
    )
    active = [t for t in document["trials"] if t["state"] in (JobState.QUEUED.value, JobState.RUNNING.value)]
    active.sort(key=lambda t: (t["state"] != JobState.RUNNING.value, t["job"]))

    def frame(shown: int) -> Any:
        table = Table(box=None, pad_edge=False, header_style="bold")
        for column in ("JOB", "STATE", "EPOCHS", "OBJECTIVE", "PARAMETERS"):
            table.add_column(column)
        for trial in sorted(active[:shown], key=lambda t: t["job"]):
            table.add_row(
                str(trial["job"]),
                styled_state(JobState(trial["state"])),
                str(trial["epochs"]),
                format_mse(trial["objective"]),
                format_params(trial["params"]),
            )
        parts: list[Any] = [Text(head, style="bold"), table]
        if shown < len(active):
            parts.append(Text(f"and {len(active) - shown} more trial(s) not shown", style="dim"))
        if problem:
            parts.insert(0, Text(f"⚠ {problem} (retrying)", style="bold red"))
        return Group(*parts)

    return fit_rows(frame, len(active), width, height)


@contextlib.contextmanager
def _interrupt_on_termination() -> Iterator[None]:
    """SIGTERM and SIGHUP (terminal closed) stop ``trainyard run`` like Ctrl-C: the worker is stopped too."""

    def _interrupt(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _watch(store: Any, ids: list[int], local: Any, console: Any, timeout: float | None) -> Any:
    """Show the jobs' progress live (the dashboard's driver) until every job finished, the worker
    died, ``timeout`` passed or the user interrupted; returns the driver (``last``, ``interrupted``)."""
    from trainyard.dashboard.live import LiveDashboard

    deadline = None if timeout is None else time.monotonic() + timeout

    def over(jobs: Sequence[JobRecord]) -> bool:
        timed_out = deadline is not None and time.monotonic() >= deadline
        return all(j.state.is_finished for j in jobs) or not local.alive() or timed_out

    view = LiveDashboard(
        lambda: store.get_jobs(ids), draw=progress_table, console=console, refresh_seconds=defaults.RUN_REFRESH_SECONDS
    )
    with _interrupt_on_termination():
        view.run(until=over)
    return view


def progress_table(
    jobs: Sequence[JobRecord], now: datetime, width: int, *, height: int | None = None, problem: str | None = None
) -> Any:
    """The live view of ``trainyard run``: one row per job with an epoch bar and the latest metrics.
    When ``height`` lines cannot hold every job, the unfinished ones are the ones shown."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    from trainyard.dashboard.render import fit_rows

    mse = only_mse(jobs)
    first = sorted(jobs, key=lambda job: (job.state.is_finished, job.state != JobState.RUNNING))  # stable: by id

    def frame(shown: int) -> Any:
        table = Table(box=None, pad_edge=False, header_style="bold")
        for column in ("JOB", "NAME", "STATE", "EPOCHS", "", "VAL MSE" if mse else "VAL"):
            table.add_column(column)
        chosen = {job.id for job in first[:shown]}
        for job in jobs:
            if job.id in chosen:
                table.add_row(
                    str(job.id),
                    job.name,
                    styled_state(job.state),
                    job.progress,
                    progress_bar(job.epochs_done, job.epochs_total, 20),
                    format_mse_map(job.val_mse) if mse else format_headlines(job.val_metrics),
                )
        parts: list[Any] = [table]
        hidden = first[shown:]
        if hidden:
            finished = sum(job.state.is_finished for job in hidden)
            parts.append(Text(f"and {len(hidden)} more job(s) not shown ({finished} finished)", style="dim"))
        if problem:
            parts.insert(0, Text(f"⚠ {problem} (retrying)", style="bold red"))
        return parts[0] if len(parts) == 1 else Group(*parts)

    return fit_rows(frame, len(jobs), width, height)


def summary_table(jobs: Sequence[JobRecord]) -> Any:
    """The summary ``trainyard run`` prints: per job and output, the validation and test MSE."""
    from rich.table import Table

    table = Table(title="trainyard run", header_style="bold", title_justify="left")
    for column, justify in (
        ("JOB", "right"),
        ("NAME", "left"),
        ("STATE", "left"),
        ("OUTPUT", "left"),
        ("VAL MSE" if only_mse(jobs) else "VAL", "right"),
        ("TEST MSE" if only_mse(jobs) else "TEST", "right"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for job in jobs:
        outputs = job.output_names or ["-"]
        for i, output in enumerate(outputs):
            first = i == 0
            table.add_row(
                str(job.id) if first else "",
                job.name if first else "",
                styled_state(job.state) if first else "",
                output,
                final_cell(job.val_metrics.get(output), job.val_mse.get(output)),
                final_cell(job.test_metrics.get(output), job.test_mse.get(output)),
            )
        if job.error and job.state is not JobState.SUCCEEDED:
            table.add_row("", "", "", f"[red]{job.error}[/]", "", "")
    return table


COMMANDS: list[click.Command] = [worker, run, reconcile]
