"""Training one claimed job inside a pool child: the body of the ``trainyard.train_next`` task.

Plain functions over a :class:`~trainyard.db.Store` and :class:`~trainyard.config.Settings`, so
they run (and are tested) without Celery too. The life of a job here:

1. claim the best queued job with a lease (nothing to claim: a duplicate or stale message, return);
2. check its data is where it was and unchanged since submit (else ``failed``, never a retry loop);
3. train it, renewing the lease by heartbeat; each epoch's metrics go to the store as it ends;
4. end it: ``succeeded`` with the test MSE and the ``.keras`` model under the artifact root;
   ``failed`` with the reason (NaN loss names the epoch); ``cancelled`` on request; handed back
   (``release``) on worker shutdown; nothing at all if the lease was lost.

A crash anywhere leaves the lease to expire; the reconciler queues the job again and the next
attempt resumes from the last completed epoch (``backup_dir``). A store that cannot be reached for
longer than ``settings.store_retry_seconds`` interrupts the attempt, never decides it: training
stops, the backup stays, and the job is handed back (its attempt not counted) as soon as the store
answers again; its end, once trained, is recorded as soon as it does. Should the store stay away
past the lease, the reconciler takes the job back instead (that attempt counts).
"""

from __future__ import annotations

import errno
import hashlib
import logging
import math
import os
import queue
import shutil
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

from trainyard import defaults
from trainyard.config import Settings
from trainyard.db import JobRecord, JobState, LeaseLost, Store
from trainyard.db.records import make_owner
from trainyard.errors import Cancelled, DataError, Problem, StoreUnavailable, TrainyardError
from trainyard.training import BaseSink, EpochMetrics
from trainyard.worker import child, memory
from trainyard.worker.lease import Lease

log = logging.getLogger(__name__)

_T = TypeVar("_T")


def job_dir(settings: Settings, job_id: int) -> Path:
    """Where a job's files live: ``<artifact_root>/jobs/<id>``."""
    return settings.job_dir(job_id)


def model_path(settings: Settings, job_id: int) -> Path:
    """The final model of a job: ``<artifact_root>/jobs/<id>/model.keras``."""
    return job_dir(settings, job_id) / "model.keras"


def backup_dir(settings: Settings, job_id: int) -> Path:
    """The job's training backups, shared by its attempts so the next one resumes."""
    return job_dir(settings, job_id) / "backup"


