"""The training core on real (tiny) Keras trainings: metrics, determinism, cancel, divergence, resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from worker_fixtures import article_spec

from trainyard.errors import Cancelled, TrainingError
from trainyard.specs import load_data, load_spec
from trainyard.training import BaseSink, EpochMetrics, train

REPO = Path(__file__).resolve().parents[2]
SPECS = REPO / "specs"


def _numpy_mse(model_path: Path, split) -> dict[str, float]:
    import keras

    model = keras.models.load_model(model_path)
    predictions = model.predict(split.x, verbose=0)
    return {
        name: float(np.mean((predictions[name].astype(np.float64) - y.astype(np.float64)) ** 2))
        for name, y in split.y.items()
    }


class Recorder(BaseSink):
    def __init__(self, stop_after_epoch: int | None = None, crash_after_epoch: int | None = None) -> None:
        self.epochs: list[EpochMetrics] = []
        self.batches: list[tuple[int, int, int]] = []
        self.stop_after_epoch = stop_after_epoch
        self.crash_after_epoch = crash_after_epoch

    def on_epoch(self, metrics: EpochMetrics) -> None:
        self.epochs.append(metrics)
        if self.crash_after_epoch == metrics.epoch:
            raise KeyboardInterrupt("simulated crash")

    def on_batch(self, epoch: int, step: int, steps: int) -> None:
        self.batches.append((epoch, step, steps))

    def should_stop(self) -> bool:
        return self.stop_after_epoch is not None and len(self.epochs) >= self.stop_after_epoch


def test_val_and_test_mse_equal_numpy_mse_of_saved_model(tmp_path: Path) -> None:
    spec = article_spec(SPECS / "multi_output.yaml", overrides=["training.epochs=3"])  # val loss on raw targets
    sink = Recorder()
    result = train(spec, sink, model_path=tmp_path / "m.keras")
    data = load_data(spec)

    assert [m.epoch for m in result.epochs] == [1, 2, 3]
    assert sink.epochs == result.epochs
    assert set(result.epochs[-1].outputs) == {"output_1", "output_2"}
    expected_val = _numpy_mse(result.model_path, data.valid)
    for name, value in expected_val.items():
        assert result.epochs[-1].val_mse[name] == pytest.approx(value, rel=1e-5)
        assert result.val_mse[name] == pytest.approx(value, rel=1e-5)
    expected_test = _numpy_mse(result.model_path, data.test)
    assert result.test_mse == pytest.approx(expected_test, rel=1e-5)
    # both losses are MSE: the validation loss is the 0.9/0.1 weighted sum of the validation MSEs
    last = result.epochs[-1]
    assert last.val_loss == pytest.approx(0.9 * expected_val["output_1"] + 0.1 * expected_val["output_2"], rel=1e-5)
    assert all(m.outputs[n]["loss"] > 0 for m in result.epochs for n in m.outputs)
    steps = -(-len(data.train) // spec.training.batch_size)
    assert sink.batches and all(s == steps for _, _, s in sink.batches)
    assert sink.batches[-1] == (3, steps, steps)


def test_same_seed_gives_same_metrics_and_another_seed_does_not(tmp_path: Path) -> None:
    spec = load_spec(SPECS / "mlp.yaml", overrides=["training.epochs=3"])
    first = train(spec, model_path=tmp_path / "a.keras")
    second = train(spec, model_path=tmp_path / "b.keras")
    assert first.epochs == second.epochs
    assert first.test_mse == second.test_mse
    other = train(
        load_spec(SPECS / "mlp.yaml", overrides=["training.epochs=3", "training.seed=7"]),
        model_path=tmp_path / "c.keras",
    )
    assert other.epochs != first.epochs


def test_single_output_and_normalized_csv_inputs(tmp_path: Path, housing_csv: Path) -> None:
    spec = load_spec(
        {
            "name": "housing",
            "data": {"source": str(housing_csv), "split": {"valid": 0.25, "test": 0.25, "seed": 1}},
            "inputs": {"x": {"columns": ["median_income", "housing_median_age", "total_rooms"], "normalize": True}},
            "layers": [{"type": "Dense", "units": 8, "activation": "relu"}],
            "outputs": {"price": {"target": "median_house_value"}},
            "training": {"epochs": 2, "batch_size": 16, "optimizer": {"name": "adam", "learning_rate": 0.01}},
        }
    )
    result = train(spec, model_path=tmp_path / "h.keras")
    import keras

    model = keras.models.load_model(result.model_path)
    assert "Normalization" in [type(layer).__name__ for layer in model.layers]
    data = load_data(spec)
    # the saved model takes raw columns: normalisation is inside it
    assert result.epochs[-1].val_mse["price"] == pytest.approx(
        _numpy_mse(result.model_path, data.valid)["price"], rel=1e-5
    )
    norm = next(layer for layer in model.layers if type(layer).__name__ == "Normalization")
    assert np.allclose(np.ravel(norm.mean), data.train.x["x"].mean(axis=0), rtol=1e-5)


def test_dropout_and_batch_normalization_are_off_in_the_validation_mse(tmp_path: Path) -> None:
    spec = load_spec(
        SPECS / "mlp.yaml",
        overrides=[
            "training.epochs=2",
            "layers[1]={type: Dropout, rate: 0.5}",
            "layers[2]={type: BatchNormalization}",
            "training.optimizer={name: adam, learning_rate: 0.01}",
        ],
    )
    result = train(spec, model_path=tmp_path / "d.keras")
    expected = _numpy_mse(result.model_path, load_data(spec).valid)
    assert result.epochs[-1].val_mse["output"] == pytest.approx(expected["output"], rel=1e-5)


def test_cancel_raises_cancelled_and_saves_nothing(tmp_path: Path) -> None:
    spec = load_spec(SPECS / "mlp.yaml", overrides=["training.epochs=5"])
    sink = Recorder(stop_after_epoch=1)
    with pytest.raises(Cancelled):
        train(spec, sink, model_path=tmp_path / "m.keras")
    assert [m.epoch for m in sink.epochs] == [1]
    assert not (tmp_path / "m.keras").exists()


class StopAfter(Recorder):
    """A sink that ends the run after a given epoch with a reason, as early stopping and pruning do."""

    def __init__(self, epoch: int, reason: str) -> None:
        super().__init__()
        self.stop_epoch = epoch
        self.reason = reason
        self.asked: list[int] = []

    def should_stop_after_epoch(self, metrics: EpochMetrics) -> str | None:
        # the epoch was reported (on_epoch) before the sink is asked whether training goes on
        assert self.epochs[-1] is metrics
        self.asked.append(metrics.epoch)
        return self.reason if metrics.epoch == self.stop_epoch else None


def test_a_sink_ends_training_after_an_epoch_with_its_reason_and_the_model_is_kept(tmp_path: Path) -> None:
    spec = load_spec(SPECS / "multi_output.yaml", overrides=["training.epochs=6"])
    backup = tmp_path / "backup"
    sink = StopAfter(2, "no improvement for 2 epochs")
    result = train(spec, sink, model_path=tmp_path / "m.keras", backup_dir=backup, backup_interval=0)

    assert result.stop_reason == "no improvement for 2 epochs"
    assert [m.epoch for m in result.epochs] == [1, 2] == [m.epoch for m in sink.epochs] == sink.asked
    assert {epoch for epoch, _, _ in sink.batches} == {1, 2}  # not one batch of epoch 3 ran
    # unlike a cancel, the run ends like a finished one: the model of epoch 2 saved, its MSEs, no backup left
    data = load_data(spec)
    assert result.val_mse == pytest.approx(_numpy_mse(result.model_path, data.valid), rel=1e-5)
    assert result.val_mse == pytest.approx(result.epochs[-1].val_mse, rel=1e-5)
    assert result.test_mse == pytest.approx(_numpy_mse(result.model_path, data.test), rel=1e-5)
    assert not list(backup.iterdir())
    two_epochs = train(
        load_spec(SPECS / "multi_output.yaml", overrides=["training.epochs=2"]), model_path=tmp_path / "t.keras"
    )
    assert result.val_mse == pytest.approx(two_epochs.val_mse, rel=1e-6)
    assert two_epochs.stop_reason is None


def test_a_reason_given_after_the_last_epoch_is_no_early_stop(tmp_path: Path) -> None:
    spec = load_spec(SPECS / "mlp.yaml", overrides=["training.epochs=3"])
    sink = StopAfter(3, "patience used up")
    result = train(spec, sink, model_path=tmp_path / "m.keras")
    assert result.stop_reason is None
    assert [m.epoch for m in result.epochs] == [1, 2, 3] == sink.asked


def test_a_sink_missing_methods_is_refused_before_training(tmp_path: Path) -> None:
    class OnlyEpochs:
        def on_epoch(self, metrics: EpochMetrics) -> None:
            pass

    spec = load_spec(SPECS / "mlp.yaml", overrides=["training.epochs=1"])
    with pytest.raises(
        TypeError,
        match=r"^sink: OnlyEpochs lacks on_batch, should_stop, should_stop_after_epoch, flush, may_back_up; subclass trainyard.training.BaseSink$",
    ):
        train(spec, OnlyEpochs(), model_path=tmp_path / "m.keras")  # type: ignore[arg-type]
    assert not (tmp_path / "m.keras").exists()


def test_importing_the_training_core_loads_neither_tensorflow_nor_the_specs() -> None:
    """The CLI imports it for every command (its progress sink is a BaseSink): it must stay cheap."""
    code = (
        "import sys, trainyard.training, trainyard.cli.spec_cmds\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'numpy', 'pydantic', 'trainyard.specs') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_divergence_is_a_training_error_naming_the_epoch(tmp_path: Path) -> None:
    spec = load_spec(
        SPECS / "mlp.yaml",
        overrides=["training.epochs=5", "training.optimizer={name: sgd, learning_rate: 1000000.0}"],
    )
    with pytest.raises(TrainingError, match=r"^epoch \d: loss is (nan|inf)"):
        train(spec, model_path=tmp_path / "m.keras")
    assert not (tmp_path / "m.keras").exists()


def test_resume_from_backup_does_not_report_finished_epochs_again(tmp_path: Path) -> None:
    spec = load_spec(SPECS / "mlp.yaml", overrides=["training.epochs=4"])
    backup = tmp_path / "backup"
    with pytest.raises(KeyboardInterrupt):
        train(
            spec, Recorder(crash_after_epoch=2), model_path=tmp_path / "m.keras", backup_dir=backup, backup_interval=0
        )
    sink = Recorder()
    result = train(spec, sink, model_path=tmp_path / "m.keras", backup_dir=backup, backup_interval=0)
    # epoch 2 crashed before its backup was written: the run resumes after epoch 1
    assert result.initial_epoch == 1
    assert [m.epoch for m in result.epochs] == [2, 3, 4]
    assert [m.epoch for m in sink.epochs] == [2, 3, 4]
    assert result.model_path.exists()


def test_a_resumed_run_ends_with_the_metrics_of_an_uninterrupted_one(tmp_path: Path) -> None:
    # adam: its moment estimates must come back too, not only the weights
    spec = load_spec(
        SPECS / "multi_output.yaml",
        overrides=["training.epochs=5", "training.optimizer={name: adam, learning_rate: 0.01}"],
    )
    straight = train(spec, model_path=tmp_path / "a.keras")
    backup = tmp_path / "backup"
    with pytest.raises(KeyboardInterrupt):
        train(
            spec, Recorder(crash_after_epoch=4), model_path=tmp_path / "b.keras", backup_dir=backup, backup_interval=0
        )
    resumed = train(spec, model_path=tmp_path / "b.keras", backup_dir=backup, backup_interval=0)
    assert resumed.initial_epoch == 3
    assert resumed.val_mse == pytest.approx(straight.val_mse, rel=1e-6)
    assert not list(backup.iterdir())  # a finished run leaves no backup behind


def test_an_orderly_stop_during_a_short_epoch_lets_it_finish_and_backs_it_up_whatever_the_interval(
    tmp_path: Path,
) -> None:
    """Epochs shorter than the backup interval: a stop asked for during epoch 3 ends training once
    epoch 3 is done, reported and backed up, though the interval never called for a backup."""
    spec = load_spec(SPECS / "mlp.yaml", overrides=["training.epochs=6"])
    backup = tmp_path / "backup"
    stopped = Recorder(stop_after_epoch=2)
    with pytest.raises(Cancelled, match="cancelled after epoch 3"):
        train(spec, stopped, model_path=tmp_path / "m.keras", backup_dir=backup, backup_interval=3600)
    assert [m.epoch for m in stopped.epochs] == [1, 2, 3]
    sink = Recorder()
    result = train(spec, sink, model_path=tmp_path / "m.keras", backup_dir=backup, backup_interval=3600)
    assert result.initial_epoch == 3
    assert [m.epoch for m in sink.epochs] == [4, 5, 6]
    straight = train(spec, model_path=tmp_path / "s.keras")
    assert result.val_mse == pytest.approx(straight.val_mse, rel=1e-6)


def test_an_orderly_stop_in_the_first_epoch_stops_at_once(tmp_path: Path) -> None:
    """No epoch has shown how long one takes: the stop is taken at the batch boundary it is seen at."""
    spec = load_spec(SPECS / "mlp.yaml", overrides=["training.epochs=3"])
    backup = tmp_path / "backup"
    stopped = Recorder(stop_after_epoch=0)
    with pytest.raises(Cancelled, match="cancelled during epoch 1"):
        train(spec, stopped, model_path=tmp_path / "m.keras", backup_dir=backup, backup_interval=3600)
    assert stopped.epochs == []
    sink = Recorder()
    result = train(spec, sink, model_path=tmp_path / "m.keras", backup_dir=backup, backup_interval=3600)
    assert result.initial_epoch == 0 and [m.epoch for m in sink.epochs] == [1, 2, 3]


def test_an_unusable_backup_means_training_from_the_first_epoch(tmp_path: Path) -> None:
    spec = load_spec(SPECS / "mlp.yaml", overrides=["training.epochs=3"])
    straight = train(spec, model_path=tmp_path / "a.keras")
    backup = tmp_path / "backup"
    backup.mkdir()
    (backup / "epoch-2.weights.h5").write_bytes(b"half a file")  # as a kill mid-write would leave it
    (backup / "state.json").write_text('{"epoch": 2, "weights": "epoch-2.weights.h5"}')
    sink = Recorder()
    result = train(spec, sink, model_path=tmp_path / "b.keras", backup_dir=backup)
    assert result.initial_epoch == 0
    assert [m.epoch for m in sink.epochs] == [1, 2, 3]
    assert result.val_mse == pytest.approx(straight.val_mse, rel=1e-6)


def _crashed_run(spec, backup: Path, tmp_path: Path, after_epoch: int) -> None:
    """A run killed after ``after_epoch`` epochs, each backed up: its backup of ``after_epoch - 1`` stays."""
    with pytest.raises(KeyboardInterrupt):
        train(
            spec,
            Recorder(crash_after_epoch=after_epoch),
            model_path=tmp_path / "crashed.keras",
            backup_dir=backup,
            backup_interval=0,
        )


def test_a_backup_file_another_process_holds_open_does_not_stop_a_run(tmp_path: Path) -> None:
    """A job's old owner, paused while it wrote a backup, still holds that file open (and h5py's
    lock on it) when the job's new owner backs up the same epoch: each run writes files of its own."""
    spec = load_spec(SPECS / "mlp.yaml", overrides=["training.epochs=5"])
    backup = tmp_path / "backup"
    _crashed_run(spec, backup, tmp_path, after_epoch=3)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time, h5py\n"
            "files = [h5py.File(p, 'w') for p in sys.argv[1:]]\n"
            "print('holding', flush=True)\n"
            "time.sleep(600)\n",
            # the names every run used before backups had per-run names
            *(str(backup / f".tmp-epoch-{n}.weights.h5") for n in range(3, 6)),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        sink = Recorder()
        result = train(spec, sink, model_path=tmp_path / "m.keras", backup_dir=backup, backup_interval=0)
    finally:
        holder.kill()
        holder.wait()
    assert result.initial_epoch == 2 and [m.epoch for m in sink.epochs] == [3, 4, 5]
    straight = train(spec, model_path=tmp_path / "s.keras")
    assert result.val_mse == pytest.approx(straight.val_mse, rel=1e-6)


