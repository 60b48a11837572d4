"""Lineage: what the submitter and the worker record (versions, host, devices, spec sha256, data,
git state of the spec file's repository), what ``show`` prints, and the ``model.json`` card."""

from __future__ import annotations

import json
import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path

import pytest
from click.testing import CliRunner
from worker_fixtures import write_spec

from trainyard.cli import main
from trainyard.config import Settings
from trainyard.db import JobState, Store
from trainyard.scheduler import operations
from trainyard.worker import runner


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git repository with one committed spec, the working directory of the test."""
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q")
    git(path, "config", "user.email", "t@example.org")
    git(path, "config", "user.name", "t")
    write_spec(path, "model", epochs=2)
    (path / "README").write_text("x\n")
    git(path, "add", ".")
    git(path, "commit", "-q", "-m", "first")
    monkeypatch.chdir(path)
    return path


def submitted_lineage(spec: Path) -> tuple[dict, dict]:
    (job,) = operations.submit([spec], dispatch=False)
    shown = operations.show(job.id)
    return shown["lineage"]["submit"], shown


def installed() -> dict[str, str]:
    import keras
    import tensorflow as tf

    return {
        "trainyard": metadata.version("trainyard"),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "python": platform.python_version(),
    }


def test_submit_records_versions_spec_hash_data_and_a_clean_then_dirty_repository(home: Path, repo: Path) -> None:
    spec = repo / "model.yaml"
    clean, shown = submitted_lineage(spec)
    assert {key: clean[key] for key in installed()} == installed()
    assert clean["host"] == socket.gethostname()
    assert clean["spec_sha256"] == shown["spec_hash"] and len(clean["spec_sha256"]) == 64
    assert clean["data_fingerprint"] == shown["context"]["data_fingerprint"]
    assert clean["spec_file"] == str(spec.resolve())
    head = git(repo, "rev-parse", "HEAD")
    assert clean["git"] == {
        "repository": str(repo.resolve()),
        "path": "model.yaml",
        "commit": head,
        "dirty": False,
        "committed": True,
    }

    spec.write_text(spec.read_text().replace("epochs: 2", "epochs: 3"))  # an uncommitted change
    dirty, _ = submitted_lineage(spec)
    assert dirty["git"]["commit"] == head and dirty["git"]["dirty"] is True and dirty["git"]["committed"] is False
    assert dirty["spec_file_sha256"] != clean["spec_file_sha256"]

    git(repo, "commit", "-q", "-am", "three epochs")
    new = write_spec(repo, "untracked", epochs=2)  # a new file: the repository is clean, the spec not in it
    untracked, _ = submitted_lineage(new)
    assert untracked["git"]["dirty"] is False and untracked["git"]["committed"] is False
    assert untracked["git"]["commit"] == git(repo, "rev-parse", "HEAD") != head

    text = CliRunner().invoke(main, ["show", str(shown["id"])]).stdout
    assert f"@ {head} (clean)" in text and "spec sha256" in text and "submitted on" in text


def test_a_spec_outside_any_repository_records_no_git_state(home: Path, tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "plain"
    folder.mkdir()
    monkeypatch.chdir(folder)
    record, _ = submitted_lineage(write_spec(folder, "model"))
    assert record["git"] is None and record["spec_file"].endswith("model.yaml")


@pytest.mark.slow
def test_the_worker_records_where_it_trained_and_writes_the_model_card(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import keras

    monkeypatch.chdir(tmp_path)
    (queued,) = operations.submit([write_spec(tmp_path, "carded", epochs=2)], dispatch=False, tags=["card"])
    store = Store.open(settings.db_url)
    claimed = store.claim_next("lineage@test/1", settings.lease_seconds)
    assert claimed is not None and claimed.id == queued.id
    assert runner.run_job(store, claimed, "lineage@test/1", settings) is JobState.SUCCEEDED

    shown = operations.show(queued.id)
    worker = shown["lineage"]["worker"]
    assert {key: worker[key] for key in installed()} == installed()
    assert worker["host"] == socket.gethostname() and worker["worker"] == "lineage@test/1"
    assert worker["strategy"] == "none" and worker["replicas"] == 1
    assert len(worker["devices"]) == 1 and "CPU:0" in worker["devices"][0]

    card_file = Path(shown["model_path"]).with_name("model.json")
    card = json.loads(card_file.read_text())
    model = keras.saving.load_model(shown["model_path"])
    assert [(i["name"], i["dtype"]) for i in card["inputs"]] == [(t.name, t.dtype) for t in model.inputs]
    assert card["inputs"][0]["shape"] == [None, 10]
    assert card["inputs"][0]["columns"] == ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
    assert card["job"]["id"] == queued.id and card["job"]["tags"] == ["card"]
    assert card["metrics"]["test"] == shown["test_metrics"] and card["metrics"]["val"] == shown["val_metrics"]
    assert card["spec"] == shown["spec"] and card["lineage"] == shown["lineage"]
    from trainyard.lineage import file_sha256

    assert card["model_sha256"] == file_sha256(shown["model_path"])

    text = CliRunner().invoke(main, ["show", str(queued.id)]).stdout
    assert "trained on" in text and "strategy none" in text
