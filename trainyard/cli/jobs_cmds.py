"""``trainyard submit | jobs | show | cancel | retry``: the commands a user scripts against.

``--json`` prints machine-readable JSON on stdout and nothing else there; messages go to stderr.
Errors (invalid specs, unknown job ids, an unreachable database) are one clear message and exit 2.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import click

from trainyard import defaults
from trainyard.db.records import EpochRecord, JobRecord, JobState, job_json, utcnow
from trainyard.display import (
    format_bytes,
    format_duration,
    format_headlines,
    format_metric,
    format_metrics,
    format_mse,
    format_mse_map,
    format_params,
    headline_name,
    stopped_text,
    styled_state,
)
from trainyard.metrics import metric, output_type


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, allow_nan=False))


def _console() -> Any:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False)


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
@click.option("--tag", "tags", multiple=True, metavar="TAG", help="Tag every job (repeatable), e.g. --tag baseline.")
@click.option("--json", "as_json", is_flag=True, help="Print the queued jobs as JSON.")
@click.option(
    "--no-dispatch", is_flag=True, help="Only store and queue the jobs; a worker's reconciler sends them to the broker."
)
def submit(
    specs: tuple[str, ...],
    overrides: tuple[str, ...],
    priority: int,
    tags: tuple[str, ...],
    as_json: bool,
    no_dispatch: bool,
) -> None:
    """Validate each SPEC and queue one training job per spec; print the job ids.

    Each job carries its spec's ``tags`` and every --tag. If any spec is invalid, every problem is
    printed and nothing is queued (exit 2).
    """
    from trainyard.cli.quiet import quiet_tensorflow
    from trainyard.scheduler import operations

    quiet_tensorflow()  # validation builds each model
    queued = operations.submit(list(specs), overrides=overrides, priority=priority, dispatch=not no_dispatch, tags=tags)
    if as_json:
        _echo_json([job_json(job) for job in queued])
        return
    for job in queued:
        click.echo(f"{job.id}\t{job.name}\tqueued")


@click.command(name="jobs")
@click.option("--state", type=click.Choice([s.value for s in JobState]), help="Only jobs in this state.")
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=defaults.JOBS_LIST_LIMIT,
    show_default=True,
    help="Newest jobs to show; 0 shows all.",
)
@click.option("--tag", help="Only jobs with this tag.")
@click.option("--disk", is_flag=True, help="Also show each job's disk use (its model, card and backups).")
@click.option("--json", "as_json", is_flag=True, help="Print the jobs as a JSON list.")
def jobs_command(state: str | None, limit: int, tag: str | None, disk: bool, as_json: bool) -> None:
    """List jobs, newest first: id, name, state, attempts, progress, latest validation MSE, age, tags."""
    from trainyard.scheduler import operations

    store = operations.open_store()
    rows = store.list_jobs(state=state, limit=limit or None, tag=tag)
    counts = store.count_by_state(tag=tag)
    total = counts[JobState(state)] if state else sum(counts.values())
    sizes = None
    if disk:
        from trainyard.config import Settings
        from trainyard.results import disk_usage

        settings = Settings.from_env()
        sizes = {job.id: disk_usage(settings, job.id) for job in rows}
    if as_json:
        _echo_json([{**job_json(job), **({"disk_bytes": sizes[job.id]} if sizes else {})} for job in rows])
    else:
        console = _console()
        console.print(jobs_table(rows, now=utcnow(), disk=sizes))
    if limit and total > limit:
        what = " ".join(filter(None, [state, "jobs", f"tagged {tag}" if tag else None]))
        click.echo(f"showing the {limit} newest of {total} {what}; --limit 0 shows all", err=True)


def jobs_table(rows: Sequence[JobRecord], now: datetime, disk: dict[int, int] | None = None) -> Any:
    """The table ``trainyard jobs`` prints (a pure function of the records, the clock and the disk use)."""
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("ID", justify="right", no_wrap=True)
    table.add_column("NAME", overflow="ellipsis", max_width=32, no_wrap=True)
    table.add_column("STATE", no_wrap=True)
    table.add_column("ATTEMPTS", justify="right", no_wrap=True)
    table.add_column("PROGRESS", justify="right", no_wrap=True)
    table.add_column("VAL", overflow="fold")
    table.add_column("AGE", justify="right", no_wrap=True)
    if disk is not None:
        table.add_column("DISK", justify="right", no_wrap=True)
    if any(job.tags for job in rows):
        table.add_column("TAGS", overflow="fold")
    for job in rows:
        state = styled_state(job.state)
        if job.cancel_requested and job.state is JobState.RUNNING:
            state += " (cancelling)"
        cells = [
            str(job.id),
            job.name,
            state,
            f"{job.attempts}/{job.max_attempts}",
            job.progress,
            format_headlines(job.val_metrics) or format_mse_map(job.val_mse),
            format_duration((now - job.created_at).total_seconds()),
        ]
        if disk is not None:
            cells.append(format_bytes(disk.get(job.id, 0)))
        if any(j.tags for j in rows):
            cells.append(" ".join(job.tags))
        table.add_row(*cells)
    return table


@click.command()
@click.argument("job")
@click.option("--json", "as_json", is_flag=True, help="Print everything about the job as one JSON object.")
def show(job: str, as_json: bool) -> None:
    """Everything about one JOB: state, attempts, error, per-epoch metrics, final MSEs, model path."""
    from trainyard.scheduler import operations

    store = operations.open_store()
    record = store.get_job(operations.parse_job_id(job))
    epochs = store.epochs(record.id)
    if as_json:
        _echo_json(operations.job_document(record, epochs))
    else:
        _console().print(job_panel(record, epochs))


def _model_inputs(job: JobRecord) -> str | None:
    """``numbers: float32 (rows, 8) of a, b, ...; ocean: string (rows, 1) of ocean_proximity``."""
    from trainyard.specs.features import signature_from_document

    if not job.model_path:
        return None
    parts = [
        f"{name}: {sig['dtype']} (rows, {sig['shape'][1]}) of {', '.join(sig['columns'])}"
        for name, sig in signature_from_document(job.spec_document).items()
    ]
    return "; ".join(parts) or None


def job_panel(job: JobRecord, epochs: Sequence[EpochRecord]) -> Any:
    """What ``trainyard show`` prints: the job's facts, then one line per recorded epoch."""
    from rich.console import Group
    from rich.table import Table

    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    state = styled_state(job.state) + (" (cancel requested)" if job.cancel_requested else "")
    lines: list[tuple[str, str | None]] = [
        ("job", f"{job.id}  {job.name}"),
        ("state", state),
        ("attempts", f"{job.attempts} of {job.max_attempts}"),
        ("priority", str(job.priority)),
        ("progress", f"epoch {job.epochs_done} of {job.epochs_total}"),
        *_metric_lines("val", job.val_metrics),
        *_metric_lines("test", job.test_metrics),
        ("outputs", _outputs_text(job)),
        ("stopped", stopped_text(job.stopped_epoch, job.best_epoch)),
        ("model", job.model_path),
        ("sweep", f"#{job.sweep_id}, trial {job.trial}: {format_params(job.params)}" if job.sweep_id else None),
        ("model inputs", _model_inputs(job)),
        ("error", job.error),
        ("worker", job.lease_owner if job.state is JobState.RUNNING else None),
        ("tags", " ".join(job.tags) or None),
        ("created", _when(job.created_at)),
        ("started", _when(job.started_at)),
        ("finished", _when(job.finished_at)),
    ]
    for key, value in lines:
        if value:
            facts.add_row(key, value)
    trace = lineage_lines(job.lineage)
    if trace:
        facts.add_row("", "")
        for key, value in trace:
            facts.add_row(key, value)
    if not epochs:
        return facts
    last = epochs[-1].val_metrics
    headlines = {name: headline_name(values, output_type(job.spec_document, name)) for name, values in last.items()}
    table = Table(box=None, pad_edge=False, header_style="bold", title_justify="left")
    table.add_column("EPOCH", justify="right")
    table.add_column("LOSS", justify="right")
    table.add_column("VAL LOSS", justify="right")
    for name, headline in headlines.items():
        table.add_column(f"VAL {metric(headline).label.upper() if headline else ''} {name}", justify="right")
    for e in epochs:
        values = e.val_metrics
        table.add_row(
            str(e.epoch),
            format_mse(e.loss),
            format_mse(e.val_loss),
            *(format_metric(values.get(n, {}).get(h)) if h else "–" for n, h in headlines.items()),
        )
    return Group(facts, "", table)


