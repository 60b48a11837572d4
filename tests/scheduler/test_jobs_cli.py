"""``trainyard submit | jobs | show | cancel | retry`` against a real store, on every backend.

The worker's side of a job (claim, epochs, finish) is played through the store's worker API,
exactly the calls a worker makes, so these tests need no training.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import trainyard
from trainyard.cli import main
from trainyard.db import JobState, Store

REPO = Path(__file__).resolve().parents[2]
MLP = REPO / "specs" / "mlp.yaml"
WIDE_DEEP = REPO / "specs" / "wide_deep.yaml"

INVALID = """\
name: broken
data: {source: "builtin:diabetes"}
inputs: [age, bmi]
layers:
  - {type: Dense, units: -3}
outputs:
  y: {target: target}
training: {epochs: 2}
"""


@pytest.fixture
def store_url(home: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every trainyard file in a fresh home, the store at ``db_url`` (SQLite file or PostgreSQL)."""
    monkeypatch.setenv("TRAINYARD_DB_URL", db_url)
    return db_url


def cli(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def ok(*args: str | Path) -> Result:
    result = cli(*args)
    assert result.exit_code == 0, result.output
    return result


def submitted(*args: str | Path) -> list[dict]:
    return json.loads(ok("submit", *args, "--json", "--no-dispatch").stdout)


def play_worker(store: Store, job_id: int, val_mses: list[float], end: JobState | None = None) -> None:
    """Claim ``job_id`` and report one epoch per value, then end the job in ``end`` (if given)."""
    job = store.claim_next("worker-a")
    assert job is not None and job.id == job_id
    for k, value in enumerate(val_mses, start=1):
        store.record_epoch(
            job_id,
            "worker-a",
            {
                "epoch": k,
                "loss": 2 * value,
                "val_loss": value,
                "outputs": {"output": {"loss": 2 * value, "val_mse": value}},
            },
        )
    if end is JobState.SUCCEEDED:
        store.finish(job_id, "worker-a", end, test_mse={"output": 0.75}, model_path="/models/1.keras")
    elif end is not None:
        store.finish(job_id, "worker-a", end, error="epoch 3: loss is nan")


# ---------------------------------------------------------------- submit


def test_submit_validates_stores_and_queues_one_job_per_spec(store_url: str) -> None:
    jobs = submitted(MLP, WIDE_DEEP, "--set", "training.epochs=5", "--priority", "4")

    assert [(j["name"], j["state"], j["priority"], j["epochs_total"]) for j in jobs] == [
        ("mlp", "queued", 4, 5),
        ("wide_deep", "queued", 4, 5),
    ]
    stored = Store.open(store_url).get_job(jobs[0]["id"])
    assert stored.spec_document is not None
    assert stored.spec_document["training"]["epochs"] == 5
    assert stored.spec_document["name"] == "mlp"
    # The data as it was at submit: the worker refuses to train if it changed since.
    from trainyard.specs import data_fingerprint, load_spec

    assert stored.submission is not None
    assert stored.submission.data_fingerprint == data_fingerprint(load_spec(MLP))
    assert "data_fingerprint" not in stored.spec_document  # the spec document is the spec alone


def test_submit_prints_one_line_per_job_by_default(store_url: str) -> None:
    out = ok("submit", MLP, "--no-dispatch").stdout

    [line] = out.splitlines()
    job_id, name, state = line.split("\t")
    assert (name, state) == ("mlp", "queued")
    assert Store.open(store_url).get_job(int(job_id)).name == "mlp"


def test_submit_dispatches_one_broker_message_per_job(store_url: str) -> None:
    from trainyard.config import Settings
    from trainyard.queue import queue_size

    jobs = json.loads(ok("submit", MLP, MLP, "--json").stdout)

    store = Store.open(store_url)
    assert all(store.get_job(j["id"]).dispatched_at is not None for j in jobs)
    assert queue_size(Settings.from_env()) == 2


def test_an_invalid_spec_stores_nothing_and_reports_every_problem(store_url: str, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(INVALID)

    result = cli("submit", MLP, broken, tmp_path / "missing.yaml", "--no-dispatch")

    assert result.exit_code == 2
    assert result.stdout == ""
    assert "layers[0].units" in result.stderr and "-3" in result.stderr
    assert "missing.yaml" in result.stderr
    assert "Traceback" not in result.output
    assert Store.open(store_url).list_jobs() == []


def test_a_bad_set_path_is_one_clear_line_and_stores_nothing(store_url: str) -> None:
    result = cli("submit", MLP, "--set", "training.epochz=5", "--no-dispatch")

    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert "training.epochz" in result.stderr
    assert Store.open(store_url).list_jobs() == []


# ---------------------------------------------------------------- jobs and show


def test_jobs_lists_progress_latest_val_mse_and_state(store_url: str) -> None:
    first, second = submitted(MLP, MLP, "--set", "training.epochs=4")
    play_worker(Store.open(store_url), first["id"], [0.9, 0.25])

    table = ok("jobs").stdout
    line = next(row for row in table.splitlines() if row.split()[0] == str(first["id"]))
    assert line.split()[:5] == [str(first["id"]), "mlp", "running", "1/3", "2/4"]
    assert "output MSE 0.25" in line

    listed = json.loads(ok("jobs", "--json").stdout)
    assert [j["id"] for j in listed] == [second["id"], first["id"]]
    assert listed[1]["val_mse"] == {"output": 0.25}
    assert [j["id"] for j in json.loads(ok("jobs", "--state", "queued", "--json").stdout)] == [second["id"]]


def test_jobs_shows_the_newest_first_and_says_when_it_leaves_some_out(store_url: str) -> None:
    ids = [j["id"] for j in submitted(MLP, MLP, MLP)]

    result = ok("jobs", "--limit", "2", "--json")

    assert [j["id"] for j in json.loads(result.stdout)] == ids[:0:-1]
    assert "showing the 2 newest of 3 jobs" in result.stderr


def test_show_json_has_the_whole_story_of_a_finished_job(store_url: str) -> None:
    [job] = submitted(MLP, "--set", "training.epochs=2")
    play_worker(Store.open(store_url), job["id"], [0.5, 0.4], end=JobState.SUCCEEDED)

    shown = json.loads(ok("show", str(job["id"]), "--json").stdout)

    assert (shown["id"], shown["name"], shown["state"], shown["attempts"], shown["error"]) == (
        job["id"],
        "mlp",
        "succeeded",
        1,
        None,
    )
    assert [(e["epoch"], e["loss"], e["val_mse"]) for e in shown["epochs"]] == [
        (1, 1.0, {"output": 0.5}),
        (2, 0.8, {"output": 0.4}),
    ]
    assert shown["val_mse"] == {"output": 0.4}
    assert shown["test_mse"] == {"output": 0.75}
    assert shown["model_path"] == "/models/1.keras"
    assert shown["spec"]["name"] == "mlp"
    assert trainyard.show(job["id"]) == shown  # the Python API returns the same object


def test_show_prints_the_facts_and_the_epochs(store_url: str) -> None:
    [job] = submitted(MLP)
    play_worker(Store.open(store_url), job["id"], [0.5], end=JobState.FAILED)

    out = ok("show", str(job["id"])).stdout

    assert "failed" in out and "epoch 3: loss is nan" in out
    assert "VAL MSE output" in out and "0.5" in out


def test_unknown_job_ids_are_one_clear_line_and_exit_2(store_url: str) -> None:
    for args in (("show", "999"), ("show", "abc"), ("cancel", "999"), ("retry", "12x")):
        result = cli(*args)
        assert result.exit_code == 2, args
        assert result.stderr.startswith("error: no job with id"), result.stderr
        assert result.stderr.count("\n") == 1


# ---------------------------------------------------------------- cancel and retry


def test_cancel_a_queued_job_at_once_and_a_running_one_by_request(store_url: str) -> None:
    running, queued = submitted(MLP, MLP)
    store = Store.open(store_url)
    play_worker(store, running["id"], [])

    out = ok("cancel", str(running["id"]), str(queued["id"])).stdout

    assert f"{queued['id']}\tmlp\tcancelled" in out
    assert f"{running['id']}\tmlp\tcancel requested (running on worker-a)" in out
    assert store.get_job(queued["id"]).state is JobState.CANCELLED
    assert store.renew_lease(running["id"], "worker-a").cancel_requested


def test_cancel_of_a_finished_job_changes_nothing_and_exits_2(store_url: str) -> None:
    done, queued = submitted(MLP, MLP)
    store = Store.open(store_url)
    play_worker(store, done["id"], [0.3], end=JobState.SUCCEEDED)

    result = cli("cancel", str(queued["id"]), str(done["id"]))

    assert result.exit_code == 2
    assert f"job {done['id']} is already succeeded" in result.stderr
    assert store.get_job(queued["id"]).state is JobState.QUEUED


def test_retry_queues_a_failed_job_again_and_refuses_a_queued_one(store_url: str) -> None:
    failed, queued = submitted(MLP, MLP)
    store = Store.open(store_url)
    play_worker(store, failed["id"], [0.3], end=JobState.FAILED)

    refused = cli("retry", str(failed["id"]), str(queued["id"]), "--no-dispatch")
    assert refused.exit_code == 2
    assert f"job {queued['id']} is queued" in refused.stderr
    assert store.get_job(failed["id"]).state is JobState.FAILED

    ok("retry", str(failed["id"]), "--no-dispatch")
    again = store.get_job(failed["id"])
    assert (again.state, again.attempts, again.epochs_done, again.error) == (JobState.QUEUED, 0, 0, None)


def test_the_python_api_mirrors_the_commands(store_url: str) -> None:
    jobs = trainyard.submit([MLP], overrides=["training.epochs=3"], priority=2, dispatch=False)

    assert [(j.name, j.priority, j.epochs_total) for j in jobs] == [("mlp", 2, 3)]
    assert [j.id for j in trainyard.jobs(state="queued")] == [jobs[0].id]
    assert trainyard.cancel([jobs[0].id])[0].state is JobState.CANCELLED
    assert trainyard.retry([jobs[0].id], dispatch=False)[0].state is JobState.QUEUED


# ---------------------------------------------------------------- an unreachable store


def test_an_unreachable_database_is_one_line_and_exit_2(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAINYARD_DB_URL", "postgresql+psycopg://trainer:s3cret@127.0.0.1:9/jobs")

    result = cli("jobs")

    assert result.exit_code == 2
    assert result.stderr.startswith(
        "error: cannot reach the job store at postgresql+psycopg://trainer:***@127.0.0.1:9/jobs"
    )
    assert result.stderr.count("\n") == 1
    assert "s3cret" not in result.output


def test_the_python_api_imports_neither_tensorflow_nor_celery_until_it_needs_them() -> None:
    import subprocess
    import sys

    code = (
        "import sys, trainyard\n"
        "assert 'sqlalchemy' not in sys.modules, 'import trainyard loaded the store'\n"
        "trainyard.jobs, trainyard.show, trainyard.cancel\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'celery') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "job_id",
    ["9223372036854775808", "2147483648", "0", "9" * 5000, "²"],
    ids=["2**63", "2**31", "0", "5000-digits", "superscript"],
)
def test_ids_past_the_integer_range_are_no_job_on_every_command(store_url: str, tmp_path: Path, job_id: str) -> None:
    """SQLite's INTEGER is 64-bit (a larger int raised ``OverflowError`` at bind time), PostgreSQL's
    is 32-bit ("integer out of range"): an id neither can hold names no job, on both backends."""
    [job] = submitted(MLP)  # the store exists and holds a job: only the id is wrong
    shown = job_id if job_id.isascii() and len(job_id) < 30 else None
    data = tmp_path / "rows.csv"
    data.write_text("age,sex\n1,2\n")
    for command in (
        ["show", job_id],
        ["show", "--json", job_id],
        ["cancel", job_id],
        ["retry", job_id],
        ["plot", "--out", tmp_path / "p.png", job_id],
        ["predict", job_id, data],
    ):
        result = cli(*command)
        assert result.exit_code == 2, (command, result.output)
        assert result.stderr.startswith("error: no job with id ") and result.stderr.count("\n") == 1, result.stderr
        if shown is not None:
            assert result.stderr == f"error: no job with id {shown}\n"
        assert len(result.stderr) < 120
    assert Store.open(store_url).get_job(job["id"]).state is JobState.QUEUED
    with pytest.raises(trainyard.JobNotFound):
        trainyard.show(2**70_000)


def test_a_priority_past_the_integer_range_is_refused_before_anything_is_stored(store_url: str) -> None:
    for priority in ("2147483648", "-2147483649", "99999999999999999999"):
        result = cli("submit", MLP, "--priority", priority, "--no-dispatch")
        assert result.exit_code == 2, result.output
        assert result.stderr == (
            f"error: priority: expected an integer from -2147483648 to 2147483647, received {priority}\n"
        )
    assert Store.open(store_url).list_jobs() == []
    assert submitted(MLP, "--priority", "2147483647")[0]["priority"] == 2147483647


def test_show_names_each_outputs_metrics_and_where_early_stopping_stopped(store_url: str) -> None:
    [job] = submitted(MLP)
    store = Store.open(store_url)
    play_worker(store, job["id"], [0.5, 0.4])
    store.finish(
        job["id"],
        "worker-a",
        JobState.SUCCEEDED,
        val_metrics={"output": {"mse": 0.4, "mae": 0.5}},
        test_metrics={"output": {"mse": 0.7, "mae": 0.6}},
        stopped_epoch=37,
        best_epoch=27,
    )

    out = ok("show", str(job["id"])).stdout
    assert "stopped early at epoch 37, best epoch 27" in out
    assert "MSE 0.4, MAE 0.5" in out and "MSE 0.7, MAE 0.6" in out
    shown = json.loads(ok("show", str(job["id"]), "--json").stdout)
    assert shown["val_metrics"] == {"output": {"mse": 0.4, "mae": 0.5}}
    assert shown["test_metrics"] == {"output": {"mse": 0.7, "mae": 0.6}}
    assert (shown["stopped_epoch"], shown["best_epoch"]) == (37, 27)
    assert shown["epochs"][-1]["val_metrics"] == {"output": {"mse": 0.4}}
