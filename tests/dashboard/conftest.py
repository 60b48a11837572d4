"""Hand-built snapshots and a recording console: frames are read the way a user reads them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pytest
from dashboard_builders import NOW, ago, make_epochs, make_job, print_to_text

from trainyard.dashboard.render import render
from trainyard.dashboard.snapshot import RunningJob, Snapshot
from trainyard.db.records import JobState, WorkerRecord, WorkerState


@pytest.fixture
def frame_text() -> Callable[..., str]:
    """``frame_text(snapshot, width=160, now=NOW)`` -> the frame as plain text."""

    def _frame(snapshot: Snapshot, width: int = 160, now: datetime = NOW, problem: str | None = None) -> str:
        return print_to_text(render(snapshot, now, width, problem=problem), width)

    return _frame


@pytest.fixture
def busy_snapshot() -> Snapshot:
    """Two workers (one lost), two running jobs (one two-output model at epoch 7/20), two finished."""
    wide = make_job(
        3,
        "wide_and_deep",
        JobState.RUNNING,
        epochs_done=7,
        started_at=ago(80),
        lease_owner="alpha",
        val_mse={"main": 0.4429, "aux": 0.7857},
    )
    wide_epochs = make_epochs(
        3,
        {
            "main": [1.3, 0.81, 0.62, 0.5, 0.47, 0.4321, 0.4429],
            "aux": [2.5, 1.5, 1.17, 1.0, 0.9, 0.8333, 0.7857],
        },
        first_at=70,
        seconds_each=10,
    )
    fresh = make_job(4, "mlp", JobState.RUNNING, epochs_total=5, started_at=ago(5), lease_owner="beta")
    succeeded = make_job(
        2,
        "multi_output",
        JobState.SUCCEEDED,
        epochs_done=20,
        started_at=ago(600),
        finished_at=ago(300),
        val_mse={"main": 0.4123, "aux": 0.51234},
        test_mse={"main": 0.4301, "aux": 0.5402},
    )
    failed = make_job(
        1,
        "multi_input",
        JobState.FAILED,
        epochs_done=6,
        started_at=ago(800),
        finished_at=ago(700),
        error="Traceback (most recent call last):\n  ...\ntrainyard.errors.TrainingError: epoch 7: loss is nan",
        val_mse={"price": float("nan")},
    )
    workers = (
        WorkerRecord("alpha", "gpu-box", ["/gpu:0", "/gpu:1"], WorkerState.BUSY, 3, ago(4000), ago(2)),
        WorkerRecord("gamma", "old-box", ["/cpu:0"], WorkerState.IDLE, None, ago(9000), ago(95)),
    )
    return Snapshot(
        taken_at=NOW,
        source="sqlite:////tmp/trainyard.sqlite",
        counts={JobState.QUEUED: 5, JobState.RUNNING: 2, JobState.SUCCEEDED: 1, JobState.FAILED: 1},
        oldest_queued_at=ago(252),
        workers=workers,
        running=(RunningJob(wide, wide_epochs, "alpha"), RunningJob(fresh, (), None)),
        recent=(succeeded, failed),
    )