def _metric_lines(split: str, values: dict[str, dict[str, float | None]]) -> list[tuple[str, str | None]]:
    """``val value``: ``MSE 2915, MAE 41.2``, one line per output."""
    return [(f"{split} {name}", format_metrics(metrics) or None) for name, metrics in values.items()]


def _outputs_text(job: JobRecord) -> str | None:
    """The classification outputs, and which class a binary output's probability is for:
    ``flag: binary, positive class 'yes'``, read from the saved model."""
    from trainyard.specs.targets import read_model_info

    info = read_model_info(job.model_path) if job.model_path else None
    parts = []
    for name, output in (info.outputs if info else {}).items():
        if output.type == "binary" and output.positive is not None:
            parts.append(f"{name}: binary, positive class {output.positive!r} ({output.labels[0]!r} the other)")
        elif output.type == "category":
            parts.append(f"{name}: category, labels {', '.join(map(repr, output.labels))}")
    if not parts:
        kinds = {n: output_type(job.spec_document, n) for n in (job.spec_document or {}).get("outputs", {})}
        parts = [f"{n}: {k}" for n, k in kinds.items() if k != "regression"]
    return "; ".join(parts) or None


@click.command()
@click.argument("job_ids", nargs=-1, required=True, metavar="JOB...")
def cancel(job_ids: tuple[str, ...]) -> None:
    """Cancel jobs: a queued JOB at once, a running one as soon as its worker notices."""
    from trainyard.scheduler import operations

    for job in operations.cancel(job_ids):
        if job.state is JobState.CANCELLED:
            click.echo(f"{job.id}\t{job.name}\tcancelled")
        else:
            click.echo(f"{job.id}\t{job.name}\tcancel requested (running on {job.lease_owner})")


