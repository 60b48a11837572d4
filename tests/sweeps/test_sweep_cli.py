"""``trainyard sweep submit | list | show | cancel`` in-process: bad files refused whole, the JSON promised."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from worker_fixtures import write_spec

from trainyard.cli import main
from trainyard.db import JobState, Store, SweepState

REPO = Path(__file__).resolve().parents[2]

SWEEP = """\
name: {name}
spec: {spec}
method: random
trials: 3
parallel: 2
seed: 7
objective:
  metric: mse
  outputs: {{output_1: 0.9, output_2: 0.1}}
parameters:
  training.optimizer.learning_rate: {{log_uniform: [0.0001, 0.1]}}
  layers[0].units: {{choice: [4, 8, 16, 32]}}
  training.batch_size: {{choice: [16, 32, 64]}}
prune: {{method: asha, min_epochs: 5, reduction_factor: 3}}
"""


def run(*args: str) -> object:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def folder(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # the data roots: the working directory
    text = (REPO / "specs" / "multi_output.yaml").read_text()
    optimizer = next(line for line in text.splitlines() if line.strip().startswith("optimizer:"))
    # the article's shorthand, which the learning-rate parameter has to reach into
    (tmp_path / "multi_output.yaml").write_text(text.replace(optimizer, "  optimizer: sgd"))
    return tmp_path


def store() -> Store:
    return Store.open(f"sqlite:///{os.environ['TRAINYARD_HOME']}/trainyard.sqlite")


def test_submit_stores_the_sweep_queues_its_first_trials_and_show_json_holds_the_promised_keys(folder: Path) -> None:
    (folder / "sweep.yaml").write_text(SWEEP.format(name="lr_and_width", spec="multi_output.yaml"))
    result = run("sweep", "submit", "sweep.yaml", "--json")
    assert result.exit_code == 0, result.stderr
    submitted = json.loads(result.stdout)
    assert submitted["name"] == "lr_and_width" and submitted["state"] == "running" and submitted["method"] == "random"
    shown = json.loads(run("sweep", "show", str(submitted["id"]), "--json").stdout)
    assert {"id", "name", "state", "method", "trials", "best"} <= set(shown)
    assert len(shown["trials"]) == 2 and shown["best"] is None  # `parallel` trials queued, none ended
    for trial in shown["trials"]:
        assert set(trial) >= {"job", "params", "state", "epochs", "objective"}
        assert trial["state"] == "queued" and trial["epochs"] == 0 and trial["objective"] is None
        assert set(trial["params"]) == {"training.optimizer.learning_rate", "layers[0].units", "training.batch_size"}
        job = store().get_job(trial["job"])
        assert job.sweep_id == submitted["id"] and job.params == trial["params"]
        assert job.spec_document["training"]["optimizer"] == {  # the base spec's `optimizer: sgd`
            "name": "sgd",
            "learning_rate": trial["params"]["training.optimizer.learning_rate"],
        }
    listed = run("sweep", "list")
    assert "lr_and_width" in listed.stdout and "0/3" in listed.stdout

    cancelled = run("sweep", "cancel", str(submitted["id"]))
    assert cancelled.exit_code == 0, cancelled.stderr
    assert store().get_sweep(submitted["id"]).state is SweepState.CANCELLED
    assert {job.state for job in store().sweep_jobs(submitted["id"])} == {JobState.CANCELLED}
    again = run("sweep", "cancel", str(submitted["id"]))
    assert again.exit_code == 2 and "already cancelled" in again.stderr


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("layers[0].units: {choice: [4, 8, 16, 32]}", "layers[9].units: {choice: [4, 8]}"),
            "parameters.layers[9].units: no item [9] here",
        ),
        (
            ("{choice: [4, 8, 16, 32]}", "{int_uniform: [0, 8]}"),
            "parameters.layers[0].units: with 0: expected a positive integer, received 0",
        ),
        (
            ("{log_uniform: [0.0001, 0.1]}", "{log_uniform: [0, 0.1]}"),
            "log_uniform: expected a positive low end, received 0.0",
        ),
        (("output_2: 0.1", "output_3: 0.1"), "objective.outputs.output_3: no such output in the spec"),
        (("trials: 3\n", ""), "trials: required for method random"),
        (
            ("training.batch_size:", "training.batch_sise:"),
            "parameters.training.batch_sise: with 16: unknown key (did you mean 'batch_size'?)",
        ),
        (("method: random", "method: bayes"), "method:"),
        (
            ("metric: mse", "metric: accuracy"),
            "objective.metric: output 'output_1' (regression) reports mse, mae, not 'accuracy'",
        ),
        (
            ("{method: asha, min_epochs: 5, reduction_factor: 3}", "{method: median, min_epochs: 5}"),
            "min_epochs do(es) not apply to prune method 'median'",
        ),
    ],
)
def test_a_bad_sweep_file_is_one_line_per_problem_exit_2_and_nothing_stored(
    folder: Path, change: tuple[str, str], expected: str
) -> None:
    text = SWEEP.format(name="bad", spec="multi_output.yaml")
    assert change[0] in text
    (folder / "bad.yaml").write_text(text.replace(*change))
    result = run("sweep", "submit", "bad.yaml")
    assert result.exit_code == 2
    assert expected in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert store().list_sweeps() == [] and store().list_jobs() == []


def test_a_missing_base_spec_and_yaml_errors_name_the_file(folder: Path) -> None:
    (folder / "sweep.yaml").write_text(SWEEP.format(name="s", spec="nowhere.yaml"))
    result = run("sweep", "submit", "sweep.yaml")
    assert result.exit_code == 2 and "spec file not found" in result.stderr and "nowhere.yaml" in result.stderr
    (folder / "broken.yaml").write_text("name: [unclosed\n")
    result = run("sweep", "submit", "broken.yaml")
    assert result.exit_code == 2 and "broken.yaml" in result.stderr and "YAML syntax error" in result.stderr


def test_unknown_sweep_ids_are_one_line_and_exit_2(folder: Path) -> None:
    for args in (("sweep", "show", "42"), ("sweep", "cancel", "nope")):
        result = run(*args)
        assert result.exit_code == 2 and "no sweep with id" in result.stderr
    # past the integer range both stores hold, not ASCII digits, too long to be an int
    for sweep_id, shown in (("9223372036854775808", "9223372036854775808"), ("²", "'²'"), ("9" * 5000, None)):
        for command in ("show", "cancel"):
            result = run("sweep", command, sweep_id)
            assert result.exit_code == 2, result.output
            assert result.stderr.startswith("error: no sweep with id ") and result.stderr.count("\n") == 1
            assert shown is None or result.stderr == f"error: no sweep with id {shown}\n", result.stderr


def test_set_reaches_into_the_optimizer_shorthand(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, "shorthand")
    spec.write_text(spec.read_text().replace("optimizer: {name: adam, learning_rate: 0.01}", "optimizer: sgd"))
    result = run("validate", str(spec), "--set", "training.optimizer.learning_rate=0.05")
    assert result.exit_code == 0, result.stderr
    from trainyard.specs import load_spec

    loaded = load_spec(spec, overrides=["training.optimizer.learning_rate=0.05", "inputs.features.normalize=true"])
    assert loaded.training.optimizer.name == "sgd" and loaded.training.optimizer.args == {"learning_rate": 0.05}
    assert loaded.inputs["features"].normalize is True  # the list-of-columns shorthand, reached the same way


def test_a_sweep_files_tags_label_every_trial_and_a_bad_tag_is_one_line(folder: Path) -> None:
    spec = (folder / "multi_output.yaml").read_text()
    (folder / "multi_output.yaml").write_text(spec + "tags: [article]\n")
    (folder / "sweep.yaml").write_text(SWEEP.format(name="tagged", spec="multi_output.yaml") + "tags: [lr, cal]\n")
    result = run("sweep", "submit", "sweep.yaml", "--json")
    assert result.exit_code == 0, result.stderr
    trials = store().list_jobs()
    assert len(trials) == 2 and all(job.tags == ("article", "cal", "lr") for job in trials)
    listed = run("jobs", "--tag", "lr", "--json")
    assert sorted(job["id"] for job in json.loads(listed.stdout)) == sorted(job.id for job in trials)

    (folder / "bad.yaml").write_text(SWEEP.format(name="bad", spec="multi_output.yaml") + "tags: [ok, 'no spaces']\n")
    result = run("sweep", "submit", "bad.yaml")
    assert result.exit_code == 2 and "tags[1]" in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert [s.name for s in store().list_sweeps()] == ["tagged"]


PROBE = """\
import sys
from trainyard.worker.local import LocalWorker

def start(self):
    print("tensorflow imported before the worker started:", "tensorflow" in sys.modules, flush=True)
    raise SystemExit(7)

LocalWorker.start = start
from trainyard.cli import main
main(["run", sys.argv[1], *sys.argv[2:]])
"""


@pytest.mark.parametrize("what", ["sweep", "spec"])
def test_run_starts_its_worker_before_importing_tensorflow(folder: Path, what: str) -> None:
    """The worker's start and its pool child's TensorFlow import then overlap ours (and the checks
    of the sweep or specs): ``trainyard run`` used to import TensorFlow first, seconds on its own."""
    import subprocess
    import sys

    (folder / "sweep.yaml").write_text(SWEEP.format(name="probe", spec="multi_output.yaml"))
    target = "sweep.yaml" if what == "sweep" else "multi_output.yaml"
    done = subprocess.run(
        [sys.executable, "-c", PROBE, target], cwd=folder, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 7, done.stderr[-3000:]
    assert "tensorflow imported before the worker started: False" in done.stdout
