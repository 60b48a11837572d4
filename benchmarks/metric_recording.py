"""Target 4: training with the store recording every epoch, against training with recording off.

Recording on is exactly what a worker's pool child does: the job is claimed in a real store (a
SQLite file by default), a :class:`~trainyard.worker.lease.Lease` renews it in its thread, and
:class:`~trainyard.worker.runner.StoreSink` writes every epoch with ``Store.record_epoch`` (one
write transaction each). Recording off is ``trainyard.training.train(spec, sink=None)``. Both run
in this one process, alternating, ``--repeats`` times; only the ``train`` call is timed. Target:
the median with recording is at most 1.05x the median without.

    python benchmarks/metric_recording.py                  # multi_output on diabetes (100 short epochs)
    python benchmarks/metric_recording.py --california     # also on California housing
    python benchmarks/metric_recording.py --db-url postgresql+psycopg://postgres@127.0.0.1/some_empty_db
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import machine

TARGET = 1.05


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=None, help="override the diabetes spec's 100 epochs")
    parser.add_argument("--california", action="store_true", help="also on California housing (10 epochs)")
    parser.add_argument("--db-url", default=None, help="an empty store (default: a SQLite file in a temporary folder)")
    args = parser.parse_args(argv)

    from trainyard.db import JobState, Store
    from trainyard.specs import load_data, load_spec
    from trainyard.training import train
    from trainyard.worker.lease import Lease
    from trainyard.worker.runner import StoreSink

    overrides = [f"training.epochs={args.epochs}"] if args.epochs else []
    cases = [("diabetes", load_spec(machine.SPECS / "multi_output.yaml", overrides=overrides))]
    if args.california:
        cases.append(("california", load_spec(machine.california_documents(10, archs=("multi_output",))[0])))

    print(machine.describe())
    print(f"# median of {args.repeats} runs each, alternating, one process; store recording = the worker's StoreSink")
    worst = 0.0
    with tempfile.TemporaryDirectory(prefix="trainyard-bench-") as folder:
        store = Store.open(args.db_url or f"sqlite:///{Path(folder) / 'store.sqlite'}")
        print(f"# store: {store.dialect}")
        print(
            f"{'data':<11} {'spec':<13} {'epochs':>6} {'off s':>7} {'recording s':>11} {'ratio':>6}  per epoch recorded"
        )
        for dataset, spec in cases:
            data = load_data(spec)
            model = Path(folder) / "model.keras"
            train(spec, model_path=model, data=data)  # warm-up: graph tracing caches, page cache
            off, on = [], []
            for _ in range(args.repeats):
                started = time.perf_counter()
                train(spec, None, model_path=model, data=data)
                off.append(time.perf_counter() - started)

                (job,) = store.add_jobs([spec.document()])
                owner = f"bench/{os.getpid()}"
                claimed = store.claim_next(owner)
                assert claimed is not None and claimed.id == job.id
                lease = Lease(store, job.id, owner, 60.0, 5.0).start()
                sink = StoreSink(store, job.id, owner, lease)
                started = time.perf_counter()
                train(spec, sink, model_path=model, data=data)
                on.append(time.perf_counter() - started)
                lease.stop()
                store.finish(job.id, owner, JobState.SUCCEEDED)
                if len(store.epochs(job.id)) != spec.training.epochs:
                    raise SystemExit(
                        f"job {job.id}: {len(store.epochs(job.id))} epochs recorded, expected {spec.training.epochs}"
                    )
            base, rec = machine.median(off), machine.median(on)
            ratio = rec / base
            worst = max(worst, ratio)
            extra_ms = (rec - base) / spec.training.epochs * 1000
            print(
                f"{dataset:<11} {spec.name:<13} {spec.training.epochs:>6} {base:>7.3f} {rec:>11.3f} {ratio:>6.3f}  {extra_ms:+.2f} ms"
            )
    verdict = "ok" if worst <= TARGET else "OVER TARGET"
    print(f"# worst ratio: {worst:.3f} (target <= {TARGET}) {verdict}")
    return 0 if worst <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
