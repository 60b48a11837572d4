"""Snapshot -> Rich renderable: the pure half of the dashboard.

:func:`render` reads nothing and writes nothing; the same snapshot, clock reading and width always
give the same frame, so tests print frames into a recording console and read them like a user.
Below :data:`NARROW_WIDTH` columns the tables give way to a stacked layout that keeps every number.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timezone

from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from trainyard.dashboard.snapshot import (
    RunningJob,
    Snapshot,
    is_lost,
    job_duration,
    seconds_between,
)
from trainyard.db.records import JobRecord, JobState, WorkerRecord, WorkerState
from trainyard.display import (
    STATE_STYLE,
    final_cell,
    format_duration,
    format_mse,
    headline_cell,
    only_mse,
    progress_bar,
)

#: Below this many columns the running and finished jobs are stacked instead of tabulated.
NARROW_WIDTH = 120

#: Below this many columns the workers table drops the host and devices columns.
WORKERS_NARROW_WIDTH = 80

SPARK_BLOCKS = "▁▂▃▄▅▆▇█"


def render(
    snapshot: Snapshot, now: datetime, width: int, *, height: int | None = None, problem: str | None = None
) -> RenderableType:
    """One dashboard frame: header and queue, workers, running jobs, recently finished jobs.

    ``problem`` (a store that stopped answering) is shown in red above a frame of the last snapshot.
    With ``height`` (a live terminal's rows) the frame is made to fit: the oldest finished jobs give
    way first, then running jobs (each section says how many it does not show), so the bottom of the
    frame is never cut off mid-table.
    """
    head = _top(snapshot, now, width, problem)
    whole = Group(*head, _running(snapshot, now, width), _recent(snapshot, now, width))
    if height is None or _lines(whole, width) <= height:
        return whole
    room = height - _lines(Group(*head), width)
    running_rows = len(snapshot.running)

    def recent_part(shown: int) -> RenderableType:
        return _recent(snapshot, now, width, shown=shown)

    def running_part(shown: int) -> RenderableType:
        return _running(replace(snapshot, running=snapshot.running[:shown]), now, width)

    running = running_part(running_rows)
    left = room - _lines(running, width)
    recent = recent_part(_most(len(snapshot.recent), left, recent_part, width))
    if _lines(recent, width) > left:  # even a line about the finished jobs is too many: give way above
        shown = _most(running_rows, room - _lines(recent_part(0), width), running_part, width)
        running = running_part(max(shown, min(1, running_rows)))
        recent = recent_part(0)
    return Group(*head, running, recent)


def _top(snapshot: Snapshot, now: datetime, width: int, problem: str | None) -> list[RenderableType]:
    parts: list[RenderableType] = [_header(snapshot, now)]
    if problem:
        parts.append(Text(f"⚠ {problem} (showing the last frame, retrying)", style="bold red"))
    parts.append(_queue(snapshot, now))
    parts.append(_workers(snapshot, now, narrow=width < WORKERS_NARROW_WIDTH))
    if snapshot.sweeps:
        parts.append(_sweeps(snapshot, width))
    return parts


def _lines(renderable: RenderableType, width: int) -> int:
    """How many terminal lines ``renderable`` takes at ``width`` columns."""
    console = Console(width=width, file=io.StringIO(), color_system=None, legacy_windows=False)
    return len(console.render_lines(renderable, console.options, pad=False))


def _most(available: int, room: int, part: Callable[[int], RenderableType], width: int) -> int:
    """The largest ``k <= available`` whose ``part(k)`` fits in ``room`` lines (0 when none does):
    a bisection, since a part's height grows with the rows it shows."""
    if _lines(part(available), width) <= room:
        return available
    low, high = 0, available  # part(low) is taken to fit, part(high) does not
    while high - low > 1:
        middle = (low + high) // 2
        if _lines(part(middle), width) <= room:
            low = middle
        else:
            high = middle
    return low


def fit_rows(build: Callable[[int], RenderableType], rows: int, width: int, height: int | None) -> RenderableType:
    """``build(k)`` for the most rows ``k <= rows`` that fit in ``height`` lines (at least one row;
    all of them when ``height`` is None): how a live view keeps its bottom on a short terminal."""
    if height is None:
        return build(rows)
    return build(max(_most(rows, height, build, width), min(1, rows)))


# -- formatting ---------------------------------------------------------------------------------


def sparkline(values: Sequence[float | None], width: int) -> str:
    """The last ``width`` values as unicode blocks scaled between their min and max (blank = unknown)."""
    if width <= 0:
        return ""
    tail = list(values)[-width:]
    finite = [v for v in tail if v is not None and math.isfinite(v)]
    if not finite:
        return " " * len(tail) if tail else ""
    low, high = min(finite), max(finite)
    span = high - low
    top = len(SPARK_BLOCKS) - 1
    chars = []
    for value in tail:
        if value is None or not math.isfinite(value):
            chars.append(" ")
        elif span == 0:
            chars.append(SPARK_BLOCKS[top // 2])
        else:
            chars.append(SPARK_BLOCKS[round((value - low) / span * top)])
    return "".join(chars)


def _ago(moment: datetime | None, now: datetime) -> str:
    return "–" if moment is None else f"{format_duration(seconds_between(moment, now))} ago"


def _job_label(job: JobRecord) -> str:
    return f"#{job.id} {job.name}"


def _running_label(job: JobRecord) -> Text:
    """``#3 mlp``, with what a watcher should know about this run: a second attempt, a pending cancel."""
    label = Text(_job_label(job))
    notes = []
    if job.attempts > 1:
        notes.append(f"attempt {job.attempts} of {job.max_attempts}")
    if job.cancel_requested:
        notes.append("cancelling")
    if notes:
        label.append(f" ({', '.join(notes)})", style="yellow")
    return label


def _state_text(state: JobState) -> Text:
    return Text(state.value, style=STATE_STYLE.get(state, ""))


# -- sections -----------------------------------------------------------------------------------


def _header(snapshot: Snapshot, now: datetime) -> Text:
    text = Text()
    text.append("trainyard", style="bold")
    text.append(f"  {snapshot.source}  ", style="dim")
    text.append(now.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"), style="dim")
    return text


def _sweeps(snapshot: Snapshot, width: int) -> RenderableType:
    """The sweeps: name, trials done of total, running, pruned, best objective and its parameters,
    and a sparkline of the best so far."""
    from trainyard.display import format_params

    table = Table(title="Sweeps", title_justify="left", title_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("SWEEP", no_wrap=True)
    table.add_column("STATE", no_wrap=True)
    table.add_column("DONE", justify="right", no_wrap=True)
    table.add_column("RUNNING", justify="right", no_wrap=True)
    table.add_column("PRUNED", justify="right", no_wrap=True)
    table.add_column("BEST", justify="right", no_wrap=True)
    table.add_column("BEST SO FAR", no_wrap=True)
    table.add_column("BEST PARAMETERS", overflow="fold")
    spark = 12 if width >= NARROW_WIDTH else 6
    for sweep in snapshot.sweeps:
        table.add_row(
            f"#{sweep.id} {sweep.name}",
            f"{sweep.state} ({sweep.method})",
            f"{sweep.done}/{sweep.total}",
            str(sweep.running),
            str(sweep.pruned),
            format_mse(sweep.best),
            Text(sparkline(sweep.best_so_far, spark), style="green"),
            format_params(sweep.best_params) or "–",
        )
    return table


def _queue(snapshot: Snapshot, now: datetime) -> Text:
    text = Text()
    text.append("Queue ", style="bold")
    pieces: list[Text] = []
    for state in JobState:
        piece = Text()
        piece.append(f"{state.value} ", style=STATE_STYLE[state])
        piece.append(str(snapshot.count(state)), style="bold")
        if state is JobState.QUEUED and snapshot.oldest_queued_at is not None:
            piece.append(f" (oldest waiting {format_duration(seconds_between(snapshot.oldest_queued_at, now))})")
        pieces.append(piece)
    pieces.append(Text(f"total {snapshot.total_jobs}", style="dim"))
    text.append_text(Text(" · ").join(pieces))
    if snapshot.total_jobs == 0:
        text.append("\nNo jobs in the store yet: submit some with `trainyard run specs/*.yaml`.", style="dim")
    return text


def _worker_state(worker: WorkerRecord, now: datetime) -> Text:
    if is_lost(worker, now):
        return Text("lost", style="bold red")
    style = {"busy": "cyan", "idle": "green", "stopped": "dim"}.get(worker.state.value, "")
    return Text(worker.state.value, style=style)


def _workers(snapshot: Snapshot, now: datetime, narrow: bool) -> RenderableType:
    if not snapshot.workers:
        return Text("Workers: none has sent a heartbeat yet (start one with `trainyard worker`).", style="dim")
    table = Table(title="Workers", title_justify="left", title_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("Worker", overflow="ellipsis", no_wrap=True, min_width=6)
    if not narrow:
        table.add_column("Host", overflow="ellipsis", no_wrap=True, min_width=4)
        table.add_column("Devices", overflow="ellipsis", no_wrap=True, min_width=7)
    table.add_column("State", no_wrap=True, min_width=7)
    table.add_column("Job", no_wrap=True, overflow="ellipsis", min_width=4)
    table.add_column("Heartbeat", no_wrap=True, min_width=9)
    for worker in snapshot.workers:
        job = ", ".join(f"#{job_id}" for job_id in _jobs_of(worker, snapshot)) or "–"
        state = _worker_state(worker, now)
        heartbeat = Text(_ago(worker.last_heartbeat, now), style="red" if is_lost(worker, now) else "")
        if narrow:
            table.add_row(worker.name, state, job, heartbeat)
        else:
            table.add_row(worker.name, worker.host, ", ".join(worker.devices) or "–", state, job, heartbeat)
    return table


def _jobs_of(worker: WorkerRecord, snapshot: Snapshot) -> list[int]:
    """The jobs a worker trains: the one its heartbeat names and the running ones attributed to it
    (a worker with several pool processes trains several jobs at once)."""
    ids = {r.job.id for r in snapshot.running if r.worker == worker.name}
    if worker.current_job_id is not None and worker.state is not WorkerState.STOPPED:
        ids.add(worker.current_job_id)
    return sorted(ids)


def _section(title: str, caption: str | None) -> Table:
    """The table of a dashboard section: its title above, what it leaves out below."""
    return Table(
        title=title,
        title_justify="left",
        title_style="bold",
        caption=caption,
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )


def _not_shown(count: int, what: str, hint: str = "") -> str | None:
    """``and 3 more <what>s not shown<hint>`` (None for none)."""
    return f"and {count} more {what}{'s' if count != 1 else ''} not shown{hint}" if count else None


def _progress(running: RunningJob, bar_width: int) -> Text:
    bar = progress_bar(running.epochs_done, running.job.epochs_total, bar_width)
    bar.append(f" {running.epochs_done}/{running.job.epochs_total}")
    return bar


def _running(snapshot: Snapshot, now: datetime, width: int) -> RenderableType:
    if not snapshot.running:
        return Text("Running: no job is running.", style="dim")
    caption = _not_shown(snapshot.running_not_shown, "running job")
    if width < NARROW_WIDTH:
        return _running_stacked(snapshot, now, width, caption)

    spark_width = 12 if width < 140 else 20
    table = _section("Running", caption)
    # Only the job and worker names give way (they wrap); numbers are never cut.
    table.add_column("Job", overflow="fold", min_width=8)
    table.add_column("Worker", overflow="fold", min_width=6)
    table.add_column("Epoch", no_wrap=True)
    table.add_column("Elapsed", no_wrap=True, justify="right")
    table.add_column("ETA", no_wrap=True, justify="right")
    table.add_column("Output", overflow="ellipsis", no_wrap=True, min_width=6)
    table.add_column(_val_header(snapshot.running), no_wrap=True, justify="right")
    table.add_column("best", no_wrap=True, justify="right")
    table.add_column("trend", no_wrap=True, width=spark_width)
    for running in snapshot.running:
        names = running.output_names or ["–"]
        job = running.job
        elapsed = seconds_between(job.started_at, now) if job.started_at else None
        table.add_row(
            _running_label(job),
            running.worker or job.lease_owner or "–",
            _progress(running, 10),
            format_duration(elapsed),
            format_duration(running.eta_seconds(now)),
            "\n".join(names),
            "\n".join(headline_cell(running.headline(n), running.latest_headline(n)) for n in names),
            "\n".join(headline_cell(running.headline(n), running.best_headline(n)) for n in names),
            Text("\n".join(sparkline(running.headline_curve(n), spark_width) for n in names), style="cyan"),
        )
    return table


def _running_stacked(snapshot: Snapshot, now: datetime, width: int, caption: str | None) -> RenderableType:
    parts: list[RenderableType] = [Text("Running", style="bold")]
    spark_width = max(0, min(16, width - 40))
    for running in snapshot.running:
        job = running.job
        elapsed = seconds_between(job.started_at, now) if job.started_at else None
        head = Text()
        label = _running_label(job)
        label.stylize("bold", 0, len(_job_label(job)))
        head.append_text(label)
        worker = running.worker or job.lease_owner
        if worker:
            head.append(f" on {worker}")
        head.append(f"  epoch {running.epochs_done}/{job.epochs_total}")
        head.append(f"  {format_duration(elapsed)} elapsed, ETA {format_duration(running.eta_seconds(now))}")
        parts.append(head)
        if width >= 40:
            total = job.epochs_total
            bar_width = min(40, width - 4)
            parts.append(progress_bar(running.epochs_done, total, bar_width))
        outputs = Table(box=None, pad_edge=False, padding=(0, 1), show_edge=False)
        outputs.add_column("  output", overflow="ellipsis", no_wrap=True, min_width=6)
        outputs.add_column(_val_header([running]), no_wrap=True, justify="right")
        outputs.add_column("best", no_wrap=True, justify="right")
        if spark_width:
            outputs.add_column("trend", no_wrap=True, width=spark_width)
        for name in running.output_names or ["–"]:
            row: list[RenderableType] = [
                f"  {name}",
                headline_cell(running.headline(name), running.latest_headline(name)),
                headline_cell(running.headline(name), running.best_headline(name)),
            ]
            if spark_width:
                row.append(Text(sparkline(running.headline_curve(name), spark_width), style="cyan"))
            outputs.add_row(*row)
        parts.append(outputs)
    if caption:
        parts.append(Text(caption, style="dim"))
    return Group(*parts)


def _val_header(running: Sequence[RunningJob]) -> str:
    """``val MSE`` while every output shown is a regression; ``val`` (each cell naming its metric) else."""
    names = {r.headline(n) for r in running for n in r.output_names}
    return "val MSE" if names <= {"mse"} else "val"


def _final_header(jobs: Sequence[JobRecord]) -> str:
    """`` MSE`` while every finished output shown is a regression, else nothing (the cells name it)."""
    return " MSE" if only_mse(jobs) else ""


def _error_line(job: JobRecord, limit: int) -> str | None:
    if not job.error:
        return None
    lines = [line for line in job.error.strip().splitlines() if line.strip()]
    line = lines[-1] if lines else job.error.strip()  # a traceback's last line says what happened
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _recent(snapshot: Snapshot, now: datetime, width: int, *, shown: int | None = None) -> RenderableType:
    """The recently finished jobs, the newest ``shown`` of them (all by default)."""
    if not snapshot.recent:
        return Text("Recently finished: none yet.", style="dim")
    jobs = snapshot.recent if shown is None else snapshot.recent[:shown]
    hidden = len(snapshot.recent) - len(jobs)
    caption = _not_shown(hidden, "finished job", " (trainyard jobs)")
    if not jobs:
        return Text(f"Recently finished: {len(snapshot.recent)} job(s), not shown (trainyard jobs)", style="dim")
    if width < NARROW_WIDTH:
        return _recent_stacked(jobs, now, width, caption)
    table = _section("Recently finished", caption)
    table.add_column("Job", overflow="fold", min_width=10, max_width=max(24, width // 3))
    table.add_column("State", no_wrap=True)
    table.add_column("Finished", no_wrap=True, justify="right")
    table.add_column("Duration", no_wrap=True, justify="right")
    table.add_column("Output", overflow="ellipsis", no_wrap=True, min_width=6)
    metric = _final_header(jobs)
    table.add_column(f"val{metric}", no_wrap=True, justify="right")
    table.add_column(f"test{metric}", no_wrap=True, justify="right")
    for job in jobs:
        names = job.output_names or ["–"]
        label = Text(_job_label(job))
        error = _error_line(job, 200)
        if error:
            label.append("\n" + error, style="red")
        table.add_row(
            label,
            _state_text(job.state),
            _ago(job.finished_at, now),
            format_duration(job_duration(job)),
            "\n".join(names),
            "\n".join(final_cell(job.val_metrics.get(n), job.val_mse.get(n)) for n in names),
            "\n".join(final_cell(job.test_metrics.get(n), job.test_mse.get(n)) for n in names),
        )
    return table


def _recent_stacked(jobs: Sequence[JobRecord], now: datetime, width: int, caption: str | None) -> RenderableType:
    parts: list[RenderableType] = [Text("Recently finished", style="bold")]
    for job in jobs:
        head = Text()
        head.append(_job_label(job), style="bold")
        head.append("  ")
        head.append_text(_state_text(job.state))
        head.append(f"  {format_duration(job_duration(job))}, {_ago(job.finished_at, now)}")
        parts.append(head)
        error = _error_line(job, 4 * width)
        if error:
            parts.append(Text(f"  {error}", style="red"))
        names = job.output_names
        if names:
            outputs = Table(box=None, pad_edge=False, padding=(0, 1), show_edge=False)
            outputs.add_column("  output", overflow="ellipsis", no_wrap=True, min_width=6)
            metric = _final_header([job])
            outputs.add_column(f"val{metric}", no_wrap=True, justify="right")
            outputs.add_column(f"test{metric}", no_wrap=True, justify="right")
            for name in names:
                outputs.add_row(
                    f"  {name}",
                    final_cell(job.val_metrics.get(name), job.val_mse.get(name)),
                    final_cell(job.test_metrics.get(name), job.test_mse.get(name)),
                )
            parts.append(outputs)
    if caption:
        parts.append(Text(caption, style="dim"))
    return Group(*parts)