@dataclass
class StoreSink(BaseSink):
    """The training core's sink: epochs to the store, and the stop signal at each batch boundary.

    Epochs are written by a thread of their own, in order, while the next epochs train, at most
    every ``write_seconds`` (:data:`~trainyard.defaults.EPOCH_WRITE_SECONDS`): the epochs that end
    in between go in one transaction. A store transaction costs as much as a whole epoch of a
    small model, and a writer thread busy after every epoch slowed such a training by half (the
    training thread waits for the GIL each time it comes back from TensorFlow). The training core
    calls :meth:`flush` before each backup and when it ends, and a pruning decision flushes
    first, so the store never lags behind a backup or a decision and every epoch is stored before
    the job's end is. A store error in the writer is raised by the next ``on_epoch`` or
    ``flush``; a lost lease marks the lease lost (training then stops).
    """

    store: Store
    job_id: int
    owner: str
    lease: Lease
    handback: Any = None  # callable -> bool: the worker is shutting down
    terminated: bool = False  # SIGTERM reached this very process
    pruning: Any = None  # callable (epoch) -> reason or None, for a sweep's trial with a pruner
    last_epoch: int = 0  # the job's epochs_total: no pruning decision after it
    pruned: tuple[int, str] | None = None  # (epoch, reason) once the pruner stopped the trial
    write_seconds: float = defaults.EPOCH_WRITE_SECONDS
    _pending: queue.Queue[Any] = field(default_factory=queue.Queue, init=False, repr=False)
    _now: threading.Event = field(default_factory=threading.Event, init=False, repr=False)  # flush or close
    _writer: threading.Thread | None = field(default=None, init=False, repr=False)
    _error: TrainyardError | None = field(default=None, init=False, repr=False)
    _broken: bool = field(default=False, init=False, repr=False)  # a write failed: the rest are dropped

    def on_epoch(self, metrics: EpochMetrics) -> None:
        self._raise_error()
        if self.lease.lost:
            return
        if self._writer is None:
            self._writer = threading.Thread(target=self._write, name=f"epochs-{self.job_id}", daemon=True)
            self._writer.start()
        self._pending.put(metrics)

    def flush(self) -> None:
        """Wait until every epoch heard so far is in the store (or refused: lease lost)."""
        if self._writer is not None:
            self._now.set()
            self._pending.join()
        self._raise_error()

    def may_back_up(self) -> bool:
        """Asked by the training core after :meth:`flush`: no backup once the lease is lost (the
        epochs the writer dropped would be in the backup the job's next owner resumes from)."""
        return not self.lease.lost

    def close(self) -> None:
        """Flush, then stop the writer thread (errors are left to :meth:`flush`)."""
        if self._writer is None:
            return
        self._pending.put(None)
        self._now.set()
        self._writer.join()
        self._writer = None

    def _raise_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _write(self) -> None:
        last = -math.inf
        while True:
            batch = [self._pending.get()]
            # wait for the epochs that end before the next write is due, unless a flush wants them now
            self._now.wait(max(0.0, last + self.write_seconds - time.monotonic()))
            self._now.clear()  # before taking the epochs: a flush that comes later is seen next time
            while True:
                try:
                    batch.append(self._pending.get_nowait())
                except queue.Empty:
                    break
            epochs = [metrics for metrics in batch if metrics is not None]
            try:
                if epochs and not (self.lease.lost or self._broken):
                    self.store.record_epochs(self.job_id, self.owner, epochs)
            except LeaseLost as exc:
                self.lease.mark_lost(str(exc))
            except TrainyardError as exc:  # the store is unreachable: the training thread raises it
                self._error, self._broken = exc, True
            finally:
                last = time.monotonic()
                for _ in batch:
                    self._pending.task_done()
            if len(epochs) < len(batch):  # close() was called: every epoch before it is written
                return

    def should_stop_after_epoch(self, metrics: EpochMetrics) -> str | None:
        """A sweep's pruner, after the epoch is in the store (the decision reads it back from there)."""
        if self.pruning is None or self.lease.lost or metrics.epoch >= self.last_epoch:
            return None
        self.flush()
        if self.lease.lost:
            return None
        reason = self.pruning(metrics.epoch)
        if reason is not None:
            self.pruned = (metrics.epoch, reason)
        return reason

    def handing_back(self) -> bool:
        return self.terminated or bool(self.handback and self.handback())

    def should_stop(self) -> bool:
        return self.lease.lost or self.lease.cancel_requested or self.handing_back()


def train_next(node: str, hint_job_id: int | None = None, settings: Settings | None = None) -> int | None:
    """Claim the best queued job and train it to the end; return its id, or None if none was queued.

    When that job is a sweep's trial, its end queues the sweep's next trials (and sends their
    slots); this call then claims the best queued job at once and trains it too, and so on while
    it trains trials, instead of waiting for a slot to come back through the broker (a polling
    interval and two hops, per trial). The slots it overtook find nothing to claim, as duplicate
    deliveries do. It returns the last job it trained, and stops at a plain job, when nothing is
    queued, when a job did not end here (lease lost, handed back) or once the worker shuts down.
    """
    settings = settings or Settings.from_env()
    store = Store.open(settings.db_url, retry_seconds=settings.store_retry_seconds)
    owner = make_owner(node, os.getpid())
    job = store.claim_next(owner, settings.lease_seconds)
    if job is None:
        log.info("nothing to claim for message (hint job %s): duplicate or already trained", hint_job_id)
        return None
    while True:
        log.info(
            "job %s (%s): claimed by %s, attempt %s of %s", job.id, job.name, owner, job.attempts, job.max_attempts
        )
        state = run_job(store, job, owner, settings)
        if state is None or job.sweep_id is None or child.handback_requested():
            return job.id
        following = store.claim_next(owner, settings.lease_seconds)
        if following is None:
            return job.id
        job = following


