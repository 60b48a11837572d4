"""How ``trainyard compare``, ``export --csv`` and ``delete`` grow with the number of jobs they work on.

Each command runs in-process through click, as a user runs it, on 100 jobs and on 1,000 jobs of
the same kind (finished, two outputs, 100 stored epochs each, tagged, a model and card file of 20 KB
each on disk), side by side in this run: the runs are interleaved, so both sizes see the same
machine load, and the median of several runs is reported. Target: at most 10x the time of the
100-job run for the 1,000-job run (no worse than linear).

* ``compare --tag T`` (the table on 120 columns: one read of the jobs with their specs, the fields
  that differ, the best of each metric column);
* ``export --tag T --csv FILE`` (100 epochs x 8 values per job: 80,000 and 800,000 rows);
* ``delete --tag``-selected ids (rows, epochs, tags and the folders): every run deletes fresh jobs,
  stored again before it, outside the timing.

    python benchmarks/results_commands.py                 # SQLite files in a temporary folder
    python benchmarks/results_commands.py --runs 3 --epochs 20    # a short run
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parent))

import machine

from trainyard.cli import main as cli
from trainyard.config import Settings
from trainyard.db import JobState, Store, Submission, utcnow

TARGET_RATIO = 10.0
OUTPUTS = ("main", "aux")


def document(i: int) -> dict:
    """A stored spec document; jobs differ in their learning rate, first layer width and seed."""
    return {
        "name": f"model_{i % 4}",
        "data": {"source": "builtin:diabetes", "split": {"valid": 0.2, "test": 0.2, "seed": 42}},
        "inputs": {"features": {"columns": ["age", "bmi", "bp", "s1"], "normalize": True}},
        "layers": [
            {"name": "dense_1", "type": "Dense", "input": "features", "args": {"units": 8 + i % 5}},
            {"name": "dense_2", "type": "Dense", "input": "dense_1", "args": {"units": 4}},
        ],
        "outputs": {
            name: {"input": "dense_2", "target": ["target"], "loss": "mean_squared_error", "weight": 1.0}
            for name in OUTPUTS
        },
        "training": {"optimizer": {"name": "adam", "learning_rate": 0.001 * (1 + i % 10)}, "epochs": 100, "seed": i},
    }


def fill(store: Store, settings: Settings, jobs: int, epochs: int, tag: str) -> list[int]:
    """``jobs`` succeeded jobs with ``epochs`` stored epochs each, tagged ``tag``, with their files.

    Written in bulk through the store's tables (the store's own API writes one epoch per transaction,
    as a worker does; that would take minutes here and is measured by the metric recording benchmark).
    """
    import sqlalchemy as sa
    from sqlalchemy.orm import Session

    from trainyard.db.models import EpochRow, JobRow

    created = store.add_jobs([Submission(spec=document(i), tags=(tag,)) for i in range(jobs)])
    ids = [job.id for job in created]
    now = utcnow()
    engine = sa.create_engine(store.url)
    with Session(engine) as session, session.begin():
        for index, job_id in enumerate(ids):
            final = {name: {"mse": 1.0 + (index % 97) / 10 + k, "mae": 0.5 + k} for k, name in enumerate(OUTPUTS)}
            session.execute(
                sa.update(JobRow)
                .where(JobRow.id == job_id)
                .values(
                    state=JobState.SUCCEEDED,
                    attempts=1,
                    epochs_done=epochs,
                    started_at=now,
                    finished_at=now,
                    val_metrics=final,
                    test_metrics=final,
                    val_mse={name: values["mse"] for name, values in final.items()},
                    test_mse={name: values["mse"] for name, values in final.items()},
                    model_path=str(settings.job_dir(job_id) / "model.keras"),
                )
            )
        rows = []
        for job_id in ids:
            for epoch in range(1, epochs + 1):
                outputs = {
                    name: {
                        "loss": 2.0 / epoch + k,
                        "val_mse": 1.5 / epoch + k,
                        "val_metrics": {"mse": 1.5 / epoch + k, "mae": 1.0 / epoch},
                    }
                    for k, name in enumerate(OUTPUTS)
                }
                rows.append(
                    {
                        "job_id": job_id,
                        "epoch": epoch,
                        "loss": 2.0 / epoch,
                        "val_loss": 1.6 / epoch,
                        "outputs": outputs,
                        "recorded_at": now,
                    }
                )
                if len(rows) >= 5000:
                    session.execute(sa.insert(EpochRow), rows)
                    rows = []
        if rows:
            session.execute(sa.insert(EpochRow), rows)
    engine.dispose()
    for job_id in ids:
        folder = settings.job_dir(job_id)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "model.keras").write_bytes(b"\0" * 20_000)
        (folder / "model.json").write_bytes(b" " * 20_000)
    return ids


def timed(env: dict[str, str], args: list[str]) -> float:
    """Seconds for one in-process ``trainyard ...`` run (output captured)."""
    runner = CliRunner(env={**env, "COLUMNS": "120"})
    started = time.perf_counter()
    result = runner.invoke(cli, args)
    elapsed = time.perf_counter() - started
    if result.exit_code != 0:
        raise SystemExit(f"trainyard {' '.join(args)} failed: {result.output[-2000:]}")
    return elapsed


def side_by_side(sizes: list[int], runs: int, once: Callable[[int, int], float]) -> list[float]:
    """Median seconds of ``once(size_index, run)`` per size, the sizes interleaved run by run."""
    timings: list[list[float]] = [[] for _ in sizes]
    for run in range(runs):
        for index in range(len(sizes)):
            timings[index].append(once(index, run))
    return [statistics.median(t) for t in timings]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, nargs=2, default=[100, 1000], metavar=("SMALL", "LARGE"))
    parser.add_argument("--epochs", type=int, default=100, help="stored epochs per job")
    parser.add_argument("--runs", type=int, default=5, help="runs per command and size (median reported)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    print(machine.describe())

    worst = 0.0
    with tempfile.TemporaryDirectory(prefix="trainyard-bench-") as folder:
        homes = [Path(folder) / f"home-{n}" for n in args.jobs]
        envs = []
        stores = []
        settings_list = []
        for jobs, home in zip(args.jobs, homes):
            env = {"TRAINYARD_HOME": str(home)}
            settings = Settings.from_env(env)
            settings.ensure_home()
            store = Store.open(settings.db_url)
            started = time.perf_counter()
            fill(store, settings, jobs, args.epochs, "bench")
            print(
                f"{jobs:>6} jobs x {args.epochs} epochs ({store.dialect}) stored in {time.perf_counter() - started:.1f} s"
            )
            envs.append(env)
            stores.append(store)
            settings_list.append(settings)

        def report(what: str, medians: list[float]) -> None:
            nonlocal worst
            ratio = medians[1] / medians[0]
            worst = max(worst, ratio)
            print(
                f"trainyard {what:<24} {args.jobs[0]:>5} jobs: {medians[0] * 1000:8.1f} ms   "
                f"{args.jobs[1]:>5} jobs: {medians[1] * 1000:8.1f} ms   ratio {ratio:.2f}x "
                f"(target: at most {TARGET_RATIO:g}x)"
            )

        compare = ["compare", "--tag", "bench"]
        for env in envs:
            timed(env, compare)  # warm-up: imports, connection pool, page cache
        report("compare --tag", side_by_side(args.jobs, args.runs, lambda i, _run: timed(envs[i], compare)))

        def export(index: int, run: int) -> float:
            out = Path(folder) / f"export-{index}-{run}.csv"
            seconds = timed(envs[index], ["export", "--tag", "bench", "--csv", str(out)])
            out.unlink()
            return seconds

        export(0, -1)
        report("export --tag --csv", side_by_side(args.jobs, args.runs, export))

        def delete(index: int, run: int) -> float:
            ids = fill(stores[index], settings_list[index], args.jobs[index], args.epochs, f"doomed-{run}")
            return timed(envs[index], ["delete", *map(str, ids)])

        report("delete JOB...", side_by_side(args.jobs, args.runs, delete))

    verdict = "ok" if worst <= TARGET_RATIO else "OVER TARGET"
    print(f"worst ratio {worst:.2f}x (target: at most {TARGET_RATIO:g}x) {verdict}")
    return 0 if worst <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
