"""How ``trainyard jobs`` scales with the store, and how fast a big submit stores its jobs.

1. ``trainyard jobs`` (its query and its table, run in-process through click, as a user runs it)
   with 100 and with 10,000 jobs in the store, plus ``jobs --state queued`` and ``jobs --json``.
   The command reads the newest ``--limit`` jobs (100 by default) and one count per state, so it
   should cost about the same whatever the store holds: target, a ratio of at most 2x between the
   large store and the small one, both measured in this run (median of several runs, interleaved).
2. Submitting 2,000 jobs in one call: ``trainyard.scheduler.operations.submit`` (what ``trainyard
   submit`` runs) with 2,000 spec files, a sweep of the article's four architectures over 500 seeds
   (load and check each file, validate each model, store them in one transaction, send 2,000
   messages to the embedded broker); and the store's part alone, one ``Store.add_jobs``
   transaction. Both printed as jobs per second.

    python benchmarks/store_jobs.py                       # SQLite files in a temporary folder
    python benchmarks/store_jobs.py --db-url postgresql+psycopg://postgres@127.0.0.1/empty_a \\
                                    --db-url postgresql+psycopg://postgres@127.0.0.1/empty_b \\
                                    --db-url postgresql+psycopg://postgres@127.0.0.1/empty_c
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parent))

import machine

from trainyard.cli import main as cli
from trainyard.db import JobState, Store

TARGET_RATIO = 2.0
OUTPUTS = ("main", "aux")


def document(i: int) -> dict:
    return {"name": f"model_{i % 7}", "training": {"epochs": 20}, "layers": [{"units": 8 + i % 5}]}


def fill(store: Store, jobs: int, finished_share: float) -> None:
    """``jobs`` jobs; ``finished_share`` of them run (two epochs each) and end succeeded or failed."""
    for start in range(0, jobs, 1000):
        store.add_jobs([document(start + i) for i in range(min(1000, jobs - start))])
    for index in range(int(jobs * finished_share)):
        job = store.claim_next("bench-worker")
        assert job is not None
        for epoch in (1, 2):
            outputs = {name: {"loss": 1.0 / epoch, "val_mse": 0.5 / epoch + k} for k, name in enumerate(OUTPUTS)}
            store.record_epoch(
                job.id, "bench-worker", {"epoch": epoch, "loss": 1.0 / epoch, "val_loss": 0.6, "outputs": outputs}
            )
        state = JobState.FAILED if index % 10 == 9 else JobState.SUCCEEDED
        store.finish(job.id, "bench-worker", state, error="epoch 2: loss is nan" if state is JobState.FAILED else None)


def time_command(url: str, args: list[str]) -> float:
    """Seconds for one ``trainyard jobs ...`` run against ``url`` (in-process, output captured)."""
    runner = CliRunner(env={"TRAINYARD_DB_URL": url, "COLUMNS": "140"})
    started = time.perf_counter()
    result = runner.invoke(cli, args)
    elapsed = time.perf_counter() - started
    if result.exit_code != 0:
        raise SystemExit(f"trainyard {' '.join(args)} failed: {result.output}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, nargs=2, default=[100, 10_000], metavar=("SMALL", "LARGE"))
    parser.add_argument("--runs", type=int, default=15, help="runs per command and store (median reported)")
    parser.add_argument("--finished-share", type=float, default=0.2, help="share of the jobs run to the end")
    parser.add_argument("--submit", type=int, default=2000, help="jobs in the one big submit")
    parser.add_argument(
        "--db-url",
        action="append",
        default=None,
        help="three empty databases (small, large, submit); give it three times",
    )
    args = parser.parse_args(argv)
    if args.db_url is not None and len(args.db_url) != 3:
        parser.error("--db-url: give three empty databases")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    print(machine.describe())

    with tempfile.TemporaryDirectory(prefix="trainyard-bench-") as folder:
        urls = args.db_url or [f"sqlite:///{Path(folder) / f'{name}.sqlite'}" for name in ("small", "large", "submit")]
        for jobs, url in zip(args.jobs, urls):
            store = Store.open(url)
            started = time.perf_counter()
            fill(store, jobs, args.finished_share)
            print(f"{jobs:>7} jobs ({store.dialect}) filled in {time.perf_counter() - started:.1f} s")

        commands = [["jobs"], ["jobs", "--state", "queued"], ["jobs", "--json"]]
        worst = 0.0
        for command in commands:
            for url in urls[:2]:
                time_command(url, command)  # warm-up: imports, connection pool, page cache
            timings: list[list[float]] = [[], []]
            for _run in range(args.runs):  # interleaved, so both sizes see the same machine load
                for index, url in enumerate(urls[:2]):
                    timings[index].append(time_command(url, command))
            small, large = (statistics.median(t) for t in timings)
            ratio = large / small
            worst = max(worst, ratio)
            print(
                f"trainyard {' '.join(command):<22} {args.jobs[0]:>6} jobs: {small * 1000:7.1f} ms   "
                f"{args.jobs[1]:>6} jobs: {large * 1000:7.1f} ms   ratio {ratio:.2f}x"
            )
        verdict = "ok" if worst <= TARGET_RATIO else "OVER TARGET"
        print(f"worst ratio {worst:.2f}x (target: at most {TARGET_RATIO:g}x) {verdict}")

        store = Store.open(urls[2])
        docs = [document(i) for i in range(args.submit)]
        started = time.perf_counter()
        stored = store.add_jobs(docs)
        seconds = time.perf_counter() - started
        assert len(stored) == args.submit
        print(
            f"Store.add_jobs of {args.submit} jobs in one transaction ({store.dialect}): {seconds:.2f} s, "
            f"{args.submit / seconds:,.0f} jobs/s"
        )
        submitted, seconds = submit_sweep(args.submit, Path(folder), args.db_url[2] if args.db_url else None)
        print(
            f"submit of {args.submit} spec files in one call (validate, store, dispatch; embedded broker): "
            f"{seconds:.2f} s, {submitted / seconds:,.0f} jobs/s"
        )
    return 0 if worst <= TARGET_RATIO else 1


def submit_sweep(count: int, folder: Path, db_url: str | None) -> tuple[int, float]:
    """``operations.submit`` of ``count`` spec files (the four architectures over many seeds) into a fresh store."""
    from trainyard.config import Settings
    from trainyard.scheduler import operations
    from trainyard.specs import load_spec

    base = [load_spec(machine.SPECS / f"{arch}.yaml", check_data=False).document() for arch in machine.ARCHITECTURES]
    docs = []
    for i in range(count):
        doc = dict(base[i % len(base)])
        seed = i // len(base) + 1
        doc["name"] = f"{doc['name']}_s{seed}"
        doc["training"] = {**doc["training"], "seed": seed}
        docs.append(doc)
    paths = machine.write_specs(docs, folder / "sweep")
    env = {"TRAINYARD_HOME": str(folder / "submit-home")}
    if db_url:
        env["TRAINYARD_DB_URL"] = db_url
    settings = Settings.from_env(env)
    settings.ensure_home()
    operations.submit([paths[0]], dispatch=False, settings=settings)  # warm-up: imports TensorFlow once
    started = time.perf_counter()
    jobs = operations.submit(paths, settings=settings)
    seconds = time.perf_counter() - started
    assert len(jobs) == count
    return count, seconds


if __name__ == "__main__":
    sys.exit(main())
