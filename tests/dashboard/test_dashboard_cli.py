"""``trainyard dashboard --once/--json`` and ``trainyard plot`` through click, on a real SQLite store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from trainyard.cli import main
from trainyard.db import JobState, Store, WorkerState
from trainyard.db.engine import dispose_all
from trainyard.display import format_mse


@pytest.fixture
def filled(home: Path) -> dict:
    """The default store of a fresh TRAINYARD_HOME: a two-output job done, a one-output job running."""
    store = Store.open()
    done, running, _queued = store.add_jobs(
        [
            {"name": "multi_output", "training": {"epochs": 3}},
            {"name": "mlp", "training": {"epochs": 4}},
            {"name": "wide_deep"},
        ]
    )
    store.claim_next("w1")
    for epoch, (main_mse, aux_mse) in enumerate([(2.0, 3.0), (0.81234, 1.23456), (0.71234, 1.03456)], start=1):
        outputs = {"main": {"loss": main_mse, "val_mse": main_mse}, "aux": {"loss": aux_mse, "val_mse": aux_mse}}
        store.record_epoch(done.id, "w1", {"epoch": epoch, "loss": 1.0, "val_loss": 1.0, "outputs": outputs})
    store.finish(done.id, "w1", JobState.SUCCEEDED, test_mse={"main": 0.7345, "aux": 1.1111})
    store.claim_next("w1")
    store.record_epoch(
        running.id, "w1", {"epoch": 1, "loss": 0.5, "val_loss": 0.6, "outputs": {"y": {"loss": 0.5, "val_mse": 0.6123}}}
    )
    store.worker_heartbeat("w1", "box", ["/cpu:0"], WorkerState.BUSY, running.id)
    yield {"store": store, "done": store.get_job(done.id), "running": store.get_job(running.id)}
    dispose_all()


def invoke(*args: str, width: int = 150):
    return CliRunner().invoke(main, list(args), env={"COLUMNS": str(width)}, catch_exceptions=False)


def test_once_prints_one_frame_with_the_stored_values(filled: dict):
    result = invoke("dashboard", "--once")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "queued 1" in out and "running 1" in out and "succeeded 1" in out and "total 3" in out
    done = filled["done"]
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if f"#{done.id} multi_output" in line)
    for line, output in zip(lines[start : start + 2], ("main", "aux")):
        assert line.split()[-3:] == [output, format_mse(done.val_mse[output]), format_mse(done.test_mse[output])]
    running_row = next(line for line in out.splitlines() if f"#{filled['running'].id} mlp" in line)
    assert "1/4" in running_row and "0.6123" in running_row and "w1" in running_row


def test_once_adapts_to_a_narrow_terminal(filled: dict):
    result = invoke("dashboard", "--once", width=60)
    assert result.exit_code == 0
    assert max(len(line) for line in result.output.splitlines()) <= 60
    assert "0.6123" in result.output and format_mse(filled["done"].test_mse["aux"]) in result.output


def test_json_prints_the_same_snapshot(filled: dict):
    result = invoke("dashboard", "--json")
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert data["queue"]["counts"]["queued"] == 1 and data["queue"]["total"] == 3
    (recent,) = data["recent"]
    assert recent["outputs"]["aux"] == {"val_mse": 1.03456, "test_mse": 1.1111}
    (running,) = data["running"]
    assert running["outputs"]["y"]["val_mse_by_epoch"] == [0.6123] and running["worker"] == "w1"
    assert [w["name"] for w in data["workers"]] == ["w1"]


def test_an_unreachable_store_is_one_line_and_exit_2(home: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TRAINYARD_DB_URL", "postgresql+psycopg://postgres@127.0.0.1:9/nowhere")
    result = CliRunner().invoke(main, ["dashboard", "--once"])
    assert result.exit_code == 2
    assert result.stderr.startswith(
        "error: cannot reach the job store at postgresql+psycopg://postgres@127.0.0.1:9/nowhere"
    )
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_refresh_interval_must_be_positive(home: Path):
    result = CliRunner().invoke(main, ["dashboard", "--refresh", "0"])
    assert result.exit_code == 2 and "--refresh" in result.output


def test_plot_writes_one_panel_per_output(filled: dict, tmp_path: Path):
    from matplotlib.image import imread

    one, two = tmp_path / "one.png", tmp_path / "two.png"
    assert invoke("plot", str(filled["running"].id), "--out", str(one)).exit_code == 0
    result = invoke("plot", f"#{filled['done'].id}", str(filled["running"].id), "--out", str(two))
    assert result.exit_code == 0 and result.output.strip() == f"wrote {two}"
    # the two jobs have three outputs between them (main, aux, y): a 2x2 grid, against one panel
    one_h, one_w = imread(one).shape[:2]
    two_h, two_w = imread(two).shape[:2]
    assert two_w > 1.5 * one_w and two_h > 1.5 * one_h


def test_plot_defaults_to_a_file_named_after_the_jobs(filled: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    job_id = filled["done"].id
    assert invoke("plot", str(job_id)).exit_code == 0
    assert (tmp_path / f"trainyard-jobs-{job_id}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_of_an_unknown_job_or_a_job_without_epochs_is_exit_2(filled: dict, tmp_path: Path):
    result = CliRunner().invoke(main, ["plot", str(filled["done"].id), "999", "--out", str(tmp_path / "x.png")])
    assert result.exit_code == 2 and "no job with id 999" in result.stderr
    queued = filled["store"].list_jobs(JobState.QUEUED)[0]
    result = CliRunner().invoke(main, ["plot", str(queued.id), "--out", str(tmp_path / "x.png")])
    assert result.exit_code == 2 and "nothing to plot: no epoch recorded yet" in result.stderr
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("flag", ["--once", "--json"])
def test_before_anything_is_submitted_it_shows_an_empty_store_and_creates_nothing(home: Path, flag: str):
    result = invoke("dashboard", flag)
    assert result.exit_code == 0, result.output
    if flag == "--json":
        assert json.loads(result.output)["queue"]["total"] == 0
    else:
        assert "total 0" in result.output and "No jobs in the store yet" in result.output
    assert list(home.iterdir()) == []


@pytest.mark.postgres
def test_an_empty_postgresql_database_gets_no_schema_from_the_dashboard(
    home: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
):
    import sqlalchemy as sa

    monkeypatch.setenv("TRAINYARD_DB_URL", pg_url)
    result = invoke("dashboard", "--json")
    assert result.exit_code == 0 and json.loads(result.output)["queue"]["total"] == 0
    engine = sa.create_engine(pg_url)
    try:
        assert sa.inspect(engine).get_table_names() == []
    finally:
        engine.dispose()
        dispose_all()


def test_plot_to_an_unknown_image_format_is_one_line_and_exit_2(filled: dict, tmp_path: Path):
    result = CliRunner().invoke(main, ["plot", str(filled["done"].id), "--out", str(tmp_path / "curves.xyz")])
    assert result.exit_code == 2
    assert result.stderr.startswith(
        f"error: cannot write the plot to {tmp_path / 'curves.xyz'}: Format 'xyz' is not supported"
    )


def test_plot_of_something_that_is_not_a_job_id_is_exit_2(home: Path, tmp_path: Path):
    result = CliRunner().invoke(main, ["plot", "banana", "--out", str(tmp_path / "x.png")])
    assert result.exit_code == 2 and result.stderr.strip() == "error: no job with id 'banana'"
    result = CliRunner().invoke(main, ["plot", "3", "--out", str(tmp_path / "x.png")])  # no store here yet
    assert result.exit_code == 2 and result.stderr.strip() == "error: no job with id 3"
    assert list(home.iterdir()) == []
