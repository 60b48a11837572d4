"""Target 3: the queue's own latency around a job, with a warm worker, for Redis and the embedded broker.

A background worker (``trainyard.worker.local.LocalWorker``, one training process) is started and
warmed up with one job. Then ``--jobs`` tiny jobs (the article's MLP on diabetes, 2 epochs) are
submitted one at a time with ``trainyard.scheduler.operations.submit`` (what ``trainyard submit``
runs: validate, store, dispatch), each waited for before the next. From the store's timestamps:

* submit -> running: from just before ``submit`` was called to the job's ``started_at`` (the claim);
  also shown from the job's ``created_at`` (stored) to ``started_at``, without the spec validation;
* last epoch -> succeeded: from the last epoch's ``recorded_at`` to ``finished_at`` (saving the
  model, the final validation and test MSE, writing the result).

Medians are reported; aim: under 0.2 s with Redis. The baseline to compare them with is the
training time of the job itself, measured in the same run (its ``started_at`` -> last epoch).

    python benchmarks/job_overhead.py                                   # Redis db 11 and the embedded broker
    python benchmarks/job_overhead.py --redis redis://127.0.0.1:6379/11 --jobs 20
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import machine

AIM_SECONDS = 0.2


def wait_finished(store, job_id: int, timeout: float = 300.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = store.get_job(job_id)
        if job.state.is_finished:
            return job
        time.sleep(0.02)
    raise SystemExit(f"job {job_id} did not finish within {timeout:g} s")


def measure(broker_url: str | None, jobs: int, folder: Path) -> dict[str, list[float]]:
    """Per-job latencies (seconds) through a warm worker on ``broker_url`` (None: embedded)."""
    from trainyard.config import Settings
    from trainyard.db import JobState, Store
    from trainyard.scheduler import operations
    from trainyard.worker.local import LocalWorker

    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINYARD_")}
    env["TRAINYARD_HOME"] = str(folder)
    if broker_url:
        env["TRAINYARD_BROKER_URL"] = broker_url
    settings = Settings.from_env(env)
    settings.ensure_home()
    if broker_url:
        import redis

        redis.Redis.from_url(broker_url).flushdb()  # a database of this benchmark's own
    spec = str(machine.SPECS / "mlp.yaml")
    overrides = ["training.epochs=2"]
    store = Store.open(settings.db_url)
    times: dict[str, list[float]] = {
        "submit_running": [],
        "created_running": [],
        "last_epoch_succeeded": [],
        "training": [],
    }
    with LocalWorker(
        f"bench-{os.getpid()}@%h", folder / "worker.log", concurrency=1, env=env, loglevel="WARNING"
    ) as worker:
        (warm,) = operations.submit([spec], overrides=overrides, settings=settings)
        if wait_finished(store, warm.id).state is not JobState.SUCCEEDED:
            raise SystemExit(f"warm-up job failed:\n{worker.log_tail()}")
        for _ in range(jobs):
            submitted = datetime.now(timezone.utc)
            (job,) = operations.submit([spec], overrides=overrides, settings=settings)
            done = wait_finished(store, job.id)
            if done.state is not JobState.SUCCEEDED:
                raise SystemExit(f"job {job.id} {done.state}: {done.error}\n{worker.log_tail()}")
            last = store.epochs(job.id)[-1].recorded_at
            times["submit_running"].append((done.started_at - submitted).total_seconds())
            times["created_running"].append((done.started_at - done.created_at).total_seconds())
            times["last_epoch_succeeded"].append((done.finished_at - last).total_seconds())
            times["training"].append((last - done.started_at).total_seconds())
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument(
        "--redis", default="redis://127.0.0.1:6379/11", help="Redis broker (a database of its own); '' skips it"
    )
    args = parser.parse_args(argv)

    print(machine.describe())
    print(
        f"# warm worker (1 training process), {args.jobs} jobs one at a time (mlp, diabetes, 2 epochs), SQLite store; medians"
    )
    print(
        f"{'broker':<10} {'submit->running':>15} {'created->running':>16} {'last epoch->succeeded':>21} {'training (baseline)':>19}"
    )
    worst_redis = 0.0
    brokers = [("redis", args.redis)] if args.redis else []
    brokers.append(("embedded", None))
    for label, url in brokers:
        with tempfile.TemporaryDirectory(prefix="trainyard-bench-") as folder:
            times = measure(url, args.jobs, Path(folder))
        m = {key: machine.median(values) for key, values in times.items()}
        print(
            f"{label:<10} {m['submit_running']:>13.3f} s {m['created_running']:>14.3f} s "
            f"{m['last_epoch_succeeded']:>19.3f} s {m['training']:>17.3f} s",
            flush=True,
        )
        if label == "redis":
            worst_redis = max(m["submit_running"], m["last_epoch_succeeded"])
    if args.redis:
        verdict = "ok" if worst_redis <= AIM_SECONDS else "above the aim"
        print(f"# Redis: worst median {worst_redis:.3f} s (aim < {AIM_SECONDS} s) {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
