"""``trainyard export``: TensorBoard event files read back with TensorBoard's own reader hold every
stored epoch of every job (and the HParams records); the CSV is one tidy row per value."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from results_builders import document

from trainyard.cli import main
from trainyard.db import Store


@pytest.fixture
def store(home: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Store:
    monkeypatch.setenv("TRAINYARD_DB_URL", db_url)
    return Store.open(db_url)


def cli(*args: object) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def reader(folder: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    accumulator.Reload()
    return accumulator


def test_tensorboard_event_files_hold_every_stored_epoch(store: Store, play, tmp_path: Path) -> None:
    from tensorboard.plugins.hparams import plugin_data_pb2

    first = play(store, document(), val=[5.0, 4.0, 3.0], tags=["tb"])
    second = play(store, document(**{"training.optimizer.learning_rate": 0.1}), val=[2.0, 1.0], tags=["tb"])
    out = tmp_path / "tb"
    result = cli("export", "--tag", "tb", "--tensorboard", out)
    assert result.exit_code == 0, result.output

    for job_id in (first, second):
        stored = store.epochs(job_id)
        events = reader(out / f"{job_id}-mlp")
        expected_tags = {
            "loss",
            "val_loss",
            "y/loss",
            "y/val_mse",
            "y/val_mae",
            "aux/loss",
            "aux/val_mse",
            "aux/val_mae",
        }
        assert set(events.Tags()["scalars"]) == expected_tags
        for epoch in stored:
            by_tag = {tag: {e.step: e.value for e in events.Scalars(tag)} for tag in expected_tags}
            assert by_tag["loss"][epoch.epoch] == pytest.approx(epoch.loss)
            assert by_tag["val_loss"][epoch.epoch] == pytest.approx(epoch.val_loss)
            for output in ("y", "aux"):
                assert by_tag[f"{output}/loss"][epoch.epoch] == pytest.approx(epoch.outputs[output]["loss"])
                for metric, value in epoch.val_metrics[output].items():
                    assert by_tag[f"{output}/val_{metric}"][epoch.epoch] == pytest.approx(value)
        assert [e.step for e in events.Scalars("y/val_mse")] == [e.epoch for e in stored]
        assert [e.wall_time for e in events.Scalars("loss")] == pytest.approx(
            [e.recorded_at.timestamp() for e in stored]
        )
        session = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
        info = plugin_data_pb2.HParamsPluginData.FromString(session).session_start_info
        assert info.hparams["training.optimizer.learning_rate"].number_value == (0.01 if job_id == first else 0.1)

    experiment = reader(out).PluginTagToContent("hparams")["_hparams_/experiment"]
    config = plugin_data_pb2.HParamsPluginData.FromString(experiment).experiment
    assert [h.name for h in config.hparam_infos] == ["training.optimizer.learning_rate"]
    assert "y/val_mse" in {m.name.tag for m in config.metric_infos}

    again = cli("export", str(first), "--tensorboard", out)  # a second export replaces the run's events
    assert again.exit_code == 0, again.output
    assert len(reader(out / f"{first}-mlp").Scalars("y/val_mse")) == 3


def test_csv_is_one_tidy_row_per_stored_value(store: Store, play, tmp_path: Path) -> None:
    first = play(store, document(), val=[5.0, 4.0])
    second = play(store, document(), val=[2.0])
    out = tmp_path / "epochs.csv"
    result = cli("export", first, second, "--csv", out)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["job", "epoch", "output", "metric", "value"]
    expected = []
    for job_id in (first, second):
        for epoch in store.epochs(job_id):
            expected.append((job_id, epoch.epoch, "", "loss", epoch.loss))
            expected.append((job_id, epoch.epoch, "", "val_loss", epoch.val_loss))
            for output, values in epoch.outputs.items():
                expected.append((job_id, epoch.epoch, output, "loss", values["loss"]))
                expected += [(job_id, epoch.epoch, output, f"val_{m}", v) for m, v in epoch.val_metrics[output].items()]
    found = [(int(r["job"]), int(r["epoch"]), r["output"], r["metric"], float(r["value"])) for r in rows]
    assert found == expected and len(found) == 3 * 8

    stdout = cli("export", first, "--csv", "-")
    assert stdout.exit_code == 0 and len(list(csv.reader(io.StringIO(stdout.stdout)))) == 1 + 2 * 8


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("1",), "say where to: --tensorboard DIR and/or --csv FILE"),
        (("--csv", "x.csv"), "name the jobs"),
        (("1", "--csv", "/nonexistent/folder/x.csv"), "--csv /nonexistent/folder/x.csv: cannot write it"),
    ],
)
def test_bad_exports_are_one_line_and_exit_2(store: Store, play, args: tuple[str, ...], message: str) -> None:
    play(store, document())
    result = cli("export", *args)
    assert result.exit_code == 2 and message in result.stderr, result.output
    assert "Traceback" not in result.output


def test_export_does_not_import_tensorflow(store: Store, play, tmp_path: Path) -> None:
    import subprocess
    import sys

    job = play(store, document())
    code = (
        "import sys; from trainyard.cli import main\n"
        f"try: main(['export', '{job}', '--tensorboard', r'{tmp_path / 'tb'}', '--csv', r'{tmp_path / 'x.csv'}'])\n"
        "except SystemExit as e: assert not e.code, e.code\n"
        "assert 'tensorflow' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