def test_a_pointer_to_a_backup_that_is_gone_resumes_from_the_newest_complete_one(tmp_path: Path) -> None:
    spec = load_spec(SPECS / "mlp.yaml", overrides=["training.epochs=5"])
    backup = tmp_path / "backup"
    _crashed_run(spec, backup, tmp_path, after_epoch=3)
    (backup / "state.json").write_text('{"epoch": 4, "weights": "epoch-4.deleted-by-someone.weights.h5"}')
    sink = Recorder()
    result = train(spec, sink, model_path=tmp_path / "m.keras", backup_dir=backup, backup_interval=0)
    assert result.initial_epoch == 2 and [m.epoch for m in sink.epochs] == [3, 4, 5]


def test_a_run_behind_another_never_moves_the_backup_back(tmp_path: Path) -> None:
    """Two runs of one job back up into one folder (an old owner that has not yet seen it lost the
    job, and the new one): the pointer stays on the later epoch, and the earlier run's files go."""
    from trainyard.specs import build_model
    from trainyard.training import _Backup

    spec = load_spec(SPECS / "mlp.yaml", overrides=["training.epochs=5"])
    backup = tmp_path / "backup"
    _crashed_run(spec, backup, tmp_path, after_epoch=5)  # the new owner: backed up epoch 4
    ahead = json.loads((backup / "state.json").read_text())
    behind = _Backup(backup, 0, before_save=lambda: None, may_save=lambda: True)
    behind.save(build_model(spec, {}), 2)
    assert json.loads((backup / "state.json").read_text()) == ahead
    assert sorted(p.name for p in backup.iterdir()) == sorted(["state.json", ahead["weights"]])
    assert ahead["epoch"] == 4


