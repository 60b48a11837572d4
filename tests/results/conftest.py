"""Fixtures of the results tests: jobs stored and ended through the store's worker API (no training)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from results_builders import Play

from trainyard.db import JobState, Store, Submission


@pytest.fixture
def play() -> Play:
    """``play(store, doc, val=[...], test={...}, end=SUCCEEDED, tags=())``: one job stored, claimed,
    one epoch per value of ``val`` (the val MSE of ``y``; ``aux`` gets twice it) and ended in ``end``."""

    def run(
        store: Store,
        doc: dict[str, Any],
        val: Sequence[float] = (3.0, 2.0),
        test: dict[str, float] | None = None,
        end: JobState | None = JobState.SUCCEEDED,
        tags: Sequence[str] = (),
    ) -> int:
        (job,) = store.add_jobs([Submission(spec=doc, tags=tuple(tags))])
        if end is None:
            return job.id
        claimed = store.claim_next("results-test/1")
        assert claimed is not None and claimed.id == job.id
        for epoch, value in enumerate(val, start=1):
            outputs = {
                "y": {"loss": value + 1, "val_metrics": {"mse": value, "mae": value / 2}},
                "aux": {"loss": value + 2, "val_metrics": {"mse": 2 * value, "mae": value}},
            }
            store.record_epoch(
                job.id, "results-test/1", {"epoch": epoch, "loss": value + 3, "val_loss": value, "outputs": outputs}
            )
        store.finish(
            job.id,
            "results-test/1",
            end,
            error=None if end is JobState.SUCCEEDED else "stopped",
            test_mse=test if test is not None else {"y": val[-1] + 0.5, "aux": 2 * val[-1] + 0.5},
        )
        return job.id

    return run
