"""``trainyard compare``: the spec fields that differ (list items included), the final metrics, the
best of each marked, sorting, JSON, and a table that stays readable on 80 columns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from results_builders import document

from trainyard.cli import main
from trainyard.db import JobState, Store
from trainyard.results.compare import compare, flatten


@pytest.fixture
def store(home: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Store:
    monkeypatch.setenv("TRAINYARD_DB_URL", db_url)
    return Store.open(db_url)


def cli(*args: object, width: int = 80) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], env={"COLUMNS": str(width)})


def test_flatten_uses_the_specs_paths() -> None:
    flat = flatten(document())
    assert flat["training.optimizer.learning_rate"] == 0.01
    assert flat["layers[0].args.units"] == 8 and flat["layers[1].name"] == "dense_2"
    assert flat["inputs.features.columns"] == ["age", "bmi", "bp"]  # a list of plain values is one field


def test_jobs_differing_in_several_fields_and_list_items(store: Store, play) -> None:
    a = play(store, document(), val=[5.0, 4.0], test={"y": 4.5, "aux": 1.0}, tags=["cmp"])
    b = play(
        store,
        document(**{"training.optimizer.learning_rate": 0.1, "layers[0].args.units": 16}),
        val=[3.0, 2.0],
        test={"y": 2.5, "aux": 9.0},
        tags=["cmp"],
    )
    c_doc = document(**{"training.batch_size": 64})
    c_doc["layers"].append({"name": "dense_3", "type": "Dense", "input": "dense_2", "args": {"units": 2}})
    c_doc["inputs"]["features"]["columns"] = ["age", "bmi"]
    c = play(store, c_doc, end=None, tags=["cmp"])  # still queued: no metrics

    result = cli("compare", "--tag", "cmp", "--json")
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert found["fields"] == [
        "inputs.features.columns",
        "layers[0].args.units",
        "layers[2].name",
        "layers[2].type",
        "layers[2].input",
        "layers[2].args.units",
        "training.optimizer.learning_rate",
        "training.batch_size",
    ]
    rows = {job["id"]: job for job in found["jobs"]}
    assert (
        rows[b]["fields"]["training.optimizer.learning_rate"] == 0.1 and rows[b]["fields"]["layers[0].args.units"] == 16
    )
    assert rows[a]["fields"]["layers[2].name"] is None and rows[c]["fields"]["layers[2].args.units"] == 2
    assert rows[c]["fields"]["inputs.features.columns"] == ["age", "bmi"]
    assert [col["key"] for col in found["columns"]] == ["val.y.mse", "test.y.mse", "val.aux.mse", "test.aux.mse"]
    assert rows[a]["metrics"] == {"val.y.mse": 4.0, "test.y.mse": 4.5, "val.aux.mse": 8.0, "test.aux.mse": 1.0}
    assert rows[c]["metrics"]["val.y.mse"] is None and rows[c]["state"] == "queued"
    best = {col["key"]: col["best_job"] for col in found["columns"]}
    assert best == {"val.y.mse": b, "test.y.mse": b, "val.aux.mse": b, "test.aux.mse": a}
    assert rows[a]["best"] == ["test.aux.mse"] and rows[c]["best"] == []
    assert rows[a]["epochs_done"] == 2 and rows[a]["duration_seconds"] is not None

    text = cli("compare", str(a), str(b), str(c)).stdout
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80, text
    for header in ("VAL y MSE", "TEST aux MSE", "training.optimizer.learning_rate", "layers[2].args.units"):
        assert header in text, text
    assert "*2" in text and "*1" in text  # b's val y MSE and a's test aux MSE are the best


def test_sort_puts_the_best_first_and_missing_values_last(store: Store, play) -> None:
    worse = play(store, document(), val=[9.0])
    better = play(store, document(**{"training.batch_size": 16}), val=[1.0])
    none = play(store, document(**{"training.batch_size": 8}), end=None)  # last: the others claim the queue
    ids = [str(worse), str(none), str(better)]
    for sort in ("val.y.mse", "val", "val.mse", "mse", "val_mse"):
        assert compare(Store.jobs_with_specs(store, [worse, none, better]), sort=sort).rows[0].job.id == better
    found = json.loads(cli("compare", *ids, "--sort", "test.y.mse", "--json").stdout)
    assert [job["id"] for job in found["jobs"]] == [better, worse, none]
    found = json.loads(cli("compare", *ids, "--sort", "training.batch_size", "--json").stdout)
    assert [job["id"] for job in found["jobs"]] == [none, better, worse]

    bad = cli("compare", *ids, "--sort", "nope")
    assert bad.exit_code == 2 and "--sort: no column 'nope'" in bad.stderr and "val.y.mse" in bad.stderr


def test_a_wide_comparison_goes_into_sections_of_80_columns(store: Store, play) -> None:
    ids = [
        play(store, document(**{f"layers[{i % 2}].args.units": 8 + n, "training.seed": n, "training.epochs": 3 + n}))
        for n, i in enumerate(range(6))
    ]
    result = cli("compare", *ids)
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    assert result.stdout.count("ID  NAME") >= 2  # several sections, each with the job ids and names


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "name the jobs: give job ids, --tag TAG"),
        (("--tag", "none"), "no job with tag 'none'"),
        (("999",), "999"),
        (("x1",), "x1"),
    ],
)
def test_bad_selections_are_one_line_and_exit_2(store: Store, args: tuple[str, ...], message: str) -> None:
    result = cli("compare", *args)
    assert result.exit_code == 2 and message in result.stderr, result.output
    assert "Traceback" not in result.output


def test_a_failed_job_is_compared_with_what_it_recorded(store: Store, play) -> None:
    ok = play(store, document(), val=[2.0])
    failed = play(store, document(**{"training.optimizer.learning_rate": 10.0}), val=[50.0], end=JobState.FAILED)
    found = json.loads(cli("compare", ok, failed, "--json").stdout)
    assert [job["state"] for job in found["jobs"]] == ["succeeded", "failed"]
    assert found["columns"][0]["best_job"] == ok


def test_compare_sweep_shows_its_trials_and_what_their_parameters_changed(store: Store) -> None:
    from trainyard.db import Submission

    sweep, _ = store.save_sweep("lr", {"method": "grid"}, document(), {"tags": ["swept"]})
    trials = []
    for number, rate in enumerate((0.1, 0.01)):
        doc = document(**{"training.optimizer.learning_rate": rate, "name": f"lr-{number}"})
        params = {"training.optimizer.learning_rate": rate}
        job = store.add_trial(sweep.id, number, params, f"key-{number}", Submission(spec=doc, tags=("swept",)))
        assert job is not None and job.tags == ("swept",)
        trials.append(job.id)
    store.add_jobs([document()])  # not a trial: left out

    found = json.loads(cli("compare", "--sweep", sweep.id, "--json").stdout)
    assert [job["id"] for job in found["jobs"]] == trials
    assert found["fields"] == ["training.optimizer.learning_rate"]
    assert [job["fields"]["training.optimizer.learning_rate"] for job in found["jobs"]] == [0.1, 0.01]
    assert all(job["tags"] == ["swept"] for job in found["jobs"])
    assert [job["id"] for job in json.loads(cli("jobs", "--tag", "swept", "--json").stdout)] == trials[::-1]

    missing = cli("compare", "--sweep", "999")
    assert missing.exit_code == 2 and "999" in missing.stderr and "Traceback" not in missing.output


def test_a_results_command_gives_the_collector_back_what_it_held_out(store: Store) -> None:
    """compare/export/delete keep the process's earlier objects out of the garbage collector's
    walks while they run (gc.freeze) and unfreeze them at the end, even when the command fails."""
    import gc

    result = cli("compare", "--tag", "no-such-tag")
    assert result.exit_code == 2 and "no job with tag 'no-such-tag'" in result.stderr
    assert gc.get_freeze_count() == 0
