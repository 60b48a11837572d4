"""Run every benchmark of ``benchmarks/`` one after another and print a summary of the targets.

Each benchmark is a separate Python process (so one's imports, caches and memory do not skew the
next), run with ``TF_CPP_MIN_LOG_LEVEL=3``; its output is shown as it comes, and the summary at the
end repeats the line of each that states the figure against its target. A benchmark exits 1 when
it missed its target and with another status when it failed to run. Exit status: 0 when every
target was met (with ``--quick``: when every benchmark ran; its short runs are no figures, the
fixed costs of starting workers dominate them), 1 otherwise.

    .venv/bin/python benchmarks/run_all.py            # the figures of benchmarks/README.md (about 30 minutes on 2 cores)
    .venv/bin/python benchmarks/run_all.py --quick    # one run each, short trainings (about 8 minutes): a smoke test
    .venv/bin/python benchmarks/run_all.py --only training_throughput queue_throughput
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import machine  # noqa: E402

#: (target, script, full arguments, --quick arguments)
BENCHMARKS: list[tuple[str, str, list[str], list[str]]] = [
    (
        "1 training throughput",
        "training_throughput",
        ["--repeats", "3", "--california"],
        ["--repeats", "1", "--epochs", "20"],
    ),
    ("2 queue throughput", "queue_throughput", ["--repeats", "3"], ["--repeats", "1", "--seeds", "1", "--epochs", "3"]),
    ("3 per-job overhead", "job_overhead", ["--jobs", "20"], ["--jobs", "5"]),
    ("4 metric recording", "metric_recording", ["--repeats", "7", "--california"], ["--repeats", "3"]),
    ("5 store: trainyard jobs", "store_jobs", [], ["--runs", "5", "--submit", "400"]),
    ("5 store: dashboard frame", "dashboard_frame", [], ["--runs", "5"]),
    ("5 store: reconcile pass", "reconcile_pass", [], ["--jobs", "100", "2000", "--runs", "5"]),
    ("5e results: compare, export, delete", "results_commands", [], ["--runs", "1", "--epochs", "10"]),
    ("6 memory", "worker_memory", ["--repeats", "3"], ["--repeats", "1", "--no-california"]),
    (
        "8 raw table training",
        "raw_table_training",
        ["--repeats", "3", "--epochs", "50"],
        ["--repeats", "1", "--epochs", "3"],
    ),
    ("9 predict 1M rows", "predict_throughput", ["--repeats", "3"], ["--repeats", "1", "--rows", "50000"]),
    (
        "7 GPU scaling (CPU check)",
        "gpu",
        ["--logical-cpus", "2", "--rows", "200000", "--batch-size", "1024"],
        ["--logical-cpus", "2", "--rows", "50000", "--batch-size", "1024", "--epochs", "3"],
    ),
    (
        "10a sweep: ASHA pruning",
        "sweep_pruning",
        ["--trials", "27", "--epochs", "27"],
        ["--trials", "6", "--epochs", "9"],
    ),
    (
        "10b sweep: queue overhead",
        "sweep_overhead",
        ["--repeats", "3"],
        ["--repeats", "1", "--trials", "4", "--epochs", "20"],
    ),
    ("10c sweep: TPE vs random", "sweep_tpe", [], ["--trials", "6", "--seeds", "1", "--epochs", "5"]),
]


def summary_lines(output: str) -> list[str]:
    """The lines of a benchmark's output that state its figure against the target."""
    keys = ("target", "ratio (", "jobs/s", "aim", "scaling ratio")
    return [
        line
        for line in output.splitlines()
        if line.startswith(("#", "submit", "Store.add_jobs", "worst", "ratio")) and any(k in line for k in keys)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one run each, short trainings: checks that all run")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="only these scripts (names without .py)")
    args = parser.parse_args(argv)

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
    print(machine.describe(), flush=True)
    results: list[tuple[str, int, float, list[str]]] = []
    for target, script, full, quick in BENCHMARKS:
        if args.only and script not in args.only:
            continue
        command = [sys.executable, str(HERE / f"{script}.py"), *(quick if args.quick else full)]
        print(
            f"\n=== target {target}: {' '.join(Path(c).name if c.endswith('.py') else c for c in command[1:])}",
            flush=True,
        )
        started = time.perf_counter()
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=machine.REPO
        )
        lines = []
        assert process.stdout is not None
        for line in process.stdout:
            if "absl::InitializeLog" in line or line.startswith(("I0000", "E0000", "W0000")):
                continue  # TensorFlow's start-up chatter
            lines.append(line)
            print(line, end="", flush=True)
        status = process.wait()
        results.append((target, status, time.perf_counter() - started, summary_lines("".join(lines))))

    print(
        "\n=== summary"
        + (" (--quick: short runs, a smoke test; not the figures of benchmarks/README.md)" if args.quick else "")
    )
    for target, status, seconds, lines in results:
        if status == 0:
            verdict = "ok"
        elif status == 1:
            verdict = "ran" if args.quick else "MISSED"
        else:
            verdict = f"FAILED (exit {status})"
        print(f"target {target:<28} {verdict:<18} ({seconds:.0f} s)")
        for line in lines:
            print(f"    {line.strip()}")
    allowed = (0, 1) if args.quick else (0,)
    return 0 if all(status in allowed for _t, status, _s, _l in results) else 1


if __name__ == "__main__":
    sys.exit(main())