def test_model_path_must_be_a_keras_file(tmp_path: Path) -> None:
    spec = load_spec(SPECS / "mlp.yaml", overrides=["training.epochs=1"])
    with pytest.raises(TrainingError, match=r"model_path: expected a file ending in \.keras"):
        train(spec, model_path=tmp_path / "m.h5")


def test_ready_made_sets_from_files(tmp_path: Path, housing_csv: Path) -> None:
    import pandas as pd

    frame = pd.read_csv(housing_csv)
    frame.iloc[:200].to_csv(tmp_path / "train.csv", index=False)
    frame.iloc[200:300].to_parquet(tmp_path / "valid.parquet")
    (tmp_path / "spec.yaml").write_text(
        textwrap.dedent(
            """
            name: sets
            data: {train: train.csv, valid: valid.parquet}
            inputs: [median_income, housing_median_age]
            layers: [{type: Dense, units: 4, activation: relu}]
            outputs: {price: {target: median_house_value}}
            training: {epochs: 1, batch_size: 50}
            """
        )
    )
    spec = load_spec(tmp_path / "spec.yaml")
    result = train(spec, model_path=tmp_path / "m.keras")
    assert result.test_mse is None
    assert len(load_data(spec).valid) == 100
    assert result.val_mse["price"] == pytest.approx(
        _numpy_mse(result.model_path, load_data(spec).valid)["price"], rel=1e-5
    )


