"""A reconciler pass and a worker heartbeat with 10,000 queued jobs (a sweep) against 100.

Both loops run in every worker's parent process, every few seconds, however long the queue: a pass
should cost the same with 10,000 queued jobs as with 100, and so should a heartbeat (target: a
ratio of at most 2x for each, both sizes measured side by side in this run, medians). Each store is
a SQLite file with an embedded broker of its own, filled the way a sweep fills it: ``submit`` sends
one slot per job (``dispatch``), four jobs are running (two of them on the node whose heartbeat is
measured). Measured, interleaved:

* a healing pass (``reconcile``): the broker lost ``--lost`` slots (taken off the queue before the
  pass, the jobs' last dispatch set back past the grace period), so the pass counts the queued jobs,
  asks the broker, reads the ``--lost`` jobs to send and sends them;
* a steady pass: nothing is missing (the pass only counts, asks the broker and finds nothing to do);
* a heartbeat (``NodeKeeper.heartbeat``): the node's current job, then its row in ``workers``.

    python benchmarks/reconcile_pass.py
    python benchmarks/reconcile_pass.py --jobs 100 2000 --runs 5      # quicker
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import machine

from trainyard import defaults
from trainyard.config import Settings
from trainyard.db import JobState, Store, utcnow
from trainyard.db.records import make_owner
from trainyard.queue import dispatch, queue_size, reconcile, transport
from trainyard.worker.node import NodeKeeper

NODE = "bench@host"
RUNNING = 4
TARGET = 2.0


class Yard:
    """One store and its embedded broker, with ``jobs`` queued jobs and RUNNING running ones."""

    def __init__(self, folder: Path, jobs: int, lost: int) -> None:
        self.settings = Settings.from_env({"TRAINYARD_HOME": str(folder)})
        self.store = Store.open(self.settings.db_url)
        self.jobs = jobs
        self.lost = lost
        ids: list[int] = []
        for start in range(0, jobs + RUNNING, 1000):
            count = min(1000, jobs + RUNNING - start)
            added = self.store.add_jobs(
                [{"name": f"sweep_{start + i}", "training": {"epochs": 10}} for i in range(count)]
            )
            ids += [job.id for job in added]
        dispatch(ids, self.settings, store=self.store)  # one slot per job, as submit sends them
        # ... an hour ago: every job is past the grace period, so a lost slot is sent again at once
        self.store.mark_dispatched(ids, at=utcnow() - timedelta(hours=1))
        for index in range(RUNNING):
            node = NODE if index < 2 else f"other-{index}@host"
            claimed = self.store.claim_next(make_owner(node, 1000 + index), lease_seconds=3600)
            assert claimed is not None
            self._take_slots(1)  # the claim consumed its slot
        self.keeper = NodeKeeper(NODE, self.settings, reconcile=False)
        assert self.store.count_jobs(JobState.QUEUED) == jobs and queue_size(self.settings) == jobs

    def _take_slots(self, count: int) -> None:
        with transport.connection(self.settings.broker_url) as conn, conn.channel() as channel:
            for _ in range(count):
                assert channel.basic_get(defaults.QUEUE, no_ack=True) is not None

    def lose_slots(self) -> None:
        """The broker loses ``lost`` slots (the pass sends the oldest dispatches again)."""
        self._take_slots(self.lost)

    def healing_pass(self) -> float:
        started = time.perf_counter()
        report = reconcile(self.store, self.settings)
        elapsed = time.perf_counter() - started
        assert len(report.redispatched) == self.lost and report.in_broker == self.jobs - self.lost, report
        return elapsed

    def steady_pass(self) -> float:
        started = time.perf_counter()
        report = reconcile(self.store, self.settings)
        elapsed = time.perf_counter() - started
        assert report.redispatched == () and report.in_broker == self.jobs, report
        return elapsed

    def heartbeat(self) -> float:
        started = time.perf_counter()
        self.keeper.heartbeat()
        elapsed = time.perf_counter() - started
        return elapsed


def _interleaved(
    yards: list[Yard], runs: int, measure: Callable[[Yard], float], before: Callable[[Yard], None] | None
) -> list[float]:
    timings: list[list[float]] = [[] for _ in yards]
    for _run in range(runs):
        for index, yard in enumerate(yards):
            if before is not None:
                before(yard)
            timings[index].append(measure(yard))
    return [statistics.median(t) for t in timings]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, nargs=2, default=[100, 10_000], metavar=("SMALL", "LARGE"))
    parser.add_argument("--runs", type=int, default=15, help="measurements per store and kind (median reported)")
    parser.add_argument("--lost", type=int, default=5, help="slots the broker loses before each healing pass")
    args = parser.parse_args(argv)

    print(machine.describe())
    with tempfile.TemporaryDirectory(prefix="trainyard-bench-") as folder:
        yards = []
        for jobs in args.jobs:
            started = time.perf_counter()
            yards.append(Yard(Path(folder) / f"q{jobs}", jobs, args.lost))
            print(
                f"{jobs:>7} queued jobs (+{RUNNING} running): store and embedded broker filled in {time.perf_counter() - started:.1f} s"
            )
        for yard in yards:  # warm up: engines, mappers, the broker's tables
            yard.lose_slots()
            yard.healing_pass()
            yard.steady_pass()
            yard.heartbeat()
        ok = True
        for label, measure, before in (
            ("healing reconcile pass", Yard.healing_pass, Yard.lose_slots),
            ("steady reconcile pass", Yard.steady_pass, None),
            ("heartbeat", Yard.heartbeat, None),
        ):
            small, large = _interleaved(yards, args.runs, measure, before)
            ratio = large / small
            ok = ok and ratio <= TARGET
            verdict = "ok" if ratio <= TARGET else "OVER TARGET"
            print(
                f"ratio {label} {args.jobs[1]}/{args.jobs[0]} queued: {ratio:.2f}x "
                f"({large * 1000:.2f} ms against {small * 1000:.2f} ms, median of {args.runs}; target: at most {TARGET:g}x) {verdict}"
            )
        # What the old pass and heartbeat read each time: every queued job, every running job.
        for yard in yards:
            started = time.perf_counter()
            yard.store.list_jobs(state=JobState.QUEUED)
            print(
                f"for comparison, reading all {yard.jobs} queued jobs (what a pass did before): {(time.perf_counter() - started) * 1000:.1f} ms"
            )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
