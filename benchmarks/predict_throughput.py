"""Target 9: ``trainyard predict`` of 1 million raw rows, CSV in and out, against the plain script.

A model is trained on California housing as it is (``raw_table_training.raw_document``, one epoch),
then 1,000,000 rows are drawn from the table (with replacement; a few with a category never seen
in training or a missing ``total_bedrooms``) into a CSV. Each side runs in a fresh process, timed
from start to exit, its peak RSS from ``os.wait4``:

- plain: ``pandas.read_csv`` of the whole file, the model loaded with ``keras.saving.load_model``,
  the inputs built from the columns (strings as ``tf.string``), ``model.predict(x)`` (Keras' default
  batch of 32), ``to_csv``. The same script with ``model.predict(x, batch_size=100_000)`` is a second,
  stricter baseline.
- trainyard: ``trainyard predict MODEL.keras rows.csv --out predictions.csv``.

Targets: trainyard's rows/s at least 0.9x the plain script's; its peak RSS with 1,000,000 rows within
1.25x of its peak with 250,000 rows (memory bounded by the chunk, not the file).

    python benchmarks/predict_throughput.py --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from machine import CALIFORNIA, describe  # noqa: E402

SPEED_TARGET = 0.9
MEMORY_TARGET = 1.25

PLAIN = """
import sys
import numpy as np, pandas as pd, keras, tensorflow as tf
data, model_path, out, batch = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
numbers = {numbers!r}
frame = pd.read_csv(data)
model = keras.saving.load_model(model_path, safe_mode=True)
x = {{
    "numbers": frame[numbers].to_numpy(np.float32),
    "ocean": tf.constant(frame[["ocean_proximity"]].fillna("").astype(str).to_numpy()),
}}
predicted = model.predict(x, verbose=0, **({{"batch_size": batch}} if batch else {{}}))
pd.DataFrame({{"income": predicted["income"][:, 0]}}).to_csv(out, index=False)
"""


def make_rows(n: int, path: Path, seed: int = 1) -> None:
    import pandas as pd

    table = pd.read_csv(CALIFORNIA)
    rng = np.random.default_rng(seed)
    rows = table.iloc[rng.integers(0, len(table), size=n)].reset_index(drop=True)
    rows.loc[rng.random(n) < 0.001, "ocean_proximity"] = "NEW PLACE"
    rows.loc[rng.random(n) < 0.01, "total_bedrooms"] = np.nan
    rows.drop(columns=["median_income"]).to_csv(path, index=False)


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of a fresh process."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _pid, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{' '.join(command[:3])} failed ({code}): {process.stderr.read().decode()[-2000:]}")
    process.stderr.close()
    return elapsed, usage.ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    if not CALIFORNIA.exists():
        print(f"{CALIFORNIA} not found", file=sys.stderr)
        return 2

    from raw_table_training import NUMBERS, raw_document

    from trainyard.specs import load_spec
    from trainyard.training import train

    print(describe())
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    trainyard_cli = [sys.executable, "-m", "trainyard"]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = train(load_spec(raw_document(1)), model_path=folder / "model.keras").model_path
        big, small = folder / "rows.csv", folder / "small.csv"
        make_rows(args.rows, big)
        make_rows(args.rows // 4, small, seed=2)
        plain = folder / "plain.py"
        plain.write_text(PLAIN.format(numbers=NUMBERS))
        print(
            f"# {args.rows:,} rows ({big.stat().st_size / 2**20:.0f} MiB CSV), median of {args.repeats} runs, alternating"
        )
        runs: dict[str, list[tuple[float, float]]] = {"plain": [], "plain, batch 100,000": [], "trainyard": []}
        for _ in range(args.repeats):
            runs["plain"].append(
                timed([sys.executable, str(plain), str(big), str(model), str(folder / "p.csv"), "0"], env)
            )
            runs["plain, batch 100,000"].append(
                timed([sys.executable, str(plain), str(big), str(model), str(folder / "p.csv"), "100000"], env)
            )
            runs["trainyard"].append(
                timed([*trainyard_cli, "predict", str(model), str(big), "--out", str(folder / "t.csv")], env)
            )
        small_peak = statistics.median(
            timed([*trainyard_cli, "predict", str(model), str(small), "--out", str(folder / "s.csv")], env)[1]
            for _ in range(args.repeats)
        )
        import pandas as pd

        ours = pd.read_csv(folder / "t.csv")["income"].to_numpy()
        theirs = pd.read_csv(folder / "p.csv")["income"].to_numpy()
        same = np.allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    rates = {}
    for name, values in runs.items():
        seconds = statistics.median(v[0] for v in values)
        peak = statistics.median(v[1] for v in values)
        rates[name] = args.rows / seconds
        print(f"{name:<22} {seconds:>7.2f} s  {rates[name]:>9.0f} rows/s  peak RSS {peak:>6.0f} MiB")
    big_peak = statistics.median(v[1] for v in runs["trainyard"])
    print(
        f"trainyard on {args.rows // 4:,} rows: peak RSS {small_peak:.0f} MiB; predictions equal the plain script's: {same}"
    )
    ratio = rates["trainyard"] / rates["plain"]
    strict = rates["trainyard"] / rates["plain, batch 100,000"]
    memory = big_peak / small_peak
    met = ratio >= SPEED_TARGET and memory <= MEMORY_TARGET and same
    print(
        f"# ratio (rows/s against the plain script): {ratio:.2f} (target >= {SPEED_TARGET}; against batch 100,000: "
        f"{strict:.2f}), peak RSS {args.rows:,} rows / {args.rows // 4:,} rows: {memory:.2f} (target <= {MEMORY_TARGET})"
        f" {'ok' if met else 'OVER TARGET'}"
    )
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