_MIRRORED = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from trainyard.specs import load_spec
    from trainyard.training import train
    spec = load_spec(sys.argv[1], overrides=["training.epochs=3", "training.shuffle=false"])
    mirrored = train(spec, model_path=sys.argv[2] + "/a.keras", strategy=tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
    single = train(spec, model_path=sys.argv[2] + "/b.keras")
    print(json.dumps({"mirrored": [m.as_dict() for m in mirrored.epochs], "single": [m.as_dict() for m in single.epochs]}))
    """
)


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus_matches_single_device(tmp_path: Path) -> None:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(
        [sys.executable, "-c", _MIRRORED, str(SPECS / "multi_output.yaml"), str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(runs["mirrored"]) == len(runs["single"]) == 3
    for m, s in zip(runs["mirrored"], runs["single"]):
        for name in ("output_1", "output_2"):
            assert m["val_mse"][name] == pytest.approx(s["val_mse"][name], rel=1e-3)
        assert m["loss"] == pytest.approx(s["loss"], rel=1e-3)


_ONE_RUN = textwrap.dedent(
    """
    import json, sys
    from trainyard.specs import load_spec
    from trainyard.training import train
    result = train(load_spec(sys.argv[1], overrides=["training.epochs=3"]), model_path=sys.argv[2])
    print(json.dumps({"epochs": [m.as_dict() for m in result.epochs], "test_mse": result.test_mse}))
    """
)


@pytest.mark.slow
def test_same_seed_gives_same_metrics_in_separate_processes(tmp_path: Path) -> None:
    runs = []
    for i in range(2):
        proc = subprocess.run(
            [sys.executable, "-c", _ONE_RUN, str(SPECS / "multi_output.yaml"), str(tmp_path / f"{i}.keras")],
            capture_output=True,
            text=True,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
            cwd=REPO,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    assert runs[0] == runs[1]
