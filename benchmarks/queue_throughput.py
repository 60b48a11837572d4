"""Target 2: twelve jobs through ``trainyard run -c 2`` against the same twelve plain trainings in a row.

The twelve jobs are the article's four architectures x 3 seeds on California housing, with enough
epochs that the plain script takes at least 5 s per training. The baseline is a fresh Python process
that trains them one after another with the article's own ``model.compile(...); model.fit(...)``
(``training_throughput.run_plain``); trainyard's side is ``trainyard run SPEC... -c 2`` in a fresh
``TRAINYARD_HOME`` (embedded broker, SQLite store, a background worker with two training
processes), from the command's start to its exit, every job ``succeeded``. Both wall times include
starting Python and importing TensorFlow. Target: trainyard / plain at most 0.6 on a 2-core machine.

    python benchmarks/queue_throughput.py                    # 3 repeats, alternating
    python benchmarks/queue_throughput.py --repeats 1 --epochs 6
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import machine  # noqa: E402

TARGET = 0.6
MIN_PLAIN_SECONDS = 5.0


def plain(paths: list[str]) -> int:
    """The baseline process: each spec trained by the article's script, one after another."""
    from training_throughput import run_plain

    from trainyard.specs import load_data, load_spec

    for path in paths:
        spec = load_spec(path)
        seconds, val = run_plain(spec, load_data(spec))
        print(f"plain {spec.name} {seconds:.2f} s val_mse {val}", flush=True)
    return 0


def run_plain_process(paths: list[Path]) -> tuple[float, list[float]]:
    """Wall seconds of the baseline process, and the seconds of each of its trainings."""
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, __file__, "--plain", *map(str, paths)], capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - started
    if out.returncode != 0:
        raise SystemExit(f"the plain script failed:\n{out.stdout}\n{out.stderr[-3000:]}")
    each = [float(line.split()[2]) for line in out.stdout.splitlines() if line.startswith("plain ")]
    return wall, each


def run_trainyard(paths: list[Path], concurrency: int, home: Path) -> float:
    """Wall seconds of ``trainyard run SPEC... -c N`` in a fresh home; every job must succeed."""
    env = {
        **os.environ,
        "TRAINYARD_HOME": str(home),
        "COLUMNS": "120",
        "TRAINYARD_DATA_ROOTS": str(machine.CALIFORNIA.parent),
    }
    for key in ("TRAINYARD_DB_URL", "TRAINYARD_BROKER_URL", "TRAINYARD_ARTIFACT_ROOT"):
        env.pop(key, None)
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "trainyard", "run", *map(str, paths), "-c", str(concurrency)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    wall = time.perf_counter() - started
    if out.returncode != 0 or out.stdout.count("succeeded") != len(paths):
        raise SystemExit(f"trainyard run failed (exit {out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10, help="epochs of every job (plain must take >= 5 s each)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("-c", "--concurrency", type=int, default=2, help="training processes of trainyard run's worker")
    parser.add_argument("--plain", nargs="+", metavar="SPEC", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.plain:
        return plain(args.plain)

    print(machine.describe())
    with tempfile.TemporaryDirectory(prefix="trainyard-bench-") as folder:
        documents = machine.california_documents(args.epochs, seeds=args.seeds)
        paths = machine.write_specs(documents, Path(folder) / "specs")
        print(
            f"# {len(paths)} jobs ({len(machine.ARCHITECTURES)} architectures x seeds {args.seeds}) on California "
            f"housing, {args.epochs} epochs, batch 32; median of {args.repeats} runs, alternating"
        )
        plain_walls, ours_walls, shortest = [], [], []
        for repeat in range(args.repeats):
            wall, each = run_plain_process(paths)
            plain_walls.append(wall)
            shortest.append(min(each))
            ours = run_trainyard(paths, args.concurrency, Path(folder) / f"home-{repeat}")
            ours_walls.append(ours)
            print(
                f"run {repeat + 1}: plain {wall:6.1f} s (shortest training {min(each):.1f} s)   "
                f"trainyard run -c {args.concurrency} {ours:6.1f} s   ratio {ours / wall:.3f}",
                flush=True,
            )
    plain_s, ours_s = machine.median(plain_walls), machine.median(ours_walls)
    ratio = ours_s / plain_s
    print(f"plain, one after another: {plain_s:.1f} s   trainyard run -c {args.concurrency}: {ours_s:.1f} s")
    if machine.median(shortest) < MIN_PLAIN_SECONDS:
        print(
            f"# note: the shortest plain training took {machine.median(shortest):.1f} s (< {MIN_PLAIN_SECONDS:g} s): raise --epochs"
        )
    verdict = "ok" if ratio <= TARGET else "OVER TARGET"
    print(f"# wall-time ratio trainyard/plain: {ratio:.3f} (target <= {TARGET}) {verdict}")
    return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
