"""The stored epochs of jobs, in the tools people already use: TensorBoard event files and a tidy CSV.

Both stream the epochs from the store (:meth:`Store.epochs_of`) and write as they read, so an
export of many jobs holds a few hundred epochs in memory at a time. Neither imports TensorFlow: the
event files are written with TensorBoard's own writer and protocol buffers.

**TensorBoard** (``export --tensorboard DIR``): one run folder per job, ``DIR/<id>-<name>``, with one
scalar per epoch (step = epoch, wall time = when it was recorded) for the model's ``loss`` and
``val_loss`` and, per output, ``<output>/loss`` (its training loss) and ``<output>/val_<metric>`` for
every validation metric stored; and the HParams plugin's records: the experiment in ``DIR`` (the spec
fields that differ between the exported jobs, or the training settings when none differ, and every
scalar as a metric), each job's values of those fields in its run. Exporting a job again replaces
its run's event files.

**CSV** (``export --csv FILE``): one row per value, ``job,epoch,output,metric,value``: per output
``loss`` and ``val_<metric>``, and the whole model's ``loss`` and ``val_loss`` with an empty
``output``. A value that was not finite is empty.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from trainyard.db import EpochRecord, JobRecord, Store
from trainyard.db.records import metrics_of
from trainyard.errors import TrainyardError
from trainyard.metrics import finite
from trainyard.results.compare import compare, flatten

CSV_HEADER = ("job", "epoch", "output", "metric", "value")


def epoch_values(epoch: EpochRecord) -> Iterator[tuple[str, str, float | None]]:
    """``(output, metric, value)`` of one stored epoch: the model's ``loss``/``val_loss`` (output ``""``),
    then per output its ``loss`` and each ``val_<metric>``."""
    yield "", "loss", epoch.loss
    yield "", "val_loss", epoch.val_loss
    for output, values in epoch.outputs.items():
        if "loss" in values:
            yield output, "loss", finite(values.get("loss"))
        for metric, value in metrics_of(values).items():
            yield output, f"val_{metric}", finite(value)


def write_csv(store: Store, jobs: Sequence[JobRecord], out: str | os.PathLike[str]) -> int:
    """Write every stored epoch of ``jobs`` to ``out`` (``-``: stdout) as a tidy CSV; returns the rows
    written. A file is written beside its place and renamed over it at the end (all or nothing)."""
    if str(out) == "-":
        return _write_rows(store, jobs, sys.stdout)
    target = Path(out)
    if target.is_dir():
        raise TrainyardError(f"--csv {target}: is a folder; name a file")
    partial = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with open(partial, "w", newline="", encoding="utf-8") as handle:
            rows = _write_rows(store, jobs, handle)
        os.replace(partial, target)
    except OSError as exc:
        _unlink(partial)
        raise TrainyardError(f"--csv {target}: cannot write it: {exc.strerror or exc}") from exc
    except BaseException:
        _unlink(partial)
        raise
    return rows


def _write_rows(store: Store, jobs: Sequence[JobRecord], handle: io.TextIOBase | Any) -> int:
    writer = csv.writer(handle, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    count = 0
    for epoch in store.epochs_of([job.id for job in jobs]):
        rows = [
            (epoch.job_id, epoch.epoch, output, metric, "" if value is None else repr(float(value)))
            for output, metric, value in epoch_values(epoch)
        ]
        writer.writerows(rows)
        count += len(rows)
    return count


def run_name(job: JobRecord) -> str:
    """The run folder of a job in a TensorBoard export: ``<id>-<name>``."""
    return f"{job.id}-{re.sub(r'[^A-Za-z0-9_.-]', '_', job.name)}"


def write_tensorboard(store: Store, jobs: Sequence[JobRecord], out: str | os.PathLike[str]) -> list[Path]:
    """Write TensorBoard event files for ``jobs`` (records with their specs) under ``out``; returns
    the run folders written, one per job."""
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.plugins.hparams import summary_v2 as hp

    EventFileWriter = _EventFile

    root = Path(out)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TrainyardError(f"--tensorboard {root}: cannot create the folder: {exc.strerror or exc}") from exc
    by_id = {job.id: job for job in jobs}
    hparams = _hparams(jobs)
    runs: dict[int, Path] = {}
    writers: dict[int, Any] = {}
    tags: dict[str, None] = {}

    def writer_for(job: JobRecord) -> Any:
        found = writers.get(job.id)
        if found is None:
            folder = root / run_name(job)
            folder.mkdir(parents=True, exist_ok=True)
            for old in folder.glob("events.out.tfevents.*"):
                old.unlink()
            found = writers[job.id] = EventFileWriter(str(folder))
            runs[job.id] = folder
            values = hparams.get(job.id)
            if values:
                start = job.started_at or job.created_at
                session = hp.hparams_pb(values, trial_id=run_name(job), start_time_secs=start.timestamp())
                found.add_event(event_pb2.Event(wall_time=start.timestamp(), summary=session))
        return found

    try:
        current: int | None = None
        for epoch in store.epochs_of(list(by_id)):
            if current is not None and current != epoch.job_id:
                writers.pop(current).close()  # one open file at a time, whatever the number of jobs
            current = epoch.job_id
            writer = writer_for(by_id[epoch.job_id])
            summary = summary_pb2.Summary()
            for output, metric, value in epoch_values(epoch):
                if value is None:
                    continue
                tag = f"{output}/{metric}" if output else metric
                tags[tag] = None
                summary.value.add(tag=tag, simple_value=float(value))
            writer.add_event(
                event_pb2.Event(wall_time=epoch.recorded_at.timestamp(), step=epoch.epoch, summary=summary)
            )
        for job in jobs:  # jobs without epochs still get their run (and hyperparameters)
            if job.id not in runs:
                writer_for(job)
        for job_id in list(writers):
            writers.pop(job_id).close()
        if hparams:
            names = sorted({name for values in hparams.values() for name in values})
            config = hp.hparams_config_pb(
                hparams=[hp.HParam(name) for name in names], metrics=[hp.Metric(tag) for tag in tags]
            )
            for old in root.glob("events.out.tfevents.*"):
                old.unlink()
            experiment = EventFileWriter(str(root))
            experiment.add_event(event_pb2.Event(summary=config))
            experiment.close()
    except OSError as exc:
        raise TrainyardError(f"--tensorboard {root}: cannot write the event files: {exc.strerror or exc}") from exc
    finally:
        for writer in writers.values():
            writer.close()
    return [runs[job.id] for job in jobs]


class _EventFile:
    """One TensorBoard event file in ``folder``, written with TensorBoard's record format and protos.

    TensorBoard's own ``EventFileWriter`` opens files through ``tf.io.gfile``, which imports all of
    TensorFlow when it is installed (seconds, for a few kilobytes of output); this writes the same
    records (``brain.Event:2`` first) to a local file with plain ``open``.
    """

    _count = 0

    def __init__(self, folder: str) -> None:
        import socket
        import time

        from tensorboard.compat.proto import event_pb2
        from tensorboard.summary.writer.record_writer import RecordWriter

        _EventFile._count += 1
        name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}.{_EventFile._count}"
        self._records = RecordWriter(open(Path(folder) / name, "wb"))  # noqa: SIM115 (closed by close())
        self.add_event(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))

    def add_event(self, event: Any) -> None:
        self._records.write(event.SerializeToString())

    def close(self) -> None:
        if not self._records.closed:
            self._records.close()


def _hparams(jobs: Sequence[JobRecord]) -> dict[int, dict[str, Any]]:
    """Per job, the hyperparameters the HParams plugin shows: the fields that differ between the jobs
    (all of ``training`` when none do), as plain values (lists and mappings as text)."""
    paths = compare(jobs).fields if len(jobs) > 1 else []
    found: dict[int, dict[str, Any]] = {}
    for job in jobs:
        flat = flatten(job.spec_document or {})
        chosen = paths or [path for path in flat if path.startswith("training.")]
        found[job.id] = {path: _plain(flat[path]) for path in chosen if path in flat}
    return found


def _plain(value: Any) -> Any:
    if isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    return str(value)


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass
