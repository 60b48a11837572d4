"""The cost of one dashboard frame (snapshot + render) with 100 and with 10,000 jobs in the store.

The dashboard reads only what it shows, so a frame should cost about the same whatever the number
of jobs: the target is a ratio of at most 2x between the large store and the small one, both
measured in this run. Each store is filled through the Store's public methods, the way the
scheduler and the workers fill it: jobs queued, some claimed and finished (succeeded or failed,
with their epochs), a few running with their epochs, workers sending heartbeats.

    python benchmarks/dashboard_frame.py                      # SQLite files in a temporary folder
    python benchmarks/dashboard_frame.py --db-url postgresql+psycopg://postgres@127.0.0.1/bench_empty_db
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from io import StringIO
from pathlib import Path

from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent))

import machine

from trainyard.dashboard.render import render
from trainyard.dashboard.snapshot import read_snapshot
from trainyard.db import JobState, Store, WorkerState, utcnow

OUTPUTS = ("main", "aux")
RUNNING = 4  # one per worker
EPOCHS_RUNNING = 30
EPOCHS_FINISHED = 3


def metrics(epoch: int) -> dict:
    return {
        "epoch": epoch,
        "loss": 1.0 / epoch,
        "val_loss": 1.1 / epoch,
        "outputs": {name: {"loss": (k + 1.0) / epoch, "val_mse": (k + 1.2) / epoch} for k, name in enumerate(OUTPUTS)},
    }


def fill(store: Store, jobs: int, finished_share: float) -> None:
    """``jobs`` jobs: ``finished_share`` of them finished (one in ten failed), ``RUNNING`` running, the rest queued."""
    for start in range(0, jobs, 1000):
        count = min(1000, jobs - start)
        store.add_jobs(
            [{"name": f"model_{(start + i) % 4}", "training": {"epochs": EPOCHS_RUNNING}} for i in range(count)]
        )
    finished = int(jobs * finished_share)
    for index in range(finished):
        owner = f"worker-{index % RUNNING}"
        job = store.claim_next(owner)
        assert job is not None
        for epoch in range(1, EPOCHS_FINISHED + 1):
            store.record_epoch(job.id, owner, metrics(epoch))
        if index % 10 == 9:
            store.finish(job.id, owner, JobState.FAILED, error="TrainingError: epoch 3: loss is nan")
        else:
            store.finish(job.id, owner, JobState.SUCCEEDED, test_mse={name: 0.5 for name in OUTPUTS})
    for worker in range(RUNNING):
        owner = f"worker-{worker}"
        job = store.claim_next(owner)
        assert job is not None
        for epoch in range(1, EPOCHS_RUNNING // 2 + 1):
            store.record_epoch(job.id, owner, metrics(epoch))
        store.worker_heartbeat(owner, f"host-{worker}", ["/gpu:0"], WorkerState.BUSY, job.id)


def one_frame(store: Store, width: int) -> tuple[float, str]:
    """Seconds to read a snapshot and render it into a terminal-like console, and the frame's text."""
    console = Console(file=StringIO(), width=width, record=True, color_system="truecolor", force_terminal=True)
    started = time.perf_counter()
    snapshot = read_snapshot(store)
    console.print(render(snapshot, utcnow(), width))
    elapsed = time.perf_counter() - started
    return elapsed, console.export_text()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, nargs=2, default=[100, 10_000], metavar=("SMALL", "LARGE"))
    parser.add_argument("--runs", type=int, default=15, help="frames measured per store (median reported)")
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--finished-share", type=float, default=0.5, help="share of the jobs that are finished")
    parser.add_argument(
        "--db-url",
        action="append",
        default=None,
        help="two empty databases (small, large) instead of SQLite files; give the option twice",
    )
    args = parser.parse_args(argv)
    if args.db_url is not None and len(args.db_url) != 2:
        parser.error("--db-url: give two empty databases, one per store size")

    print(machine.describe())
    with tempfile.TemporaryDirectory(prefix="trainyard-bench-") as folder:
        urls = args.db_url or [f"sqlite:///{Path(folder) / f'{n}.sqlite'}" for n in args.jobs]
        stores = []
        for jobs, url in zip(args.jobs, urls):
            store = Store.open(url)
            started = time.perf_counter()
            fill(store, jobs, args.finished_share)
            print(f"{jobs:>7} jobs ({store.dialect}) filled in {time.perf_counter() - started:.1f} s")
            for _warm_up in range(3):
                _seconds, text = one_frame(store, args.width)
            if f"total {jobs}" not in text:
                raise SystemExit(f"the frame of the {jobs}-job store does not show 'total {jobs}':\n{text}")
            stores.append(store)
        # Interleaved, so that both sizes see the same machine load (other processes, caches).
        timings: list[list[float]] = [[], []]
        for _run in range(args.runs):
            for index, store in enumerate(stores):
                timings[index].append(one_frame(store, args.width)[0])
        results = [statistics.median(t) for t in timings]
        for jobs, seconds in zip(args.jobs, results):
            print(f"{jobs:>7} jobs: {seconds * 1000:7.2f} ms per frame (median of {args.runs})")
        ratio = results[1] / results[0]
        verdict = "ok" if ratio <= 2.0 else "OVER TARGET"
        print(f"ratio {args.jobs[1]}/{args.jobs[0]} jobs: {ratio:.2f}x (target: at most 2x) {verdict}")
    return 0 if ratio <= 2.0 else 1


if __name__ == "__main__":
    sys.exit(main())
