"""``trainyard worker | reconcile | run`` from the command line."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from worker_fixtures import write_spec

from trainyard.cli import main
from trainyard.config import Settings
from trainyard.db import JobState, Store
from trainyard.display import format_mse
from trainyard.queue import transport


def test_worker_dry_run_prints_the_plan_and_the_celery_command(
    env: dict[str, str], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # no GPU on any host: the CPU plan, whatever this machine has
    result = CliRunner().invoke(main, ["worker", "--dry-run", "-n", "gpu-box@%h", "-c", "2", "--", "--without-gossip"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"trainyard worker gpu-box@%h: no GPU found: 2 CPU training processes ({os.cpu_count()} cores)",
        f"  broker:    sqla+sqlite:///{settings.home / 'broker.sqlite'}",
        f"  store:     sqlite:///{settings.home / 'trainyard.sqlite'}",
        f"  artifacts: {settings.artifact_root}",
        "  celery:    celery -A trainyard.worker worker -n gpu-box@%h -c 2 -P prefork -Q trainyard --loglevel INFO"
        " --without-gossip",
    ]


def test_worker_per_gpu_without_two_gpus_says_it_is_ignored(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    result = CliRunner().invoke(main, ["worker", "--dry-run", "--per-gpu", "-c", "1", "-n", "w@h"])
    assert result.exit_code == 0, result.output
    assert result.stderr == "--per-gpu: needs two GPUs or more, 0 found; ignored\n"
    assert (
        result.stdout.splitlines()[0]
        == f"trainyard worker w@h: no GPU found: one CPU training process ({os.cpu_count()} cores)"
    )


def test_worker_refuses_an_unreachable_broker_naming_it_without_password(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRAINYARD_BROKER_URL", "redis://:hunter2@127.0.0.1:1/0")
    result = CliRunner().invoke(main, ["worker"])
    assert result.exit_code == 2
    assert "redis://:***@127.0.0.1:1/0" in result.output and "hunter2" not in result.output


def test_reconcile_sends_the_missing_slots(env: dict[str, str], settings: Settings) -> None:
    store = Store.open(settings.db_url)
    ids = [j.id for j in store.add_jobs([{"name": "j", "training": {"epochs": 2}}] * 2)]
    result = CliRunner().invoke(main, ["reconcile"])
    assert result.exit_code == 0, result.output
    assert f"re-dispatched {ids[0]}, {ids[1]}" in result.output
    assert transport.queue_size(settings) == 2


@pytest.mark.slow
def test_run_trains_everything_and_exits_by_outcome(tmp_path: Path, env: dict[str, str], settings: Settings) -> None:
    good = write_spec(tmp_path, "good", epochs=2)
    bad = write_spec(tmp_path, "bad", epochs=2, lr=1e12)
    cli = [sys.executable, "-m", "trainyard"]

    ok = subprocess.run([*cli, "run", str(good)], capture_output=True, text=True, env=env, timeout=600)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    store = Store.open(settings.db_url)
    (job,) = store.list_jobs()
    assert job.state is JobState.SUCCEEDED
    row = next(line for line in ok.stdout.splitlines() if re.search(rf"\b{job.id}\b.*good", line))
    assert format_mse(job.val_mse["y"]) in row and format_mse(job.test_mse["y"]) in row

    mixed = subprocess.run([*cli, "run", str(good), str(bad)], capture_output=True, text=True, env=env, timeout=600)
    assert mixed.returncode == 1, mixed.stdout + mixed.stderr
    newest = {j.name: j.state for j in store.list_jobs(limit=2)}
    assert newest == {"good": JobState.SUCCEEDED, "bad": JobState.FAILED}
    assert "epoch 1: loss is" in mixed.stdout
    # the local workers were stopped cleanly
    assert all(w.state.value == "stopped" for w in store.list_workers())


@pytest.mark.slow
def test_run_interrupted_stops_its_worker_and_leaves_the_job_queued(
    tmp_path: Path, env: dict[str, str], settings: Settings
) -> None:
    from trainyard.worker.local import wait_until

    spec = write_spec(tmp_path, "endless", epochs=100000, batch_size=2)
    run = subprocess.Popen(
        [sys.executable, "-m", "trainyard", "run", str(spec)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        store_ready = wait_until(lambda: (settings.home / "trainyard.sqlite").exists(), 120)
        assert store_ready
        store = Store.open(settings.db_url)
        assert wait_until(lambda: any(j.epochs_done >= 1 for j in store.list_jobs()), 240)
        run.send_signal(signal.SIGINT)
        out, err = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 130, out + err
    assert "stay queued" in err
    (job,) = store.list_jobs()
    assert job.state is JobState.QUEUED and job.attempts == 0 and job.epochs_done >= 1  # handed back
    assert [w.state.value for w in store.list_workers()] == ["stopped"]
