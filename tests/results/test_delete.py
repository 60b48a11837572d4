"""``trainyard delete``: finished jobs go with their epochs, tags and files; queued and running jobs
are refused; ``--dry-run`` lists and sizes; a worker training other jobs meanwhile is not disturbed."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from results_builders import document
from worker_fixtures import write_spec

from trainyard.cli import main
from trainyard.config import Settings
from trainyard.db import JobState, Store
from trainyard.display import format_bytes
from trainyard.scheduler import operations
from trainyard.worker.local import wait_until


def cli(*args: object) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def files_of(settings: Settings, job_id: int, size: int) -> Path:
    """A finished job's folder as a worker leaves it: a model and its card (``size`` bytes in all)."""
    folder = settings.job_dir(job_id)
    folder.mkdir(parents=True)
    (folder / "model.keras").write_bytes(b"k" * (size - 10))
    (folder / "model.json").write_bytes(b"{}" * 5)
    return folder


@pytest.fixture
def store(settings: Settings, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Store:
    monkeypatch.setenv("TRAINYARD_DB_URL", db_url)
    return Store.open(db_url)


def test_dry_run_lists_and_sizes_then_delete_removes_rows_and_files(store: Store, settings: Settings, play) -> None:
    ok = play(store, document(), tags=["old"])
    failed = play(store, document(), end=JobState.FAILED, tags=["old"])
    kept = play(store, document())
    folders = {job_id: files_of(settings, job_id, 1000 * (n + 1)) for n, job_id in enumerate((ok, failed, kept))}

    dry = cli("delete", "--state", "failed", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert dry.stdout == f"{failed}\tmlp\tfailed\t{format_bytes(2000)}\n"
    assert "would delete 1 job(s) and free 1.95 KiB" in dry.stderr
    assert store.get_job(failed).state is JobState.FAILED and folders[failed].exists()

    done = cli("delete", ok, failed)
    assert done.exit_code == 0, done.output
    assert "deleted 2 job(s), freed 2.93 KiB" in done.stderr
    assert [job.id for job in store.list_jobs()] == [kept]
    assert store.list_jobs(tag="old") == [] and list(store.epochs_of([ok, failed])) == []
    assert not folders[ok].exists() and not folders[failed].exists() and folders[kept].exists()
    assert cli("show", ok).exit_code == 2

    assert cli("delete", "--older-than", "1d").stderr == "no job to delete\n"
    assert "deleted 1 job(s)" in cli("delete", "--older-than", "0s").stderr
    assert store.list_jobs() == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "name the jobs"),
        (("--older-than", "thirty days"), "--older-than: expected a number and a unit"),
        (("--state", "running"), "Invalid value for '--state'"),
        (("12345",), "12345"),
    ],
)
def test_bad_deletes_are_one_line_and_exit_2(store: Store, args: tuple[str, ...], message: str) -> None:
    result = cli("delete", *args)
    assert result.exit_code == 2 and message in result.output, result.output
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_delete_while_a_worker_trains_others_leaves_them_alone(
    env: dict[str, str], settings: Settings, start_worker, play, tmp_path: Path, monkeypatch
) -> None:
    store = Store.open(settings.db_url)
    finished = [play(store, document(), val=[float(n + 1)]) for n in range(3)]
    for job_id in finished:
        files_of(settings, job_id, 500)
    monkeypatch.chdir(tmp_path)
    (training,) = operations.submit([write_spec(tmp_path, "long", epochs=300, batch_size=8)], settings=settings)
    (waiting,) = operations.submit([write_spec(tmp_path, "next", epochs=2)], settings=settings)
    start_worker("deleter", env)
    assert wait_until(lambda: store.get_job(training.id).epochs_done >= 2, timeout=240), "the job never started"

    refused = cli("delete", training.id, finished[0])
    assert refused.exit_code == 2 and f"job {training.id} is running" in refused.stderr, refused.output
    assert store.get_job(finished[0]).state is JobState.SUCCEEDED  # nothing deleted
    assert "deleted 0" not in refused.output

    done = cli("delete", *finished)
    assert done.exit_code == 0 and "deleted 3 job(s)" in done.stderr, done.output
    assert not any(settings.job_dir(job_id).exists() for job_id in finished)

    assert wait_until(lambda: store.get_job(waiting.id).state.is_finished, timeout=600)
    for job in (training, waiting):
        record = store.get_job(job.id)
        assert record.state is JobState.SUCCEEDED, record.error
        assert [e.epoch for e in store.epochs(job.id)] == list(range(1, record.epochs_total + 1))
        assert Path(record.model_path).exists() and Path(record.model_path).with_name("model.json").exists()