def run_job(store: Store, job: JobRecord, owner: str, settings: Settings, *, strategy: Any = None) -> JobState | None:
    """Train a job ``owner`` has claimed and record how it ended; returns the state written (None if
    the lease was lost or the job handed back)."""
    lease = Lease(store, job.id, owner, settings.lease_seconds, settings.heartbeat_seconds).start()
    sink = StoreSink(
        store,
        job.id,
        owner,
        lease,
        handback=child.handback_requested,
        pruning=_pruning(store, job),
        last_epoch=job.epochs_total,
    )
    previous = _catch_sigterm(sink)
    try:
        state = _run(store, job, owner, settings, sink, strategy)
    finally:
        _restore_sigterm(previous)
        sink.close()
        lease.stop()
    if state is not None and job.sweep_id is not None:
        _next_trials(store, job.sweep_id, settings)
    return state


def _pruning(store: Store, job: JobRecord) -> Any:
    """The pruning decision of a sweep's trial (None for a plain job, or a sweep without a pruner)."""
    if job.sweep_id is None:
        return None
    from trainyard.sweeps import SweepDefinition, decides_after, prune_reason

    sweep_id = job.sweep_id
    definition = SweepDefinition.from_document(store.get_sweep(sweep_id).definition)
    if not definition.prune:
        return None

    def decide(epoch: int) -> str | None:
        if not decides_after(definition.prune, epoch):  # ASHA between its rungs: nothing to read
            return None
        return prune_reason(definition, job.id, epoch, store.sweep_jobs(sweep_id), store.sweep_epochs(sweep_id))

    return decide


def _next_trials(store: Store, sweep_id: int, settings: Settings) -> None:
    """A trial ended: queue the sweep's next trials now and send their slots (else the next
    reconciler pass of any worker does)."""
    from trainyard.queue import dispatch
    from trainyard.sweeps import advance

    try:
        ids = [
            job for progress in advance(store, sweep_id, max_attempts=settings.max_attempts) for job in progress.queued
        ]
        if ids:
            dispatch(ids, settings, store=store)
    except TrainyardError as exc:
        log.warning("sweep %s: next trials left to the reconciler: %s", sweep_id, exc)


def _run(
    store: Store, job: JobRecord, owner: str, settings: Settings, sink: StoreSink, strategy: Any
) -> JobState | None:
    lease = sink.lease
    target = model_path(settings, job.id)
    # Each attempt writes its own file, renamed over model.keras only once it succeeded: a worker
    # that lost its lease never overwrites the model of the attempt that replaced it.
    partial = target.with_name(f"attempt-{_slug(owner)}-{job.attempts}.keras")
    try:
        spec = prepare_spec(store, job, settings)
        memory.check_fits(spec)  # counted from the shapes, before anything is allocated
        if strategy is None:
            strategy = child.strategy()
        from trainyard import training

        if strategy is not None:
            log.info("job %s: training on %s replicas (MirroredStrategy)", job.id, strategy.num_replicas_in_sync)
        _record_lineage(store, job, owner, strategy)
        target.parent.mkdir(parents=True, exist_ok=True)
        if sink.pruning is not None and 0 < job.epochs_done < job.epochs_total:
            # resumed after its last stored epoch: the decision taken then (maybe by a worker that
            # died before recording the end) is taken again, from the same stored epochs
            reason = sink.pruning(job.epochs_done)
            if reason is not None:
                return _end(
                    store, job, owner, JobState.PRUNED, settings, sink, error=reason, stopped_epoch=job.epochs_done
                )
        if job.epochs_done == 0:
            # A first attempt, or a retry from scratch: never resume from an earlier run's backup.
            _remove_tree(backup_dir(settings, job.id))
        try:
            result = training.train(
                spec,
                sink,
                model_path=partial,
                backup_dir=backup_dir(settings, job.id),
                backup_interval=settings.backup_seconds,
                strategy=strategy,
            )
        finally:
            sink.flush()  # every epoch is in the store before the job's end is written
    except Cancelled:
        state = _stopped(store, job, owner, settings, sink)
        _discard(partial)
        return state
    except StoreUnavailable as exc:
        _discard(partial)
        return _interrupted(store, job, owner, settings, sink, exc)
    except TrainyardError as exc:  # divergence, data missing or changed, unwritable artifacts
        _discard(partial)
        if lease.lost:
            return None
        return _end(store, job, owner, JobState.FAILED, settings, sink, error=str(exc))
    except OSError as exc:  # a file of the job cannot be written (a full disk, an unwritable folder...)
        _discard(partial)
        if lease.lost:  # the job's new owner may have removed or replaced the files: not this run's business
            log.info("job %s: stopped, lease lost (%s); nothing more written", job.id, exc)
            return None
        log.warning("job %s: cannot write its files: %s", job.id, exc)
        return _end(store, job, owner, JobState.FAILED, settings, sink, error=_write_error(settings, job.id, exc))
    except Exception as exc:  # a bug or a TensorFlow error (out of memory...): fail the job, keep the worker
        _discard(partial)
        log.exception("job %s: training crashed", job.id)
        if lease.lost:
            return None
        return _end(store, job, owner, JobState.FAILED, settings, sink, error=f"{type(exc).__name__}: {exc}")
    if result.initial_epoch:
        log.info("job %s: resumed after epoch %s", job.id, result.initial_epoch)
    if lease.lost:
        _discard(partial)
        return None
    os.replace(partial, target)
    pruned = sink.pruned if result.stop_reason is not None else None  # (epoch, reason) of a pruned trial
    state = _end(
        store,
        job,
        owner,
        JobState.PRUNED if pruned else JobState.SUCCEEDED,
        settings,
        sink,
        error=pruned[1] if pruned else None,
        test_mse=dict(result.test_mse or {}),
        val_mse=dict(result.val_mse or {}),
        val_metrics=result.val_metrics,
        test_metrics=result.test_metrics or {},
        best_epoch=result.best_epoch,
        stopped_epoch=pruned[0] if pruned else result.stopped_epoch,
        model_path=str(target),
    )
    if state in (JobState.SUCCEEDED, JobState.PRUNED):  # both keep their model
        _write_card(store, job.id, target)
    return state


