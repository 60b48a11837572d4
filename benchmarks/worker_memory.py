"""Target 6: peak RSS of a worker's training process against the plain Keras script, multi-output model.

Plain: a fresh Python process runs the article's script (``training_throughput.run_plain``: import
Keras, build, compile, fit, evaluate) on the spec's arrays; its peak RSS is ``ru_maxrss`` from
``os.wait4``. trainyard: a fresh background worker (``LocalWorker``, one prefork training process,
embedded broker, SQLite store) trains the same spec as a job; the peak RSS of its pool child is its
``VmHWM`` (Linux), read once the job succeeded. The child was forked from the Celery parent, so it
carries Celery, kombu and SQLAlchemy as well as TensorFlow. Target: at most 1.2x.

    python benchmarks/worker_memory.py                 # diabetes and California housing, 3 runs each
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

TARGET = 1.2


def plain_child(spec_path: str) -> int:
    """Inside the baseline process: the article's script on the spec's data."""
    from training_throughput import run_plain

    from trainyard.specs import load_data, load_spec

    spec = load_spec(spec_path)
    run_plain(spec, load_data(spec))
    return 0


def plain_peak(spec_path: Path) -> float:
    """Peak RSS (MiB) of a fresh process running the plain script."""
    process = subprocess.Popen([sys.executable, __file__, "--plain", str(spec_path)], stdout=subprocess.DEVNULL)
    _pid, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"the plain script failed with status {process.returncode}")
    return usage.ru_maxrss / 1024  # KiB on Linux


def vm_hwm(pid: int) -> float:
    """Peak resident set (MiB) of a live process, from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise SystemExit(f"no VmHWM for process {pid}")


def worker_peak(spec_path: Path, folder: Path) -> float:
    """Peak RSS (MiB) of the pool child of a fresh worker that trained ``spec_path`` as a job."""
    import psutil

    from trainyard.config import Settings
    from trainyard.db import JobState, Store
    from trainyard.scheduler import operations
    from trainyard.worker.local import LocalWorker

    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINYARD_")}
    env["TRAINYARD_HOME"] = str(folder)
    env["TRAINYARD_DATA_ROOTS"] = os.pathsep.join([str(machine.CALIFORNIA.parent), str(spec_path.parent)])
    settings = Settings.from_env(env)
    settings.ensure_home()
    store = Store.open(settings.db_url)
    with LocalWorker(
        f"mem-{os.getpid()}@%h", folder / "worker.log", concurrency=1, env=env, loglevel="WARNING"
    ) as worker:
        (job,) = operations.submit([str(spec_path)], settings=settings)
        deadline = time.monotonic() + 600
        while not (record := store.get_job(job.id)).state.is_finished:
            if time.monotonic() > deadline or not worker.alive():
                raise SystemExit(f"job {job.id} did not finish:\n{worker.log_tail()}")
            time.sleep(0.1)
        if record.state is not JobState.SUCCEEDED:
            raise SystemExit(f"job {job.id} {record.state}: {record.error}")
        owner_pid = int(record.lease_owner.rsplit("/", 1)[1]) if record.lease_owner else None
        children = psutil.Process(worker.pid).children()
        pids = [owner_pid] if owner_pid in [c.pid for c in children] else [c.pid for c in children]
        return max(vm_hwm(pid) for pid in pids)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-california", action="store_true", help="only the diabetes spec")
    parser.add_argument("--california-epochs", type=int, default=5)
    parser.add_argument("--plain", metavar="SPEC", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.plain:
        return plain_child(args.plain)

    print(machine.describe())
    print(f"# peak RSS, median of {args.repeats} fresh processes each, alternating")
    print(f"{'data':<11} {'spec':<20} {'plain MiB':>9} {'worker child MiB':>16} {'ratio':>6}")
    worst = 0.0
    with tempfile.TemporaryDirectory(prefix="trainyard-bench-") as folder:
        cases = [("diabetes", machine.SPECS / "multi_output.yaml")]
        if not args.no_california:
            doc = machine.california_documents(args.california_epochs, archs=("multi_output",))[0]
            cases += [("california", machine.write_specs([doc], Path(folder) / "specs")[0])]
        for dataset, path in cases:
            plain, ours = [], []
            for repeat in range(args.repeats):
                plain.append(plain_peak(path))
                ours.append(worker_peak(path, Path(folder) / f"home-{dataset}-{repeat}"))
            p, o = machine.median(plain), machine.median(ours)
            worst = max(worst, o / p)
            print(f"{dataset:<11} {path.stem:<20} {p:>9.0f} {o:>16.0f} {o / p:>6.2f}", flush=True)
    verdict = "ok" if worst <= TARGET else "OVER TARGET"
    print(f"# worst ratio: {worst:.2f} (target <= {TARGET}) {verdict}")
    return 0 if worst <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
