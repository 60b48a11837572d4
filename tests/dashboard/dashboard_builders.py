"""Builders of hand-made records and snapshots for the dashboard tests, and a text console."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from io import StringIO
from typing import Any

from rich.console import Console, RenderableType

from trainyard.db.records import EpochRecord, JobRecord, JobState

NOW = datetime(2026, 11, 29, 12, 0, 0, tzinfo=timezone.utc)


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def make_job(job_id: int, name: str, state: JobState, **fields: Any) -> JobRecord:
    values: dict[str, Any] = dict(
        id=job_id,
        spec_id=1,
        name=name,
        state=state,
        priority=0,
        attempts=1,
        max_attempts=3,
        epochs_total=20,
        epochs_done=0,
        created_at=ago(3600),
        updated_at=ago(10),
    )
    values.update(fields)
    return JobRecord(**values)


def make_epochs(
    job_id: int, curves: dict[str, list[float]], *, first_at: float, seconds_each: float
) -> tuple[EpochRecord, ...]:
    """Epochs 1..n of ``job_id`` with the given validation MSE per output, one every ``seconds_each``."""
    count = len(next(iter(curves.values())))
    return tuple(
        EpochRecord(
            job_id=job_id,
            epoch=i + 1,
            loss=sum(c[i] for c in curves.values()) * 0.9,
            val_loss=sum(c[i] for c in curves.values()),
            outputs={name: {"loss": c[i] * 0.9, "val_mse": c[i]} for name, c in curves.items()},
            recorded_at=ago(first_at - i * seconds_each),
        )
        for i in range(count)
    )


def print_to_text(renderable: RenderableType, width: int) -> str:
    console = Console(file=StringIO(), width=width, record=True, color_system=None, force_terminal=False)
    console.print(renderable)
    return console.export_text()