def _record_lineage(store: Store, job: JobRecord, owner: str, strategy: Any) -> None:
    """Record where this attempt trains (versions, host, devices, strategy) before it starts."""
    from trainyard import lineage

    store.record_lineage(job.id, owner, lineage.at_worker(owner=owner, **child.training_devices(strategy)))


def _write_card(store: Store, job_id: int, model_file: Path) -> None:
    """The ``model.json`` card beside the model; a card that cannot be written is logged, the job stays succeeded."""
    from trainyard.worker.card import write_card

    try:
        write_card(store.get_job(job_id), model_file)
    except (OSError, TrainyardError, ValueError) as exc:
        log.warning("job %s: could not write the model card beside %s: %s", job_id, model_file, exc)


def _stopped(store: Store, job: JobRecord, owner: str, settings: Settings, sink: StoreSink) -> JobState | None:
    """Training stopped at a batch boundary: lost lease, user cancel, or shutdown (in that order)."""
    if sink.lease.lost:
        log.info("job %s: stopped, lease lost; nothing more written", job.id)
        return None
    if sink.lease.cancel_requested:
        return _end(store, job, owner, JobState.CANCELLED, settings, sink, error="cancelled on request")
    return _hand_back(store, job, owner, settings, sink)


def _hand_back(
    store: Store, job: JobRecord, owner: str, settings: Settings, sink: StoreSink, why: str = "worker shutting down"
) -> JobState | None:
    """Give the job back to the queue without using an attempt (worker shutdown, store outage).

    No message is sent from here: this worker is still consuming while it shuts down and would
    take the job straight back. ``release`` clears ``dispatched_at``, so the next reconciler pass
    of any worker (or of a worker started later) sends its slot at once.
    """
    try:
        released = _when_store_answers(f"job {job.id}: handing back", lambda: store.release(job.id, owner), sink)
    except LeaseLost as exc:  # e.g. the lease expired during an outage and a reconciler took the job back
        log.warning("job %s: could not hand back: %s", job.id, exc)
        return None
    if released is None:
        return None
    log.info("job %s: handed back (%s), now %s", job.id, why, released.state)
    if released.state is JobState.QUEUED:
        return None
    _remove_tree(backup_dir(settings, job.id))  # released as cancelled: finished
    return released.state


def _interrupted(
    store: Store, job: JobRecord, owner: str, settings: Settings, sink: StoreSink, exc: StoreUnavailable
) -> JobState | None:
    """The store could not be reached for longer than the worker retries a write: stop this attempt,
    keep the backup (it never holds an epoch the store lacks), and hand the job back once the store
    answers, so that the attempt is not counted and the next one resumes from the backup."""
    log.warning(
        "job %s: the store cannot be reached (%s); attempt %s interrupted, the job goes back to the queue "
        "with its backup once the store answers",
        job.id,
        exc,
        job.attempts,
    )
    return _hand_back(store, job, owner, settings, sink, why="the store was unreachable")


