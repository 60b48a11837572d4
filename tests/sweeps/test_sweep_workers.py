"""Sweeps driven by real ``celery -A trainyard.worker worker`` processes and nothing else.

After ``submit_sweep`` queues the first trials, only the workers move a sweep on (a worker that ends
a trial asks for the next, and every reconciler pass does too). Checked on every sweep here: each
trial trained once, each epoch stored once, a pruned trial stopped exactly where the pruner says
when asked again from the stored epochs (and nowhere before), and the best trial's objective equals
the one recomputed from its stored epochs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from worker_fixtures import FAST, write_spec

from trainyard.config import Settings
from trainyard.db import JobState, Store, SweepState
from trainyard.queue import transport
from trainyard.scheduler import sweeps
from trainyard.sweeps import SweepDefinition, params_key, prune_reason
from trainyard.worker.local import LocalWorker, wait_until

pytestmark = pytest.mark.slow

#: Generous bounds for a 2-core machine shared with other work; never a timing assertion.
WAIT = 400.0


@dataclass
class Yard:
    settings: Settings
    env: dict[str, str]
    store: Store
    folder: Path
    workers: dict[str, LocalWorker] = field(default_factory=dict)

    def sweep_file(self, name: str, body: str, epochs: int = 4, batch_size: int = 32) -> Path:
        write_spec(self.folder, f"{name}_spec", epochs=epochs, batch_size=batch_size)
        path = self.folder / f"{name}.yaml"
        path.write_text(f"name: {name}\nspec: {name}_spec.yaml\n" + body)
        return path

    def submit(self, path: Path) -> int:
        cwd = os.getcwd()
        os.chdir(self.folder)  # the data roots: the submitter's working directory
        try:
            record, _ = sweeps.submit_sweep(path, settings=self.settings)
        finally:
            os.chdir(cwd)
        return record.id

    def start(self, name: str) -> LocalWorker:
        worker = LocalWorker(f"{name}@%h", self.settings.home / "logs" / f"{name}.log", env=self.env).start()
        self.workers[name] = worker
        return worker

    def logs(self) -> str:
        return "\n".join(w.log_tail(80) for w in self.workers.values())

    def finished(self, sweep_id: int) -> dict:
        done = wait_until(lambda: self.store.get_sweep(sweep_id).state is not SweepState.RUNNING, WAIT, interval=0.5)
        document = sweeps.sweep_document(self.store, self.store.get_sweep(sweep_id))
        assert done, ({t["job"]: t["state"] for t in document["trials"]}, self.logs())
        return document

    def stop(self) -> None:
        for worker in self.workers.values():
            worker.stop(timeout=30)


def _yard(folder: Path, **urls: str) -> Yard:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINYARD_")}
    env.update(FAST, TRAINYARD_HOME=str(folder / "home"), TRAINYARD_DATA_ROOTS=str(folder), **urls)
    settings = Settings.from_env(env)
    return Yard(settings, env, Store.open(settings.db_url), folder)


def check(yard: Yard, sweep_id: int, document: dict, attempts: int = 1) -> None:
    """Every trial once, epochs once each, pruned where the pruner says, the best recomputed."""
    store = yard.store
    assert document["state"] == "finished", document["state"]
    definition = SweepDefinition.from_document(store.get_sweep(sweep_id).definition)
    jobs = store.sweep_jobs(sweep_id)
    epochs = store.sweep_epochs(sweep_id)
    assert len(jobs) == definition.total == len(document["trials"])
    assert len({params_key(job.params or {}) for job in jobs}) == len(jobs)  # no point twice
    assert [job.trial for job in jobs] == list(range(len(jobs)))
    for job in jobs:
        stored = [e.epoch for e in epochs.get(job.id, [])]
        assert stored == list(range(1, len(stored) + 1)), (job.id, stored)
        assert job.attempts <= attempts, (job.id, job.attempts, job.error)
        if job.state is JobState.PRUNED:
            assert job.stopped_epoch == stored[-1] < job.epochs_total
            assert prune_reason(definition, job.id, stored[-1], jobs, epochs) == job.error
        else:
            assert job.state is JobState.SUCCEEDED, (job.id, job.state, job.error)
            assert stored[-1] == job.epochs_total
        for epoch in stored[:-1] if job.state is JobState.PRUNED else stored[: job.epochs_total - 1]:
            assert prune_reason(definition, job.id, epoch, jobs, epochs) is None, (job.id, epoch)
    best = document["best"]
    assert best is not None
    weights = definition.outputs
    recomputed = {
        job.id: sum(w * epochs[job.id][-1].outputs[name]["val_mse"] for name, w in weights.items())
        for job in jobs
        if job.state is JobState.SUCCEEDED
    }
    assert best["objective"] == pytest.approx(min(recomputed.values()), rel=1e-12)
    assert recomputed[best["job"]] == pytest.approx(best["objective"], rel=1e-12)
    assert best["params"] == next(job.params for job in jobs if job.id == best["job"])


RANDOM_ASHA = """\
method: random
trials: 6
parallel: 2
seed: 11
parameters:
  training.optimizer.learning_rate: {log_uniform: [0.0003, 0.3]}
  layers[0].units: {choice: [2, 4, 8, 16]}
