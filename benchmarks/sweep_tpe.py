"""Target 8c: TPE's best objective after 30 trials against random search's, median of 3 seeds.

For each seed, a 30-trial sweep of the article's multi-output model on diabetes (``--epochs``
epochs) over the SGD learning rate, the widths of the first two hidden layers and the batch size,
once with ``method: tpe`` and once with ``method: random`` (the same seed), one trial at a time,
trained by the worker's own runner in this process (``sweeping.py``). The figure: the median over
the seeds of each method's best objective (weighted validation MSE). Target: TPE's median <= random's.

    python benchmarks/sweep_tpe.py --trials 30 --seeds 1 2 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import machine
from sweeping import article_spec, run_sweep

SWEEP = """\
name: {name}
spec: spec.yaml
method: {method}
trials: {trials}
parallel: 1
seed: {seed}
objective: {{metric: mse, outputs: {{output_1: 0.9, output_2: 0.1}}}}
parameters:
  training.optimizer.learning_rate: {{log_uniform: [0.00001, 0.01]}}
  layers[0].units: {{int_uniform: [2, 32]}}
  layers[1].units: {{int_uniform: [2, 32]}}
  training.batch_size: {{choice: [8, 16, 32, 64]}}
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args(argv)
    print(machine.describe(), flush=True)
    spec = article_spec(args.epochs)
    best: dict[str, list[float]] = {"tpe": [], "random": []}
    with tempfile.TemporaryDirectory(prefix="trainyard-bench-tpe-") as tmp:
        for seed in args.seeds:
            for method in ("tpe", "random"):
                name = f"{method}_{seed}"
                text = SWEEP.format(name=name, method=method, trials=args.trials, seed=seed)
                document = run_sweep(Path(tmp) / name, text, spec, name)
                value = document["best"]["objective"]
                best[method].append(value)
                print(f"seed {seed}: {method:<6} best objective after {args.trials} trials {value:.1f}", flush=True)
    tpe, random = statistics.median(best["tpe"]), statistics.median(best["random"])
    print(
        f"ratio (TPE best / random best, medians of {len(args.seeds)} seeds): {tpe / random:.3f} "
        f"({tpe:.1f} against {random:.1f}); target <= 1"
    )
    return 0 if tpe <= random else 1


if __name__ == "__main__":
    sys.exit(main())
