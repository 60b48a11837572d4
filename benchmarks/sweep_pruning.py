"""Target 8a: ASHA pruning against the same random sweep unpruned: epochs run and best objective.

A random sweep of ``--trials`` trials (at least 27) of the article's multi-output model on diabetes,
over the SGD learning rate and the first hidden layer's width, ``--epochs`` epochs each, run twice
with the same sampler seed (so the same trials): once with ``prune: {method: asha, min_epochs: 3,
reduction_factor: 3}``, once without. Trials are trained by the worker's own runner in this process
(``sweeping.py``): every epoch is stored and the pruner is asked after each, as on a worker.

Targets: the pruned sweep runs at most half the epochs of the unpruned one, and its best objective
(weighted validation MSE) is within 5% of the unpruned sweep's best.

    python benchmarks/sweep_pruning.py --trials 27 --epochs 27
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import machine
from sweeping import article_spec, run_sweep

EPOCHS_TARGET = 0.5
BEST_TARGET = 0.05

SWEEP = """\
name: {name}
spec: spec.yaml
method: random
trials: {trials}
parallel: 1
seed: {seed}
objective: {{metric: mse, outputs: {{output_1: 0.9, output_2: 0.1}}}}
parameters:
  training.optimizer.learning_rate: {{log_uniform: [0.0001, 0.005]}}
  layers[0].units: {{choice: [3, 5, 8, 16]}}
prune: {prune}
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=27)
    parser.add_argument("--epochs", type=int, default=27)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    print(machine.describe(), flush=True)
    spec = article_spec(args.epochs)
    results = {}
    with tempfile.TemporaryDirectory(prefix="trainyard-bench-prune-") as tmp:
        for name, prune in (("unpruned", "none"), ("asha", "{method: asha, min_epochs: 3, reduction_factor: 3}")):
            text = SWEEP.format(name=name, trials=args.trials, seed=args.seed, prune=prune)
            document = run_sweep(Path(tmp) / name, text, spec, name)
            results[name] = document
            best = document["best"]
            print(
                f"{name:<9} {len(document['trials'])} trials, {document['counts']['pruned']} pruned, "
                f"{document['epochs_run']} epochs run, best objective {best['objective']:.1f} (trial {best['job']}: {best['params']})",
                flush=True,
            )
    unpruned, asha = results["unpruned"], results["asha"]
    same = [t["params"] for t in sorted(unpruned["trials"], key=lambda t: t["trial"])] == [
        t["params"] for t in sorted(asha["trials"], key=lambda t: t["trial"])
    ]
    epochs = asha["epochs_run"] / unpruned["epochs_run"]
    gap = asha["best"]["objective"] / unpruned["best"]["objective"] - 1
    print(f"same trials in both sweeps: {same}")
    print(
        f"ratio (epochs run, asha / unpruned): {epochs:.2f} ({asha['epochs_run']} against {unpruned['epochs_run']}); "
        f"target <= {EPOCHS_TARGET}"
    )
    print(
        f"ratio (best objective, asha / unpruned): {1 + gap:.4f} ({asha['best']['objective']:.1f} against "
        f"{unpruned['best']['objective']:.1f}); target within {BEST_TARGET:.0%}"
    )
    return 0 if same and epochs <= EPOCHS_TARGET and abs(gap) <= BEST_TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
