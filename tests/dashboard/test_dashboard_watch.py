"""The issue's "done means": ``trainyard run specs/*.yaml`` trains the four article models in one
process while the dashboard, reading the same store, shows each output's validation MSE epoch by epoch."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dashboard_builders import print_to_text

from trainyard.dashboard.render import render
from trainyard.dashboard.snapshot import snapshot_reader
from trainyard.db import Store, utcnow
from trainyard.db.engine import dispose_all
from trainyard.display import format_mse

REPO = Path(__file__).resolve().parents[2]
SPECS = sorted((REPO / "specs").glob("*.yaml"))
EPOCHS = 12
WIDTH = 160


def running_rows(text: str) -> list[tuple[int, int, str, str]]:
    """``(job id, epochs shown, output, latest val MSE shown)`` for each output row of the Running table."""
    rows: list[tuple[int, int, str, str]] = []
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("Running")), None)
    if start is None or "no job is running" in lines[start]:
        return rows
    job: tuple[int, int] | None = None
    for line in lines[start + 3 :]:
        if not line.strip() or line.startswith("Recently finished"):
            break
        head = re.match(r"\s*#(\d+) .*?[━─]+ (\d+)/\d+\s+\S+\s+\S+\s+(\S+)\s+(\S+)", line)
        if head:
            job = (int(head.group(1)), int(head.group(2)))
            rows.append((*job, head.group(3), head.group(4)))
        elif job is not None:
            output, latest = line.split()[:2]
            rows.append((*job, output, latest))
    return rows


@pytest.mark.slow
def test_the_dashboard_follows_the_four_article_models_epoch_by_epoch(home: Path):
    assert [p.stem for p in SPECS] == ["mlp", "multi_input", "multi_output", "wide_deep"]
    env = {**os.environ, "TRAINYARD_HOME": str(home), "TF_CPP_MIN_LOG_LEVEL": "2"}
    command = [
        sys.executable,
        "-m",
        "trainyard",
        "run",
        *map(str, SPECS),
        "--set",
        f"training.epochs={EPOCHS}",
        "-c",
        "1",
        "--timeout",
        "400",
    ]
    url = f"sqlite:///{home / 'trainyard.sqlite'}"
    read = snapshot_reader(url)
    seen: set[tuple[int, int, str, str]] = set()
    run = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        while run.poll() is None:
            seen.update(running_rows(print_to_text(render(read(), utcnow(), WIDTH), WIDTH)))
            time.sleep(0.05)
        output = run.stdout.read().decode() if run.stdout else ""
        assert run.returncode == 0, output
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
    try:
        store = Store.open(url)
        # every MSE the dashboard showed mid-training is the one stored for that epoch and output
        mid_training = {row for row in seen if 0 < row[1] < EPOCHS}
        assert mid_training, f"no frame caught a job between its first and last epoch: {sorted(seen)}"
        for job_id, epoch, output, shown in seen:
            if epoch:
                assert shown == format_mse(store.epochs(job_id)[epoch - 1].val_mse[output]), (job_id, epoch, output)
        # and the frames followed the models' epochs (several epochs of a job seen, updating)
        epochs_seen = {job_id: {epoch for j, epoch, _, _ in seen if j == job_id} for job_id, *_ in seen}
        assert max(len(epochs) for epochs in epochs_seen.values()) >= 2, epochs_seen
        # all four models were seen training, and multi_output with both its outputs
        jobs = {job.name: job for job in store.list_jobs()}
        assert set(epochs_seen) == {job.id for job in jobs.values()}, epochs_seen
        multi = jobs["multi_output"].id
        assert {output for j, epoch, output, _ in seen if j == multi and epoch} == {"output_1", "output_2"}

        final = print_to_text(render(read(), utcnow(), WIDTH), WIDTH)
        assert "succeeded 4" in final and "running 0" in final
        for job in store.list_jobs():
            assert job.val_mse and all(format_mse(v) in final for v in job.test_mse.values())
    finally:
        dispose_all()
