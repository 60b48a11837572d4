"""``trainyard sweep submit | list | show | cancel``: hyperparameter sweeps whose trials are jobs.

``--json`` prints machine-readable JSON on stdout and nothing else there. Errors (an invalid sweep
file or base spec, an unknown sweep id) are one clear message and exit 2.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import click

from trainyard.display import format_mse, format_params, styled_state


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, allow_nan=False))


def _console() -> Any:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False)


@click.group()
def sweep() -> None:
    """Hyperparameter sweeps: trials queued as jobs, pruned early, driven by the workers."""


@sweep.command()
@click.argument("file", metavar="FILE")
@click.option("--json", "as_json", is_flag=True, help="Print the sweep (as `sweep show --json`) as JSON.")
def submit(file: str, as_json: bool) -> None:
    """Check a sweep FILE and its base spec, store the sweep and queue its first trials; print its id.

    Submitting the same file again with more trials (or a larger grid) extends the sweep; nothing
    it already ran runs again.
    """
    from trainyard.cli.quiet import quiet_tensorflow
    from trainyard.scheduler import sweeps

    quiet_tensorflow()  # checking the parameters builds the models at their extreme values
    record, queued = sweeps.submit_sweep(file)
    if as_json:
        _echo_json(sweeps.show_sweep(record.id))
        return
    click.echo(f"{record.id}\t{record.name}\t{record.state}\t{len(queued)} trial(s) queued now")


@sweep.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print the sweeps as a JSON list.")
def list_command(as_json: bool) -> None:
    """Every sweep, newest first: id, name, state, method, trials done of total, best objective."""
    from trainyard.scheduler import sweeps

    found = [sweeps.show_sweep(s["id"]) for s in sweeps.list_sweeps()]
    if as_json:
        _echo_json([{k: v for k, v in s.items() if k != "trials"} for s in found])
        return
    _console().print(sweeps_table(found))


def sweeps_table(found: list[Mapping[str, Any]]) -> Any:
    """The table ``sweep list`` prints."""
    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold")
    for column, justify in (
        ("ID", "right"),
        ("NAME", "left"),
        ("STATE", "left"),
        ("METHOD", "left"),
        ("DONE", "right"),
        ("RUNNING", "right"),
        ("PRUNED", "right"),
        ("BEST", "right"),
        ("BEST PARAMETERS", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for s in found:
        best = s.get("best") or {}
        table.add_row(
            str(s["id"]),
            s["name"],
            s["state"],
            s["method"],
            f"{s['done']}/{s['total']}",
            str(s["counts"]["running"]),
            str(s["counts"]["pruned"]),
            format_mse(best.get("objective")),
            format_params(best.get("params")),
        )
    return table


@sweep.command()
@click.argument("sweep_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the sweep and its ranked trials as one JSON object.")
def show(sweep_id: str, as_json: bool) -> None:
    """One sweep: its trials ranked by objective (job, parameters, state, epochs, objective) and the best."""
    from trainyard.scheduler import sweeps

    document = sweeps.show_sweep(sweep_id)
    if as_json:
        _echo_json(document)
        return
    _console().print(sweep_panel(document))


def sweep_panel(s: Mapping[str, Any]) -> Any:
    """What ``sweep show`` prints: the sweep's facts, the best trial, then the trials ranked."""
    from rich.console import Group
    from rich.table import Table

    from trainyard.dashboard.render import sparkline
    from trainyard.db import JobState

    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    objective = s["objective"]
    weights = ", ".join(f"{name} x {weight:g}" for name, weight in objective["outputs"].items())
    prune = s.get("prune")
    best = s.get("best")
    for key, value in (
        ("sweep", f"{s['id']}  {s['name']}"),
        ("state", s["state"]),
        ("method", f"{s['method']}, seed {s['seed']}, {s['parallel']} at once"),
        (
            "trials",
            f"{s['done']} of {s['total']} done, {s['counts']['running']} running, {s['counts']['pruned']} pruned",
        ),
        ("objective", f"{objective['direction']} {objective['metric']} of {weights}"),
        ("pruning", _prune_text(prune)),
        (
            "best",
            f"job {best['job']}: {format_mse(best['objective'])}  {format_params(best['params'])}" if best else "–",
        ),
        ("best so far", sparkline(s.get("best_so_far") or [], 40)),
    ):
        if value:
            facts.add_row(key, value)
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column, justify in (
        ("RANK", "right"),
        ("JOB", "right"),
        ("STATE", "left"),
        ("EPOCHS", "right"),
        ("OBJECTIVE", "right"),
        ("PARAMETERS", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for rank, trial in enumerate(s["trials"], start=1):
        table.add_row(
            str(rank),
            str(trial["job"]),
            styled_state(JobState(trial["state"])),
            str(trial["epochs"]),
            format_mse(trial["objective"]),
            format_params(trial["params"]),
        )
    return Group(facts, "", table)


def _prune_text(prune: Mapping[str, Any] | None) -> str:
    if not prune:
        return "none"
    settings = ", ".join(f"{key.replace('_', ' ')} {value}" for key, value in prune.items() if key != "method")
    return f"{prune['method']} ({settings})"


@sweep.command()
@click.argument("sweep_id", metavar="ID")
def cancel(sweep_id: str) -> None:
    """Cancel a sweep: no new trials; queued trials are cancelled at once, running ones stopped."""
    from trainyard.scheduler import sweeps

    document = sweeps.cancel_sweep(sweep_id)
    click.echo(f"{document['id']}\t{document['name']}\tcancelled")


COMMANDS: list[click.Command] = [sweep]