def _when_store_answers(what: str, write: Callable[[], _T], sink: StoreSink) -> _T | None:
    """``write()`` (a store write that retries a dropped connection itself), again and again while
    the store cannot be reached; None if the worker shuts down meanwhile (the lease then expires)."""
    delay = 1.0
    while True:
        try:
            return write()
        except StoreUnavailable as exc:
            if sink.handing_back():
                log.warning("%s: %s; the worker is shutting down, the job's lease will expire", what, exc)
                return None
            log.warning("%s: %s; trying again in %.0f s", what, exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def _end(
    store: Store, job: JobRecord, owner: str, state: JobState, settings: Settings, sink: StoreSink, **fields: Any
) -> JobState | None:
    """Record the job's end; a store that cannot be reached delays it (the result is not thrown away)."""
    unreachable = False

    def finish() -> JobRecord:
        nonlocal unreachable
        try:
            return store.finish(job.id, owner, state, **fields)
        except StoreUnavailable:
            unreachable = True
            raise

    try:
        record = _when_store_answers(f"job {job.id}: recording {state}", finish, sink)
    except LeaseLost as exc:
        current = store.get_job(job.id) if unreachable else None  # an unanswered write may have committed
        if current is None or current.state is not state or current.lease_owner != owner:
            log.warning("job %s: could not record %s: %s", job.id, state, exc)
            return None
        record = current
    if record is None:  # shutting down with the store away: the lease expires, the backup stays
        return None
    _remove_tree(backup_dir(settings, job.id))  # finished: a retry starts from scratch
    if state is JobState.SUCCEEDED:
        log.info("job %s (%s): succeeded, test MSE %s", job.id, job.name, record.test_mse)
    else:
        log.info("job %s (%s): %s: %s", job.id, job.name, state, record.error)
    return state


def prepare_spec(store: Store, job: JobRecord, settings: Settings) -> Any:
    """The job's spec, once its data is checked: inside the data roots and unchanged since submit.
    Raises :class:`DataError` (the job fails, it is not retried).

    The data roots are the worker's ``TRAINYARD_DATA_ROOTS`` when its environment sets it, else
    those ``submit`` recorded (the submitter's ``TRAINYARD_DATA_ROOTS`` or working directory).
    """
    from trainyard.specs import data_fingerprint, data_paths, outside_roots, spec_from_document

    submission = job.submission or store.get_job(job.id).submission
    if submission is None:
        raise DataError(Problem("", f"job {job.id} has no stored spec"))
    spec = spec_from_document(dict(submission.spec))
    if settings.data_roots:
        problems = outside_roots(spec, settings.data_roots, "TRAINYARD_DATA_ROOTS")
    elif submission.data_roots is not None:
        problems = outside_roots(spec, [Path(r) for r in submission.data_roots], "the data roots recorded at submit")
    else:
        problems = []
    if problems:
        raise DataError(problems)
    if submission.data_fingerprint is not None:
        current = data_fingerprint(spec)  # DataError naming the file if it disappeared
        if current != submission.data_fingerprint:
            files = ", ".join(str(p) for p in data_paths(spec)) or str(spec.data.source)
            raise DataError(
                Problem("data", f"changed since submit ({files}); resubmit the spec to train on the new data")
            )
    return spec


def _write_error(settings: Settings, job_id: int, exc: OSError) -> str:
    """``cannot write the job's files in <dir>: No space left on device`` (h5py's long text reduced to
    its errno): the error as it is, a full disk only when the disk is full."""
    reason = os.strerror(exc.errno) if exc.errno else (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK) or "unable to lock file" in str(exc):
        reason = f"another process holds a lock on one of them ({reason})"
    return f"cannot write the job's files in {job_dir(settings, job_id)}: {reason}"


def _discard(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _slug(owner: str) -> str:
    return hashlib.sha256(owner.encode()).hexdigest()[:10]


def _catch_sigterm(sink: StoreSink) -> Any:
    """While a job trains, SIGTERM to this process (systemd stopping the whole group) hands it back."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def _on_term(_signum: int, _frame: FrameType | None) -> None:
        sink.terminated = True

    try:
        return signal.signal(signal.SIGTERM, _on_term)
    except ValueError:
        return None


def _restore_sigterm(previous: Any) -> None:
    if previous is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, previous)
