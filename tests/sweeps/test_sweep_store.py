"""Sweeps in a real store (SQLite file and PostgreSQL): trials queued once each, up to ``parallel``,
deterministic for a seed, extended without reruns, and pruning decisions that a later look repeats."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sweep_helpers import drain, queued, submit, sweep_file, train_next
from worker_fixtures import write_spec

from trainyard.db import JobState, Store, SweepState
from trainyard.sweeps import SweepDefinition, advance, params_key, prune_reason


@pytest.fixture
def store(db_url: str) -> Store:
    return Store.open(db_url)


RANDOM = """\
name: random_sweep
method: random
trials: 3
parallel: 2
seed: 5
parameters:
  training.optimizer.learning_rate: {log_uniform: [0.0001, 0.1]}
  layers[0].units: {int_uniform: [2, 32]}
"""


def test_trials_are_queued_up_to_parallel_and_the_sweep_ends_with_its_last_trial(store: Store, tmp_path: Path) -> None:
    sweep_id = submit(store, sweep_file(tmp_path, RANDOM))
    assert len(queued(store, sweep_id)) == 2
    assert queued(store, sweep_id) == []  # two queued: as many as `parallel`
    train_next(store)
    assert len(queued(store, sweep_id)) == 1  # one slot free, one trial left of three
    train_next(store)
    train_next(store)
    assert store.get_sweep(sweep_id).state is SweepState.RUNNING
    (progress,) = advance(store, sweep_id)
    assert progress.finished and store.get_sweep(sweep_id).state is SweepState.FINISHED
    jobs = store.sweep_jobs(sweep_id)
    assert [j.trial for j in jobs] == [0, 1, 2]
    assert all(j.state is JobState.SUCCEEDED for j in jobs)
    for job in jobs:
        assert isinstance(job.params["layers[0].units"], int)
        assert job.submission is None  # list reads leave the spec out; the job's own spec has the values:
        document = store.get_job(job.id).spec_document
        assert document["layers"][0]["units"] == job.params["layers[0].units"]
        assert document["training"]["optimizer"]["learning_rate"] == job.params["training.optimizer.learning_rate"]
        assert document["name"] == f"random_sweep-{job.trial}"


def test_processes_advancing_one_sweep_at_once_queue_each_trial_once(store: Store, tmp_path: Path) -> None:
    sweep_id = submit(
        store, sweep_file(tmp_path, RANDOM.replace("trials: 3", "trials: 12").replace("parallel: 2", "parallel: 6"))
    )
    barrier = threading.Barrier(4)
    errors: list[Exception] = []

    def race() -> None:
        try:
            barrier.wait()
            for _ in range(3):
                advance(store, sweep_id)
        except Exception as exc:  # noqa: BLE001 - reported by the test thread below
            errors.append(exc)

    threads = [threading.Thread(target=race) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    jobs = store.sweep_jobs(sweep_id)
    assert [j.trial for j in jobs] == list(range(6))  # exactly `parallel`, numbered without gap or double
    assert len({params_key(j.params or {}) for j in jobs}) == 6


def test_the_same_sweep_and_seed_ask_for_the_same_trials(db_url: str, tmp_path: Path) -> None:
    tpe = (
        RANDOM.replace("method: random", "method: tpe")
        .replace("trials: 3", "trials: 14")
        .replace("parallel: 2", "parallel: 1")
    )
    runs = []
    for n in range(2):
        folder = tmp_path / str(n)
        folder.mkdir()
        url = db_url if n == 0 else f"sqlite:///{folder / 'other.sqlite'}"
        store = Store.open(url)
        sweep_id = submit(store, sweep_file(folder, tpe))
        drain(store, sweep_id)
        runs.append([j.params for j in store.sweep_jobs(sweep_id)])
    assert len(runs[0]) == 14 and runs[0] == runs[1]  # TPE past its 10 random start-up trials too


def test_tpe_is_multivariate_with_a_constant_liar_on_every_supported_optuna(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Optuna 5 makes TPE multivariate with a constant liar by default, Optuna 4 (also supported)
    neither: a sweep asks for both, so its trials do not depend on which one is installed."""
    import optuna

    made: list[dict] = []

    class Recording(optuna.samplers.TPESampler):
        def __init__(self, **kwargs: object) -> None:
            made.append(kwargs)
            super().__init__(**kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(optuna.samplers, "TPESampler", Recording)
    tpe = RANDOM.replace("method: random", "method: tpe").replace("trials: 3", "trials: 12")
    sweep_id = submit(store, sweep_file(tmp_path, tpe))
    drain(store, sweep_id)
    assert len(store.sweep_jobs(sweep_id)) == 12 and made
    assert all(kwargs.get("multivariate") is True and kwargs.get("constant_liar") is True for kwargs in made)


GRID = """\
name: grid_sweep
method: grid
parallel: 20
parameters:
  layers[0].units: {choice: [4, 8]}
  training.batch_size: {choice: [16, 32]}
"""


def test_a_grid_runs_every_point_once_and_a_larger_grid_reruns_none(store: Store, tmp_path: Path) -> None:
    path = sweep_file(tmp_path, GRID)
    sweep_id = submit(store, path)
    assert len(queued(store, sweep_id)) == 4
    for _ in range(4):
        train_next(store)
    advance(store, sweep_id)
    assert store.get_sweep(sweep_id).state is SweepState.FINISHED
    first = {params_key(j.params or {}) for j in store.sweep_jobs(sweep_id)}

    path.write_text(path.read_text().replace("choice: [4, 8]", "choice: [4, 8, 12]"))
    assert submit(store, path) == sweep_id  # the same sweep, extended
    assert store.get_sweep(sweep_id).state is SweepState.RUNNING
    new = queued(store, sweep_id)
    assert len(new) == 2  # only the points with 12 units
    assert {j.params["layers[0].units"] for j in store.get_jobs(new)} == {12}
    jobs = store.sweep_jobs(sweep_id)
    assert len({params_key(j.params or {}) for j in jobs}) == 6 and first <= {params_key(j.params or {}) for j in jobs}


def test_a_random_search_never_repeats_a_point_and_ends_when_the_space_is_used_up(store: Store, tmp_path: Path) -> None:
    small = """\
name: small_space
method: random
trials: 10
parallel: 1
parameters:
  layers[0].units: {choice: [4, 8, 16]}
"""
    sweep_id = submit(store, sweep_file(tmp_path, small))
    drain(store, sweep_id)
    jobs = store.sweep_jobs(sweep_id)
    assert sorted(j.params["layers[0].units"] for j in jobs) == [4, 8, 16]
    assert store.get_sweep(sweep_id).state is SweepState.FINISHED


def test_more_trials_extend_a_finished_sweep_without_rerunning_any(store: Store, tmp_path: Path) -> None:
    path = sweep_file(tmp_path, RANDOM)
    sweep_id = submit(store, path)
    drain(store, sweep_id)
    assert store.get_sweep(sweep_id).state is SweepState.FINISHED
    before = [(j.id, j.params) for j in store.sweep_jobs(sweep_id)]
    path.write_text(path.read_text().replace("trials: 3", "trials: 5"))
    submit(store, path)
    drain(store, sweep_id)
    jobs = store.sweep_jobs(sweep_id)
    assert [(j.id, j.params) for j in jobs[:3]] == before and len(jobs) == 5
    assert all(j.attempts == 1 for j in jobs)


def test_a_sweep_of_that_name_with_another_base_spec_is_refused(store: Store, tmp_path: Path) -> None:
    from trainyard.errors import SpecError

    path = sweep_file(tmp_path, RANDOM)
    submit(store, path)
    write_spec(tmp_path, "tiny", epochs=9)
    with pytest.raises(SpecError, match="already exists with another base spec"):
        submit(store, path)


ASHA = """\
name: pruned_sweep
method: random
trials: 4
parallel: 4
parameters:
  layers[0].units: {choice: [4, 8, 16, 32]}
prune: {method: asha, min_epochs: 1, reduction_factor: 2}
"""


def test_a_pruning_decision_is_the_same_when_taken_again_later(store: Store, tmp_path: Path) -> None:
    sweep_id = submit(store, sweep_file(tmp_path, ASHA, epochs=6))
    assert len(queued(store, sweep_id)) == 4
    owners = {n: f"w/{n}" for n in range(4)}
    ids = {}
    for n, owner in owners.items():
        claimed = store.claim_next(owner)
        assert claimed is not None
        ids[n] = claimed.id
    definition = SweepDefinition.from_document(store.get_sweep(sweep_id).definition)

    def decide(n: int, epoch: int) -> str | None:
        return prune_reason(definition, ids[n], epoch, store.sweep_jobs(sweep_id), store.sweep_epochs(sweep_id))

    def record(n: int, epoch: int, mse: float) -> None:
        store.record_epoch(ids[n], owners[n], {"epoch": epoch, "loss": 1.0, "outputs": {"y": {"val_mse": mse}}})

    record(0, 1, 10.0)
    assert decide(0, 1) is None  # alone at the first rung: promoted
    record(1, 1, 20.0)
    assert decide(1, 1) is not None  # worse than the one before it at that rung (1 in 2 goes on)
    record(2, 1, 5.0)
    assert decide(2, 1) is None
    record(3, 1, 30.0)
    verdicts = [decide(n, 1) for n in range(4)]
    assert [v is None for v in verdicts] == [True, False, True, False]
    # Later epochs and later trials change nothing about the decisions already taken:
    record(0, 2, 9.0)
    record(2, 2, 1.0)
    store.finish(ids[2], owners[2], JobState.SUCCEEDED)
    assert [decide(n, 1) for n in range(4)] == verdicts
    assert "after epoch 1" in (verdicts[1] or "")


ASHA_RUNGS = """\
name: rung_sweep
method: random
trials: 3
parallel: 3
parameters:
  layers[0].units: {choice: [4, 8, 16, 32]}
prune: {method: asha, min_epochs: 2, reduction_factor: 2}
"""


class CountingStore:
    """The real store, counting how often a whole sweep's epochs are read."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.epoch_reads = 0

    def sweep_epochs(self, sweep_id: int) -> object:
        self.epoch_reads += 1
        return self.store.sweep_epochs(sweep_id)

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)


def test_a_worker_reads_the_sweeps_epochs_for_asha_only_at_its_rungs(store: Store, tmp_path: Path) -> None:
    """ASHA decides at epochs 2, 4 and 8 here (min_epochs x reduction_factor^k); between them it
    cannot prune whatever is stored. The worker asked it, reading every stored epoch of the sweep,
    after every epoch of every trial; now only at the rungs, with the same decisions."""
    from trainyard.worker.runner import _pruning

    sweep_id = submit(store, sweep_file(tmp_path, ASHA_RUNGS, epochs=9))
    assert len(queued(store, sweep_id)) == 3
    owners = [f"w/{n}" for n in range(3)]
    jobs = [store.claim_next(owner) for owner in owners]
    assert all(job is not None for job in jobs)
    definition = SweepDefinition.from_document(store.get_sweep(sweep_id).definition)
    counting = CountingStore(store)
    decide = _pruning(counting, jobs[2])  # type: ignore[arg-type]
    assert decide is not None
    verdicts = []
    for epoch in range(1, 9):
        for n, (job, owner) in enumerate(zip(jobs, owners)):
            mse = (10.0 + n) / epoch if n < 2 else (1.0 if epoch < 3 else 50.0)  # the third: best, then worst
            store.record_epoch(job.id, owner, {"epoch": epoch, "loss": 1.0, "outputs": {"y": {"val_mse": mse}}})
        verdict = decide(epoch)
        expected = prune_reason(definition, jobs[2].id, epoch, store.sweep_jobs(sweep_id), store.sweep_epochs(sweep_id))
        assert verdict == expected
        verdicts.append(verdict)
        if verdict is not None:
            break
    assert verdicts[:3] == [None] * 3 and verdicts[3] is not None  # promoted at epoch 2, pruned at 4
    assert counting.epoch_reads == 2  # at epochs 2 and 4 only