def trial_jobs(store: Store, settings: Settings, rates: tuple[float, ...]) -> tuple[int, list[int]]:
    """A sweep with one succeeded trial per learning rate, each with its files; (sweep id, trial ids)."""
    from trainyard.db import Submission

    sweep, _ = store.save_sweep("lr", {"method": "grid"}, document(), {})
    trials = []
    for number, rate in enumerate(rates):
        params = {"training.optimizer.learning_rate": rate}
        doc = document(**{"training.optimizer.learning_rate": rate})
        job = store.add_trial(sweep.id, number, params, f"key-{number}", Submission(spec=doc))
        assert job is not None
        claimed = store.claim_next("results-test/1")
        assert claimed is not None and claimed.id == job.id
        store.finish(job.id, "results-test/1", JobState.SUCCEEDED)
        files_of(settings, job.id, 1000)
        trials.append(job.id)
    return sweep.id, trials


def test_a_running_sweeps_trials_are_kept_until_the_whole_sweep_is_deleted(
    store: Store, settings: Settings, play
) -> None:
    from trainyard.db import SweepState

    sweep, trials = trial_jobs(store, settings, (0.1, 0.01))
    other = play(store, document(), end=JobState.FAILED)

    running = cli("delete", "--sweep", sweep)
    assert running.exit_code == 2, running.output
    assert f"sweep {sweep} (lr) is running: cancel it first (trainyard sweep cancel {sweep}); nothing deleted" in (
        running.stderr
    )
    named = cli("delete", trials[0], other)
    assert named.exit_code == 2, named.output
    assert f"job {trials[0]} is trial 0 of sweep {sweep}" in named.stderr and "nothing deleted" in named.stderr
    assert {job.id for job in store.list_jobs()} == {*trials, other}

    by_age = cli("delete", "--older-than", "0s")  # the trials are left out, the other job goes
    assert by_age.exit_code == 0, by_age.output
    assert by_age.stdout.startswith(f"{other}\t") and "deleted 1 job(s)" in by_age.stderr
    assert [job.id for job in store.sweep_jobs(sweep)] == trials

    narrowed = cli("delete", "--sweep", sweep, "--state", "failed")
    assert narrowed.exit_code == 2 and "cannot narrow it" in narrowed.stderr

    assert store.set_sweep_state(sweep, SweepState.CANCELLED)
    dry = cli("delete", "--sweep", sweep, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert [line.split("\t")[0] for line in dry.stdout.splitlines()] == [str(t) for t in trials]
    assert f"would delete 2 job(s) and sweep {sweep} (lr) and free" in dry.stderr
    assert store.get_sweep(sweep).state is SweepState.CANCELLED and len(store.sweep_jobs(sweep)) == 2

    done = cli("delete", "--sweep", sweep)
    assert done.exit_code == 0, done.output
    assert "deleted 2 job(s)" in done.stderr and f"deleted sweep {sweep} (lr)" in done.stderr
    assert store.list_jobs() == [] and store.list_sweeps() == []
    assert not any(settings.job_dir(t).exists() for t in trials)
    gone = cli("sweep", "show", sweep)
    assert gone.exit_code == 2 and str(sweep) in gone.stderr and "Traceback" not in gone.output
    unknown = cli("delete", "--sweep", 999)
    assert unknown.exit_code == 2 and "999" in unknown.stderr and "Traceback" not in unknown.output


def test_the_store_keeps_a_trial_whose_sweep_runs_again_between_choice_and_delete(store: Store, settings) -> None:
    from trainyard.db import SweepState

    sweep, trials = trial_jobs(store, settings, (0.1,))
    assert store.set_sweep_state(sweep, SweepState.FINISHED)
    assert store.delete_sweep(sweep) is False  # it still has its trial
    assert store.set_sweep_state(sweep, SweepState.RUNNING, from_state=SweepState.FINISHED)  # extended meanwhile
    assert store.delete_jobs(trials) == []
    assert [job.id for job in store.sweep_jobs(sweep)] == trials
    assert store.delete_sweep(sweep) is False