@click.command()
@click.argument("job_ids", nargs=-1, required=True, metavar="JOB...")
@click.option(
    "--no-dispatch", is_flag=True, help="Only queue the jobs; a worker's reconciler sends them to the broker."
)
def retry(job_ids: tuple[str, ...], no_dispatch: bool) -> None:
    """Queue failed or cancelled jobs again, from scratch."""
    from trainyard.scheduler import operations

    for job in operations.retry(job_ids, dispatch=not no_dispatch):
        click.echo(f"{job.id}\t{job.name}\tqueued")


def lineage_lines(lineage: dict[str, Any]) -> list[tuple[str, str]]:
    """The lineage part of ``trainyard show``: ``(label, text)`` lines for what was recorded."""
    submitted, worker = lineage.get("submit") or {}, lineage.get("worker") or {}
    lines: list[tuple[str, str]] = []

    def software(record: dict[str, Any]) -> str:
        names = (("trainyard", "trainyard"), ("tensorflow", "TensorFlow"), ("keras", "Keras"), ("python", "Python"))
        return ", ".join(f"{label} {record[key]}" for key, label in names if record.get(key))

    if submitted:
        lines.append(("submitted on", f"{submitted.get('host', '?')}: {software(submitted)}"))
        if submitted.get("spec_file"):
            lines.append(("spec file", str(submitted["spec_file"])))
        git = submitted.get("git")
        if git:
            commit = git.get("commit") or "no commit yet"
            state = "uncommitted changes" if git.get("dirty") else "clean"
            if git.get("commit") and not git.get("committed"):
                state += "; the spec file differs from the commit"
            lines.append(("git", f"{git.get('repository')} @ {commit} ({state})"))
        elif submitted.get("spec_file"):
            lines.append(("git", "not in a git repository"))
        lines.append(("spec sha256", str(submitted.get("spec_sha256"))))
        if submitted.get("data_fingerprint"):
            lines.append(("data", str(submitted["data_fingerprint"])))
    if worker:
        devices = ", ".join(worker.get("devices") or []) or "?"
        strategy = worker.get("strategy") or "none"
        replicas = worker.get("replicas")
        placement = f"{devices} (strategy {strategy}" + (
            f", {replicas} replicas)" if replicas and replicas > 1 else ")"
        )
        lines.append(("trained on", f"{worker.get('host', '?')}: {software(worker)}"))
        lines.append(("devices", placement))
        if worker.get("worker"):
            lines.append(("by worker", str(worker["worker"])))
    return lines


def _when(value: datetime | None) -> str | None:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else None


COMMANDS: list[click.Command] = [submit, jobs_command, show, cancel, retry]
