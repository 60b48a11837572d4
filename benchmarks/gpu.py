"""Target 7: the multi-output model at a large batch size on one device and on all of them (MirroredStrategy).

trainyard's training core (``trainyard.training.train``) trains the article's multi-output model
(``specs/multi_output.yaml``) on synthetic data of the same shape (4 wide and 8 deep features, two
outputs; seeded, so every run sees the same rows), first on one device (``OneDeviceStrategy``:
the core's single-replica path, with ``steps_per_execution``), then on every visible GPU with
``MirroredStrategy`` and the same batch per device (so a step of N replicas sees N times the rows).
Samples per second are taken over the epochs after the first (the first one traces the graphs);
the scaling ratio is all-devices / one-device samples per second. It runs in well under 5 minutes.

    python benchmarks/gpu.py                          # a GPU host: GPU 0, then all visible GPUs
    python benchmarks/gpu.py --logical-cpus 2         # no GPU: the CPU split into 2 logical devices
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
import numpy as np

from trainyard.training import BaseSink


def synthetic(rows: int, seed: int = 0):
    """Rows shaped like the multi-output spec's inputs, with a learnable target (float32)."""
    from trainyard.specs import Dataset, Split

    rng = np.random.default_rng(seed)

    def split(n: int) -> Split:
        wide = rng.standard_normal((n, 4), dtype=np.float32)
        deep = rng.standard_normal((n, 8), dtype=np.float32)
        target = (wide @ np.linspace(0.5, -0.5, 4) + np.tanh(deep @ np.linspace(-1, 1, 8))).astype(np.float32)
        target += 0.1 * rng.standard_normal(n, dtype=np.float32)
        y = target.reshape(-1, 1)
        return Split(x={"wide": wide, "deep": deep}, y={"output_1": y, "output_2": y})

    return Dataset(train=split(rows), valid=split(max(1, rows // 10)), test=None)


class EpochClock(BaseSink):
    """A training sink noting when each epoch ended."""

    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_epoch(self, _metrics) -> None:
        self.ends.append(time.perf_counter())


def samples_per_second(spec, data, strategy, folder: Path) -> tuple[float, float]:
    """(samples/s over epochs 2..E, final val MSE of output_1) of one training under ``strategy``."""
    from trainyard.training import train

    clock = EpochClock()
    result = train(spec, clock, model_path=folder / "model.keras", strategy=strategy, data=data)
    if len(clock.ends) < 2:
        raise SystemExit("--epochs must be at least 2 (the first epoch traces the graphs and is not timed)")
    seconds = clock.ends[-1] - clock.ends[0]
    return len(data.train) * (len(clock.ends) - 1) / seconds, result.val_mse["output_1"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=4096, help="rows per device per step")
    parser.add_argument("--rows", type=int, default=1_000_000, help="training rows (synthetic)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs; the first is not timed")
    parser.add_argument(
        "--logical-cpus",
        type=int,
        default=0,
        metavar="N",
        help="no GPU: split the CPU into N logical devices and use them as the 'GPUs'",
    )
    args = parser.parse_args(argv)

    import tensorflow as tf

    if args.logical_cpus > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * args.logical_cpus)
        devices = [d.name for d in tf.config.list_logical_devices("CPU")]
        kind = f"{len(devices)} logical CPU devices (no GPU used)"
    else:
        gpus = tf.config.list_physical_devices("GPU")
        if not gpus:
            print(
                "no GPU visible: run on a GPU host, or with --logical-cpus 2 to check the script on a CPU",
                file=sys.stderr,
            )
            return 2
        for gpu in gpus:
            tf.config.experimental.set_memory_growth(gpu, True)
        devices = [d.name for d in tf.config.list_logical_devices("GPU")]
        names = [tf.config.experimental.get_device_details(g).get("device_name", "GPU") for g in gpus]
        kind = f"{len(devices)} GPU(s): {', '.join(names)}"

    from trainyard.specs import load_spec

    print(machine.describe())
    print(f"# tensorflow {tf.__version__}; {kind}")
    data = synthetic(args.rows)
    results = {}
    with tempfile.TemporaryDirectory(prefix="trainyard-bench-") as folder:
        # On a one-GPU host the second run is MirroredStrategy with one replica: its cost shows.
        for label, chosen, mirrored in (("1 device", devices[:1], False), (f"{len(devices)} devices", devices, True)):
            batch = args.batch_size * len(chosen)
            spec = load_spec(
                machine.SPECS / "multi_output.yaml",
                overrides=[f"training.batch_size={batch}", f"training.epochs={args.epochs}"],
            )
            if mirrored:
                strategy = tf.distribute.MirroredStrategy(chosen)
                how = f"MirroredStrategy({len(chosen)} replica{'s' if len(chosen) > 1 else ''})"
            else:
                strategy = tf.distribute.OneDeviceStrategy(chosen[0])
                how = f"OneDeviceStrategy({chosen[0]})"
            started = time.perf_counter()
            sps, val = samples_per_second(spec, data, strategy, Path(folder))
            results[label] = sps
            print(
                f"{label:<10} {how:<45} global batch {batch:>7}  {sps:>12,.0f} samples/s  "
                f"val MSE {val:.4f}  ({time.perf_counter() - started:.1f} s)",
                flush=True,
            )
    one, every = results["1 device"], results[f"{len(devices)} devices"]
    print(
        f"# scaling ratio ({len(devices)} devices / 1 device, samples/s): {every / one:.2f} "
        f"(ideal {len(devices)}.00){'' if len(devices) > 1 else ': only one device visible'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