prune: {method: asha, min_epochs: 1, reduction_factor: 2}
"""


@pytest.fixture(scope="module")
def yard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Yard]:
    """The embedded broker and one worker ``w1``."""
    yard = _yard(tmp_path_factory.mktemp("sweeps"))
    yard.start("w1")
    try:
        yield yard
    finally:
        yard.stop()


def test_a_random_sweep_with_asha_completes_with_only_a_worker_alive(yard: Yard) -> None:
    sweep_id = yard.submit(yard.sweep_file("asha", RANDOM_ASHA))
    document = yard.finished(sweep_id)
    check(yard, sweep_id, document)
    assert document["counts"]["pruned"] >= 1  # an ASHA rung at every epoch prunes some of six trials

    # The same file with more trials extends the sweep: the six trials stay as they are.
    before = {job.id: (job.params, job.finished_at) for job in yard.store.sweep_jobs(sweep_id)}
    path = yard.sweep_file("asha", RANDOM_ASHA.replace("trials: 6", "trials: 8"))
    assert yard.submit(path) == sweep_id
    document = yard.finished(sweep_id)
    check(yard, sweep_id, document)
    after = {job.id: (job.params, job.finished_at) for job in yard.store.sweep_jobs(sweep_id)}
    assert len(after) == 8 and all(after[job_id] == seen for job_id, seen in before.items())


def test_a_worker_killed_mid_trial_the_next_resumes_it_and_its_pruning_is_unchanged(yard: Yard) -> None:
    body = RANDOM_ASHA.replace("trials: 6", "trials: 4").replace("min_epochs: 1", "min_epochs: 3")
    sweep_id = yard.submit(yard.sweep_file("killed", body, epochs=40, batch_size=4))

    def running_with_epochs() -> list[int]:
        return [j.id for j in yard.store.sweep_jobs(sweep_id) if j.state is JobState.RUNNING and j.epochs_done >= 2]

    assert wait_until(running_with_epochs, WAIT), yard.logs()
    yard.workers["w1"].kill()
    victims = running_with_epochs()  # still `running` in the store: its worker is dead
    yard.start("w2")  # its reconciler takes the dead worker's trial back once its lease expires
    document = yard.finished(sweep_id)
    check(yard, sweep_id, document, attempts=2)
    assert victims and all(yard.store.get_job(job_id).attempts == 2 for job_id in victims)


# ---------------------------------------------------------------- Redis and PostgreSQL, two workers


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, module_redis_url: str, module_pg_url: str) -> Iterator[Yard]:
    yard = _yard(
        tmp_path_factory.mktemp("cluster"), TRAINYARD_BROKER_URL=module_redis_url, TRAINYARD_DB_URL=module_pg_url
    )
    try:
        yield yard
    finally:
        yard.stop()
        from trainyard.db.engine import dispose_all

        dispose_all()


GRID = """\
method: grid
parallel: 3
parameters:
  layers[0].units: {choice: [4, 8]}
  training.batch_size: {choice: [16, 64]}
"""

TPE_MEDIAN = """\
method: tpe
trials: 5
parallel: 2
seed: 3
parameters:
  training.optimizer.learning_rate: {log_uniform: [0.0003, 0.3]}
prune: {method: median, warmup_epochs: 2, min_trials: 1}
"""


@pytest.mark.redis
@pytest.mark.postgres
def test_grid_and_tpe_sweeps_survive_a_broker_flush_on_two_workers(cluster: Yard, module_redis_url: str) -> None:
    import redis

    grid = cluster.submit(cluster.sweep_file("grid", GRID, epochs=2))
    tpe = cluster.submit(cluster.sweep_file("tpe", TPE_MEDIAN, epochs=4))
    assert transport.queue_size(cluster.settings) == 5  # the first trials' slots: 3 + 2
    redis.Redis.from_url(module_redis_url).flushdb()  # the broker loses them all
    cluster.start("w1")
    cluster.start("w2")
    grid_document = cluster.finished(grid)
    check(cluster, grid, grid_document)
    assert sorted(
        (t["params"]["layers[0].units"], t["params"]["training.batch_size"]) for t in grid_document["trials"]
    ) == [
        (4, 16),
        (4, 64),
        (8, 16),
        (8, 64),
    ]
    check(cluster, tpe, cluster.finished(tpe))


def test_trainyard_run_trains_a_sweep_file_with_a_local_worker_and_ranks_its_trials(tmp_path: Path) -> None:
    import subprocess
    import sys

    write_spec(tmp_path, "tiny", epochs=2)
    (tmp_path / "sweep.yaml").write_text(
        "name: local\nspec: tiny.yaml\nmethod: grid\nparallel: 1\nparameters:\n  layers[0].units: {choice: [4, 8]}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINYARD_")}
    env.update(FAST, TRAINYARD_HOME=str(tmp_path / "home"))
    trainyard = str(Path(sys.executable).with_name("trainyard"))
    done = subprocess.run(
        [trainyard, "run", "sweep.yaml", "-c", "1", "--timeout", str(WAIT)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=WAIT + 60,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "finished" in done.stdout and "2 of 2 done" in done.stdout
    assert "layers[0].units=4" in done.stdout and "layers[0].units=8" in done.stdout
    store = Store.open(Settings.from_env(env).db_url)
    (sweep,) = store.list_sweeps()
    assert sweep.state is SweepState.FINISHED
    assert sorted(j.params["layers[0].units"] for j in store.sweep_jobs(sweep.id)) == [4, 8]
