"""Running a sweep in this process for the sweep benchmarks: the real runner, one trial at a time.

Each trial is claimed from the store and trained by ``trainyard.worker.runner.run_job`` (what a
worker's training process runs: every epoch stored, the pruner asked after each epoch), and the
next trials are asked for as each ends, exactly as the workers do; only Celery and the broker are
left out, since these benchmarks count epochs and compare objectives, not wall time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def article_spec(epochs: int) -> str:
    """The article's multi-output spec (``specs/multi_output.yaml``) with SGD, as the article trains
    it, and ``epochs`` epochs: what the sweep benchmarks search over."""
    import re

    from machine import SPECS

    text = (SPECS / "multi_output.yaml").read_text()
    text = re.sub(r"(?m)^  optimizer:.*$", "  optimizer: sgd", text)
    return re.sub(r"(?m)^  epochs: \d+", f"  epochs: {epochs}", text)


def run_sweep(folder: Path, sweep_text: str, spec_text: str, name: str) -> dict[str, Any]:
    """Write ``spec.yaml`` and ``<name>.yaml`` into ``folder``, run the sweep to its end in a store
    under ``folder/home``; return ``sweep show --json``'s document plus ``epochs_run``."""
    from trainyard.config import Settings
    from trainyard.db import JobState, Store, SweepState
    from trainyard.scheduler import sweeps
    from trainyard.sweeps import advance
    from trainyard.worker.runner import run_job

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spec.yaml").write_text(spec_text)
    path = folder / f"{name}.yaml"
    path.write_text(sweep_text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINYARD_")}
    env.update(TRAINYARD_HOME=str(folder / "home"), TRAINYARD_DATA_ROOTS=str(folder), TRAINYARD_BACKUP_SECONDS="60")
    settings = Settings.from_env(env)
    settings.ensure_home()
    record, _ = sweeps.submit_sweep(path, settings=settings, dispatch=False, build=False)
    store = Store.open(settings.db_url)
    owner = f"bench@{os.uname().nodename}/{os.getpid()}"
    while store.get_sweep(record.id).state is SweepState.RUNNING:
        job = store.claim_next(owner, settings.lease_seconds)
        if job is None:
            advance(store, record.id)
            if store.count_jobs(JobState.QUEUED) == 0:
                break
            continue
        if run_job(store, job, owner, settings) is None:
            raise SystemExit(f"job {job.id} was handed back (SIGTERM): the sweep stops here")
    document = sweeps.sweep_document(store, store.get_sweep(record.id))
    document["epochs_run"] = sum(len(epochs) for epochs in store.sweep_epochs(record.id).values())
    return document
