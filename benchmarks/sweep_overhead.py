"""Target 8b: the cost of the queue around a sweep: ``trainyard run sweep.yaml`` against Optuna's own loop.

Both sides run a 24-trial random sweep (Optuna's ``RandomSampler``, the same seed) of the article's
multi-output model on diabetes over the SGD learning rate, one trial at a time, each a fresh
process timed from its start to its exit:

* baseline: ``optuna.create_study(...).optimize(objective, n_trials=24)`` in one process, the
  objective calling trainyard's training core (``trainyard.training.train``) on the spec with the
  trial's learning rate and returning the weighted validation MSE;
* trainyard: ``trainyard run sweep.yaml`` (``parallel: 1``, ``-c 1``): the sweep checked and
  stored, its trials queued one by one as jobs, trained by a local worker (TensorFlow imported in
  its own process, every epoch written to the store, each trial's end asking for the next).

The two alternate, ``--repeats`` times; the figure is the ratio of the medians. Target: <= 1.15.

    python benchmarks/sweep_overhead.py --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import machine
from sweeping import article_spec

TARGET = 1.15

SWEEP = """\
name: overhead
spec: spec.yaml
method: random
trials: {trials}
parallel: 1
seed: 0
objective: {{metric: mse, outputs: {{output_1: 0.9, output_2: 0.1}}}}
parameters:
  training.optimizer.learning_rate: {{log_uniform: [0.0001, 0.005]}}
"""

BASELINE = """\
import sys, time
import optuna
from trainyard.specs import load_spec
from trainyard.training import train

optuna.logging.set_verbosity(optuna.logging.WARNING)
folder, trials = sys.argv[1], int(sys.argv[2])

def objective(trial):
    lr = trial.suggest_float("training.optimizer.learning_rate", 0.0001, 0.005, log=True)
    spec = load_spec(folder + "/spec.yaml", overrides=[f"training.optimizer.learning_rate={lr}"])
    result = train(spec, model_path=f"{folder}/trial-{trial.number}.keras")
    return 0.9 * result.val_mse["output_1"] + 0.1 * result.val_mse["output_2"]

study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
study.optimize(objective, n_trials=trials)
print("best", study.best_value)
"""


def timed(command: list[str], env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{command[:3]} failed ({done.returncode}):\n{done.stdout[-3000:]}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=100)
    args = parser.parse_args(argv)
    print(machine.describe(), flush=True)
    spec = article_spec(args.epochs)
    trainyard = str(Path(sys.executable).with_name("trainyard"))
    optuna_runs: list[float] = []
    queue_runs: list[float] = []
    with tempfile.TemporaryDirectory(prefix="trainyard-bench-sweep-") as tmp:
        for repeat in range(args.repeats):
            folder = Path(tmp) / f"run{repeat}"
            folder.mkdir()
            (folder / "spec.yaml").write_text(spec)
            (folder / "sweep.yaml").write_text(SWEEP.format(trials=args.trials))
            (folder / "baseline.py").write_text(textwrap.dedent(BASELINE))
            env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINYARD_")}
            env.update(TF_CPP_MIN_LOG_LEVEL="3", TRAINYARD_HOME=str(folder / "home"))
            runs = [
                ("optuna", [sys.executable, str(folder / "baseline.py"), str(folder), str(args.trials)], optuna_runs),
                ("trainyard run", [trainyard, "run", "sweep.yaml", "-c", "1"], queue_runs),
            ]
            for name, command, into in runs if repeat % 2 == 0 else runs[::-1]:
                seconds = timed(command, env, folder)
                into.append(seconds)
                print(f"run {repeat + 1}: {name:<14} {seconds:6.1f} s  (load {os.getloadavg()[0]:.1f})", flush=True)
    base, queued = statistics.median(optuna_runs), statistics.median(queue_runs)
    ratio = queued / base
    print(
        f"ratio (trainyard run / optuna study.optimize, {args.trials} trials of {args.epochs} epochs): "
        f"{ratio:.2f} ({queued:.1f} s against {base:.1f} s, medians of {args.repeats}); target <= {TARGET}"
    )
    return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
