"""The pure training core: a validated spec in, per-epoch metrics and a saved ``.keras`` model out.

No Celery, no database: callers (the CLI, the worker) pass a *sink* (:class:`Sink`, usually a
:class:`BaseSink` subclass) that hears about epochs and batches and may stop the run. Importing this
module is cheap, because the CLI and the worker define their sinks on :class:`BaseSink`: the specs,
numpy and TensorFlow are imported when :func:`train` runs.

Speed: the model is trained by ``model.fit`` on exactly the batches, in exactly the order, that the
article's plain ``model.fit(x, y)`` would use (same seed, same final weights), but with the Python
overhead per epoch taken out: one tf.data iterator for the whole run instead of two per epoch, the
validation MSE computed by one compiled call over the whole split instead of Keras' ``evaluate`` loop,
and, on a single device, no distribution strategy and a whole epoch per ``steps_per_execution``.
With several replicas it runs under ``MirroredStrategy`` with ``steps_per_execution=1``, because
larger values fail there (keras#19246). ``benchmarks/training_throughput.py`` measures the gain.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from trainyard import defaults
from trainyard.errors import Cancelled, TrainingError

if TYPE_CHECKING:
    import keras
    import numpy as np
    import tensorflow as tf

    from trainyard.specs import Dataset, JobSpec, Split

_log = logging.getLogger(__name__)

#: Most batches run in one call into TensorFlow on a single device (bounds the latency of a cancel).
MAX_STEPS_PER_EXECUTION = 1024

#: Largest batch used to evaluate the validation split (one batch for any usual validation split).
EVAL_BATCH_SIZE = 65536


@dataclass(frozen=True)
class EpochMetrics:
    """The metrics of one finished epoch (1-based).

    ``outputs`` maps each output name to ``{"loss": training loss, "val_metrics": {metric: value}}``
    (the metrics of :func:`trainyard.metrics.names`, over the whole validation split, weighted by
    ``data.weight``), plus ``"val_mse"`` for a regression output: its validation MSE.
    """

    epoch: int
    loss: float
    val_loss: float | None
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def val_mse(self) -> dict[str, float]:
        """The validation MSE of each regression output."""
        return {name: m["val_mse"] for name, m in self.outputs.items() if "val_mse" in m}

    @property
    def val_metrics(self) -> dict[str, dict[str, float | None]]:
        """``{output: {metric: value}}`` over the validation split."""
        return {name: dict(m.get("val_metrics", {})) for name, m in self.outputs.items()}

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form: ``{"epoch", "loss", "val_loss", "val_mse": {...}, "val_metrics": {...}, "outputs": {...}}``."""
        return {
            "epoch": self.epoch,
            "loss": self.loss,
            "val_loss": self.val_loss,
            "val_mse": self.val_mse,
            "val_metrics": self.val_metrics,
            "outputs": {k: {**v, "val_metrics": dict(v.get("val_metrics", {}))} for k, v in self.outputs.items()},
        }


@dataclass(frozen=True)
class TrainingResult:
    """What :func:`train` produced: the epochs it ran (after any resume), the saved model's metrics and file.

    ``val_metrics``/``test_metrics`` are ``{output: {metric: value}}`` of the saved model over the
    whole validation/test split; ``val_mse``/``test_mse`` the MSE of its regression outputs.
    ``stop_reason`` is why the run ended before ``training.epochs`` (early stopping, or the sink's
    reason from :meth:`Sink.should_stop_after_epoch`), None when every epoch ran; ``stopped_epoch``
    is then the last epoch trained. ``best_epoch`` is the epoch whose weights the model holds when
    ``training.early_stopping`` is set. ``labels`` are the classification outputs' labels.
    """

    epochs: list[EpochMetrics]
    val_mse: dict[str, float]
    test_mse: dict[str, float] | None
    model_path: Path
    initial_epoch: int = 0
    stop_reason: str | None = None
    val_metrics: dict[str, dict[str, float | None]] = field(default_factory=dict)
    test_metrics: dict[str, dict[str, float | None]] | None = None
    best_epoch: int | None = None
    stopped_epoch: int | None = None
    labels: dict[str, list[Any]] = field(default_factory=dict)


@runtime_checkable
class Sink(Protocol):
    """The seam between the training core and its caller: what :func:`train` calls on its ``sink``, and when.

    Every method is called on the thread that called :func:`train`, and whatever one raises ends
    the run with that exception (after ``flush``; no model is saved). For each epoch, in order:

    - ``on_batch(epoch, step, steps)`` after each call into TensorFlow: ``step`` of ``steps`` batches
      of 1-based ``epoch`` are done (on a single device one call runs many batches, so steps jump).
    - ``should_stop()`` right after: True ends training at this batch boundary with
      :class:`~trainyard.errors.Cancelled` (a cancel, a lost lease, a shutdown). Nothing is saved;
      with ``backup_dir``, the last finished epoch is backed up first, so a next run resumes there.
      When the epochs are shorter than the backup interval, the epoch under way finishes instead
      (it is reported, then backed up) and ``Cancelled`` is raised after it.
    - At the end of the epoch, once its loss is checked (NaN or inf raises
      :class:`~trainyard.errors.TrainingError` instead) and its validation MSE computed:
      ``on_epoch(metrics)``, then ``should_stop_after_epoch(metrics)``. A reason (a string) ends
      training after this epoch as if it were the last one: the model is saved, the final MSEs
      computed and :func:`train` returns with ``TrainingResult.stop_reason`` set to the reason
      (a pruned trial; `training.early_stopping` is the core's own, see :class:`_EarlyStopping`); a
      reason given after the last epoch changes nothing. None
      trains on. Epochs a resume skips are not reported, and the core does not remember a reason
      across runs: a run resumed from a backup asks again from its first new epoch.
    - ``flush()`` before every backup and once when training ends (returns or raises): a sink may
      write epochs in the background, yet it never lags behind a backup, and every epoch it heard
      is written before :func:`train` returns.
    - ``may_back_up()`` after each of those flushes that precede a backup: False skips that backup
      (a worker that lost its lease must not leave a backup holding epochs its store refused,
      since the job's next owner resumes from it).

    :class:`BaseSink` implements every method as a no-op; a sink subclasses it and overrides what
    it needs. ``train(spec, sink=None)`` uses a :class:`BaseSink`.
    """

    def on_batch(self, epoch: int, step: int, steps: int) -> None: ...

    def should_stop(self) -> bool: ...

    def on_epoch(self, metrics: EpochMetrics) -> None: ...

    def should_stop_after_epoch(self, metrics: EpochMetrics) -> str | None: ...

    def flush(self) -> None: ...

    def may_back_up(self) -> bool: ...


class BaseSink:
    """A :class:`Sink` that hears everything and does nothing: never stops, never vetoes a backup."""

    def on_batch(self, epoch: int, step: int, steps: int) -> None:
        return None

    def should_stop(self) -> bool:
        return False

    def on_epoch(self, metrics: EpochMetrics) -> None:
        return None

    def should_stop_after_epoch(self, metrics: EpochMetrics) -> str | None:
        return None

    def flush(self) -> None:
        return None

    def may_back_up(self) -> bool:
        return True


def train(
    spec: JobSpec,
    sink: Sink | None = None,
    *,
    model_path: str | os.PathLike[str],
    backup_dir: str | os.PathLike[str] | None = None,
    strategy: tf.distribute.Strategy | None = None,
    data: Dataset | None = None,
    backup_interval: float = defaults.BACKUP_INTERVAL_SECONDS,
) -> TrainingResult:
    """Train ``spec`` and save the model to ``model_path`` (a ``.keras`` file).

    ``sink`` hears the run and may end it (the contract is :class:`Sink`'s; None: a :class:`BaseSink`).
    A NaN or infinite loss raises :class:`TrainingError` naming the epoch. With ``backup_dir``, the
    weights, optimizer state and epoch are backed up at the end of an epoch once ``backup_interval``
    seconds have passed since the last backup (so every epoch, for epochs longer than that), and an
    interrupted run resumes from its last backup; epochs before it are not reported again.
    ``strategy=None`` uses no strategy on a single device and ``MirroredStrategy`` over all GPUs
    when there are several.
    """
    import keras

    from trainyard.specs import build_model, fit_inputs, load_data, make_optimizer
    from trainyard.specs.builder import prediction_model

    if sink is None:
        sink = BaseSink()
    elif not isinstance(sink, Sink):
        missing = [name for name in _SINK_METHODS if not callable(getattr(sink, name, None))]
        raise TypeError(f"sink: {type(sink).__name__} lacks {', '.join(missing)}; subclass trainyard.training.BaseSink")
    path = Path(model_path)
    if path.suffix != ".keras":
        raise TrainingError(f"model_path: expected a file ending in .keras, received {str(path)!r}")
    data = data if data is not None else load_data(spec)
    strategy = _choose_strategy(strategy)
    replicas = strategy.num_replicas_in_sync if strategy is not None else 1

    steps = math.ceil(len(data.train) / spec.training.batch_size)
    per_execution = 1 if replicas > 1 else max(1, min(steps, MAX_STEPS_PER_EXECUTION))
    stats = fit_inputs(spec.inputs, data.train.x)  # vocabularies, filled-in values, normalisation
    target_moments = {name: _moments(data.train.y[name]) for name, out in spec.outputs.items() if out.normalize}
    fit_split = _standardized(data.train, target_moments)

    def compiled_model() -> keras.Model:
        keras.utils.set_random_seed(spec.training.seed)
        with strategy.scope() if strategy is not None else contextlib.nullcontext():
            model = build_model(spec, stats, data.labels)
            model.compile(
                optimizer=make_optimizer(spec),
                loss={name: _keras_loss(out) for name, out in spec.outputs.items()},
                loss_weights={name: out.weight for name, out in spec.outputs.items()},
                steps_per_execution=per_execution,
            )
        return model

    model = compiled_model()
    stopping = _EarlyStopping.of(spec)
    backup = (
        _Backup(Path(backup_dir), backup_interval, before_save=sink.flush, may_save=sink.may_back_up, stopping=stopping)
        if backup_dir is not None
        else None
    )
    initial_epoch = backup.restore(model) if backup is not None else 0
    if initial_epoch < 0:  # an unusable backup: start again from the same initial weights
        model, initial_epoch = compiled_model(), 0
        stopping = _EarlyStopping.of(spec)
        if backup is not None:
            backup.stopping = stopping

    reporter = _reporter_class()(
        spec,
        sink,
        steps,
        _validator(model, spec, data.valid, target_moments),
        stopping,
        wait_below=backup.interval if backup is not None else None,
    )
    callbacks: list[keras.callbacks.Callback] = [reporter]
    if backup is not None:
        # after the reporter: a cancelled or diverged epoch raises before it could be backed up
        callbacks.append(_backup_callback_class()(backup))
    try:
        model.fit(
            _fit_batches(fit_split, spec.training.batch_size, spec.training.shuffle).cache().repeat(),
            epochs=spec.training.epochs,
            initial_epoch=initial_epoch,
            steps_per_epoch=steps,
            shuffle=False,  # the batches above are already in fit's own shuffled order
            callbacks=callbacks,
            verbose=0,
        )
    finally:
        sink.flush()  # every epoch reported is written before train returns or raises
    if reporter.stop_at_epoch_end is not None:  # an orderly stop that waited for its epoch to end
        if backup is not None and reporter.epochs:
            backup.save_last(model, reporter.epochs[-1].epoch)
        raise Cancelled(reporter.stop_at_epoch_end)

    if stopping is not None:
        stopping.restore(model, reporter.epochs[-1].epoch if reporter.epochs else None)
    saved = prediction_model(model, spec, target_moments)
    _save(saved, path, _model_info(spec, data.labels))
    val_metrics = split_metrics(saved, spec, data.valid)
    test_metrics = split_metrics(saved, spec, data.test) if data.test is not None and len(data.test) else None
    if backup is not None:
        backup.clear()
    initial = reporter.initial_epoch if reporter.initial_epoch is not None else spec.training.epochs
    stopped = reporter.epochs[-1].epoch if reporter.stop_reason is not None and reporter.epochs else None
    return TrainingResult(
        epochs=reporter.epochs,
        val_mse=_mse_of(val_metrics),
        test_mse=_mse_of(test_metrics) if test_metrics is not None else None,
        model_path=path,
        initial_epoch=initial,
        stop_reason=reporter.stop_reason,
        val_metrics=val_metrics,
        test_metrics=test_metrics,
        stopped_epoch=stopped,
        best_epoch=stopping.best_epoch if stopping is not None else None,
        labels=dict(data.labels),
    )


#: The methods of :class:`Sink`, named in the error for a sink that lacks some.
_SINK_METHODS = ("on_batch", "should_stop", "on_epoch", "should_stop_after_epoch", "flush", "may_back_up")


def _choose_strategy(strategy: tf.distribute.Strategy | None) -> tf.distribute.Strategy | None:
    """The caller's strategy, else MirroredStrategy over several GPUs, else none (fastest on one device)."""
    if strategy is not None:
        return strategy
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    return tf.distribute.MirroredStrategy([g.name for g in gpus]) if len(gpus) > 1 else None


def _fit_batches(split: Split, batch_size: int, shuffle: bool) -> tf.data.Dataset:
    """One epoch of the batches ``model.fit(split.x, split.y, batch_size=, shuffle=)`` draws, in its order.

    ``model.fit`` on arrays makes a new tf.data iterator (and a new validation iterator) every epoch,
    which costs far more than the few steps of a small model. With a global seed set, ``fit`` draws
    the same permutation every epoch, so :func:`train` caches one pass of this dataset and repeats
    it: the very same model, with one iterator for the whole run (``fit`` then needs
    ``steps_per_epoch``).

    Private Keras, on purpose: no public API hands out the batches ``fit`` draws. Keras' array
    adapter builds them with ``tf.random.shuffle`` inside a ``tf.data`` map, whose op seed comes
    from the global seed and the ops created before it; ``Dataset.shuffle`` or a numpy permutation
    give another order, and a public ``tf.data`` copy of the adapter's ops matches only until Keras
    changes them. Calling the adapter follows whatever ``fit`` does. The tripwires:
    ``tests/training/test_matches_keras_fit.py`` (these batches are the ones ``fit`` trains on,
    and the final weights equal plain ``fit``'s).
    """
    from keras.src.trainers.data_adapters import get_data_adapter

    adapter = get_data_adapter(
        tensors(split.x), split.y, sample_weight=split.weight, batch_size=batch_size, shuffle=shuffle
    )
    return adapter.get_tf_dataset()


def _validator(
    model: keras.Model, spec: JobSpec, split: Split, target_moments: dict[str, tuple[np.ndarray, np.ndarray]]
) -> Callable[[], tuple[float, dict[str, dict[str, float | None]]]]:
    """A function giving ``(val_loss, {output: {metric: value}})`` over the whole validation split.

    One compiled call per epoch over tensors held in memory, instead of Keras' per-epoch ``evaluate``
    loop: it returns the loss (on the scale training sees: a normalized target standardized, each
    row weighted as in training) and the predictions in the target's units, which the metrics of
    :func:`trainyard.metrics.compute` are computed from, over every row of the split.
    """
    import keras
    import tensorflow as tf

    from trainyard import metrics

    standardized = _standardized(split, target_moments)
    x = tensors(split.x, every=True)
    y = {name: tf.constant(value.reshape(len(value), -1)) for name, value in standardized.y.items()}
    weight = tf.constant(split.weight, tf.float32) if split.weight is not None else None
    losses = {name: keras.losses.get(_keras_loss(out)) for name, out in spec.outputs.items()}
    weights = {name: out.weight for name, out in spec.outputs.items()}
    scale = {
        name: (tf.constant(mean, tf.float32), tf.constant(_std(variance), tf.float32))
        for name, (mean, variance) in target_moments.items()
    }

    @tf.function
    def evaluate() -> tuple[Any, dict[str, Any]]:
        predictions = model(x, training=False)
        if not isinstance(predictions, dict):
            predictions = dict(zip(spec.outputs, tf.nest.flatten(predictions)))
        total, out = tf.constant(0.0, tf.float64), {}
        for name, target in y.items():
            p = predictions[name]
            if spec.outputs[name].type == "regression":
                p = tf.reshape(tf.cast(p, target.dtype), tf.shape(target))
            per_row = losses[name](target, p)
            if weight is not None:
                per_row = per_row * weight
            total += weights[name] * tf.cast(tf.reduce_mean(per_row), tf.float64)
            if name in scale:
                mean, std = scale[name]
                p = p * std + mean
            out[name] = p
        return total, out

    def run() -> tuple[float, dict[str, dict[str, float | None]]]:
        total, predictions = evaluate()
        return float(total), {
            name: metrics.compute(out.type, split.y[name], predictions[name].numpy(), split.weight, out.loss)
            for name, out in spec.outputs.items()
        }

    return run


def _keras_loss(out: Any) -> str:
    """The Keras loss an output compiles with: a category target holds label indices, so its
    cross-entropy is the sparse one whichever name the spec gives."""
    return "sparse_categorical_crossentropy" if out.type == "category" else str(out.loss)


def _std(variance: np.ndarray) -> np.ndarray:
    """The standard deviation Keras' Normalization divides by (its variance floor included)."""
    import numpy as np

    return np.maximum(np.sqrt(variance), 1e-7)


def _standardized(split: Split, target_moments: dict[str, tuple[np.ndarray, np.ndarray]]) -> Split:
    """``split`` with each normalized target standardized by the training split's mean and deviation."""
    import dataclasses

    import numpy as np

    if not target_moments:
        return split
    y = dict(split.y)
    for name, (mean, variance) in target_moments.items():
        y[name] = ((y[name].astype(np.float64) - mean) / _std(variance)).astype(np.float32)
    return dataclasses.replace(split, y=y)


def _moments(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (population) variance per column of a target, as Normalization.adapt computes them."""
    import numpy as np

    y64 = y.astype(np.float64)
    return y64.mean(axis=0), y64.var(axis=0)


def tensors(x: dict[str, np.ndarray], *, every: bool = False) -> dict[str, Any]:
    """Model inputs as Keras takes them: string (object) arrays as ``tf.string`` tensors (Keras' array
    adapters and ``predict`` refuse numpy string arrays), the others as they are, or, with ``every``
    (for calling the model directly, which refuses a mix), as tensors too."""
    import tensorflow as tf

    return {
        name: tf.constant(v, dtype=tf.string) if v.dtype == object else tf.constant(v) if every else v
        for name, v in x.items()
    }


def split_metrics(model: keras.Model, spec: JobSpec, split: Split) -> dict[str, dict[str, float | None]]:
    """``{output: {metric: value}}`` of a saved-form model (predicting in the targets' units) over a whole split.

    The model is called directly, EVAL_BATCH_SIZE rows at a time: ``model.predict`` would trace a
    new predict function for every model, 0.1-0.4 s per call, as long as a small job's training.
    """
    from trainyard import metrics

    predictions = _predict(model, split)
    return {
        name: metrics.compute(out.type, split.y[name], predictions[name], split.weight, out.loss)
        for name, out in spec.outputs.items()
    }


def _predict(model: keras.Model, split: Split) -> dict[str, np.ndarray]:
    """The model's predictions of every output over a split, as float64 arrays."""
    import numpy as np

    parts: dict[str, list[np.ndarray]] = {name: [] for name in split.y}
    for start in range(0, len(split), EVAL_BATCH_SIZE):
        rows = tensors({name: x[start : start + EVAL_BATCH_SIZE] for name, x in split.x.items()}, every=True)
        predictions = model(rows, training=False)
        if not isinstance(predictions, dict):
            predictions = dict(zip(split.y, predictions if isinstance(predictions, (list, tuple)) else [predictions]))
        for name in parts:
            parts[name].append(np.asarray(predictions[name], dtype=np.float64))
    return {name: np.concatenate(chunks) for name, chunks in parts.items()}


def _mse_of(metrics: dict[str, dict[str, float | None]]) -> dict[str, float]:
    """The MSE of each regression output (the outputs that report one)."""
    return {name: values["mse"] for name, values in metrics.items() if values.get("mse") is not None}


def _model_info(spec: JobSpec, labels: dict[str, list[Any]]) -> Any:
    from trainyard.specs.features import input_record
    from trainyard.specs.targets import ModelInfo, OutputInfo

    record = input_record(spec)
    return ModelInfo(
        outputs={
            name: OutputInfo(type=out.type, labels=tuple(labels.get(name, ())), target=tuple(out.target))
            for name, out in spec.outputs.items()
        },
        inputs=record["inputs"],
        csv=record["csv"],
    )


def _save(model: keras.Model, path: Path, info: Any) -> None:
    """Write the model atomically, with trainyard's ``trainyard.json`` entry (the outputs' types and
    labels, :mod:`trainyard.specs.targets`): a reader never sees a half-written ``.keras`` file."""
    from trainyard.specs.targets import write_model_info

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.keras")
        model.save(tmp)
        write_model_info(tmp, info)
        os.replace(tmp, path)
    except OSError as exc:
        raise TrainingError(f"cannot write the model to {str(path)!r}: {exc.strerror or exc}") from exc


class _Backup:
    """Crash-safe backups of a training run in one folder: weights, optimizer state and epoch.

    A backup is written as a new weights file, then ``state.json`` is atomically replaced to point at
    it, so a process killed at any instant leaves the previous complete backup in force (Keras'
    ``BackupAndRestore`` writes its weights and its epoch number in place, one after the other: a
    kill in between resumed with a half-written file here).

    Several runs may share the folder at once: a job's new owner, and its old owner that was paused
    past its lease and has not yet noticed. So every file a run writes carries that run's own tag
    (h5py locks a file while writing it: two writers of one name fail with "unable to lock file"),
    a run never moves the pointer back to an epoch older than the one it points at, and it deletes
    only backups older than its own. Whatever another run left (a temporary file, a newer backup)
    is never an error; a pointer to a file that is gone falls back to the newest complete backup.
    """

    STATE = "state.json"
    _WEIGHTS = re.compile(r"epoch-(\d+)(?:\.[0-9a-z-]+)?\.weights\.h5")

    def __init__(
        self,
        directory: Path,
        interval: float,
        *,
        before_save: Callable[[], None],
        may_save: Callable[[], bool],
        stopping: _EarlyStopping | None = None,
    ) -> None:
        self.directory = directory
        self.interval = interval
        self.before_save = before_save  # the sink's flush, then its veto (see Sink)
        self.may_save = may_save
        # early stopping's state goes into every backup, beside the weights file it belongs to
        self.stopping = stopping
        self.tag = f"{os.getpid()}-{secrets.token_hex(4)}"  # this run's files (see above)
        self.last = time.monotonic()
        self.saved: int | None = None  # the epoch of this run's latest backup

    def restore(self, model: keras.Model) -> int:
        """Load the last backup into ``model``; its epoch count, 0 without one, -1 if it is unusable."""
        pointed = self._pointed()
        candidates = ([pointed] if pointed is not None else []) + sorted(
            (found for found in self._complete() if found != pointed), reverse=True
        )
        if not candidates:
            return 0
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        for epoch, name in candidates:
            try:
                if self.stopping is not None:
                    self.stopping.load(self.directory / _stopping_file(name))
                model.load_weights(self.directory / name)
                return epoch
            except (OSError, ValueError, KeyError, TypeError) as exc:
                _log.warning("backup %s in %s is unusable (%s)", name, self.directory, exc)
        _log.warning("no usable backup in %s: training from the first epoch", self.directory)
        self.clear()
        return -1

    def epoch_end(self, model: keras.Model, epochs_done: int) -> None:
        """Back up now if the interval has passed since the last backup. An epoch at least that long
        is therefore always backed up at its end; a shorter one need not be, as an orderly stop
        during the next epoch waits for that epoch's end and :meth:`save_last` backs it up then
        (see ``_ReporterMixin``)."""
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.save(model, epochs_done)
            self.last = now

    def save_last(self, model: keras.Model, epochs_done: int) -> None:
        """On an orderly stop that waited for its epoch to end: back that epoch up, if not done yet."""
        if self.saved != epochs_done:
            self.save(model, epochs_done)

    def save(self, model: keras.Model, epochs_done: int) -> None:
        self.before_save()
        if not self.may_save():
            return
        self.saved = epochs_done
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"epoch-{epochs_done}.{self.tag}.weights.h5"
        if self.stopping is not None:  # written first: a complete weights file always has its state
            companion = self.directory / _stopping_file(name)
            self.stopping.save(self.directory / f".tmp-{companion.name}")
            os.replace(self.directory / f".tmp-{companion.name}", companion)
        tmp = self.directory / f".tmp-{name}"
        model.save_weights(tmp)
        _fsync(tmp)
        os.replace(tmp, self.directory / name)
        pointed = self._pointed()
        if pointed is not None and pointed[0] > epochs_done:  # another run got further: its backup stays
            (self.directory / name).unlink(missing_ok=True)
            return
        state_tmp = self.directory / f".tmp-{self.tag}-{self.STATE}"
        state_tmp.write_text(json.dumps({"epoch": epochs_done, "weights": name}))
        _fsync(state_tmp)
        os.replace(state_tmp, self.directory / self.STATE)
        for epoch, old in self._complete():
            if epoch < epochs_done:
                (self.directory / old).unlink(missing_ok=True)
                (self.directory / _stopping_file(old)).unlink(missing_ok=True)

    def clear(self) -> None:
        """Forget every backup (the run finished, or the backup could not be used)."""
        for entry in self.directory.glob("*"):
            if entry.is_file():
                entry.unlink(missing_ok=True)

    def _pointed(self) -> tuple[int, str] | None:
        """``(epoch, weights file)`` that ``state.json`` names, None without a readable one."""
        try:
            state = json.loads((self.directory / self.STATE).read_text())
            return int(state["epoch"]), str(state["weights"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            if not isinstance(exc, FileNotFoundError):
                _log.warning("backup pointer in %s is unreadable (%s)", self.directory, exc)
            return None

    def _complete(self) -> list[tuple[int, str]]:
        """Every complete backup in the folder (written under a temporary name, then renamed)."""
        try:
            names = [entry.name for entry in self.directory.iterdir()]
        except OSError:
            return []
        found = []
        for name in names:
            match = self._WEIGHTS.fullmatch(name)
            if match:
                found.append((int(match.group(1)), name))
        return found


def _stopping_file(weights_name: str) -> str:
    """The file holding early stopping's state beside a backup's weights file."""
    return weights_name.removesuffix(".weights.h5") + ".stopping.npz"


class _EarlyStopping:
    """``training.early_stopping``: watches one output's headline validation metric epoch after epoch.

    The run stops once ``patience`` epochs in a row brought no improvement on the best value; with
    ``restore_best`` the best epoch's weights are kept in memory and put back before the model is
    saved. Its state (best value and epoch, epochs waited, best weights) is part of every backup,
    so a resumed run stops where an uninterrupted one would.
    """

    def __init__(self, output: str, kind: str, loss: str | None, patience: int, restore_best: bool) -> None:
        from trainyard import metrics

        self.output = output
        self.metric = metrics.metric(metrics.headline(kind))
        self.patience = patience
        self.restore_best = restore_best
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.wait = 0
        self.best_weights: list[np.ndarray] | None = None

    @classmethod
    def of(cls, spec: JobSpec) -> _EarlyStopping | None:
        stopping = spec.training.early_stopping
        if stopping is None or stopping.output is None:
            return None
        out = spec.outputs[stopping.output]
        return cls(stopping.output, out.type, out.loss, stopping.patience, stopping.restore_best)

    def update(self, epoch: EpochMetrics, model: keras.Model) -> str | None:
        """Hear one finished epoch; the reason to stop after it, or None."""
        value = epoch.val_metrics.get(self.output, {}).get(self.metric.name)
        if value is not None and math.isfinite(value) and (self.best is None or self.metric.better(value, self.best)):
            self.best, self.best_epoch, self.wait = float(value), epoch.epoch, 0
            if self.restore_best:
                self.best_weights = [w.numpy() for w in model.weights]
            return None
        self.wait += 1
        if self.wait >= self.patience:
            return f"stopped early at epoch {epoch.epoch}, best epoch {self.best_epoch}"
        return None

    def restore(self, model: keras.Model, last_epoch: int | None) -> None:
        """Put the best epoch's weights back (with ``restore_best``, when it was not the last epoch)."""
        if self.restore_best and self.best_weights is not None and self.best_epoch != last_epoch:
            for variable, value in zip(model.weights, self.best_weights):
                variable.assign(value)

    def save(self, path: Path) -> None:
        import numpy as np

        state = {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait}
        arrays = {f"w{i}": w for i, w in enumerate(self.best_weights or [])}
        with open(path, "wb") as fh:
            np.savez(fh, state=np.array(json.dumps(state)), **arrays)
            fh.flush()
            os.fsync(fh.fileno())

    def load(self, path: Path) -> None:
        """The state a backup holds; raises OSError/ValueError/KeyError when it is missing or broken."""
        import numpy as np

        with np.load(path, allow_pickle=False) as saved:
            state = json.loads(str(saved["state"]))
            weights = [saved[f"w{i}"] for i in range(len(saved.files) - 1)]
        self.best = None if state["best"] is None else float(state["best"])
        self.best_epoch = None if state["best_epoch"] is None else int(state["best_epoch"])
        self.wait = int(state["wait"])
        self.best_weights = weights or None


def _fsync(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


@functools.cache
def _backup_callback_class() -> type:
    import keras

    class BackupCallback(keras.callbacks.Callback):
        """Backs the run up at the end of an epoch (see :class:`_Backup`)."""

        def __init__(self, backup: _Backup) -> None:
            super().__init__()
            self.backup = backup

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            self.backup.epoch_end(self.model, epoch + 1)

    return BackupCallback


@functools.cache
def _reporter_class() -> type:
    """The Keras callback class, made on first use so that importing this module does not import Keras."""
    import keras

    class Reporter(_ReporterMixin, keras.callbacks.Callback):
        """Turns Keras' logs into EpochMetrics for the sink; raises on cancel and on divergence."""

    return Reporter


class _ReporterMixin:
    model: keras.Model

    def __init__(
        self,
        spec: JobSpec,
        sink: Sink,
        steps: int,
        validate: Callable[[], tuple[float, dict[str, dict[str, float | None]]]],
        stopping: _EarlyStopping | None = None,
        *,
        wait_below: float | None = None,
    ) -> None:
        super().__init__()
        # An orderly stop (``should_stop``) during an epoch ends training at that batch boundary
        # when the last epoch took at least ``wait_below`` (the backup interval): that epoch was
        # backed up at its end. After a shorter epoch, which the interval may not have backed up, a
        # stop lets the epoch under way finish (it is about as short) and train() backs it up
        # from the model. Keeping a copy of every short epoch's variables in case a stop came cost a
        # small model's sweep trials about 5% of their time. On one device a short epoch is usually
        # a single call into TensorFlow, so the stop is then seen only at its end anyway.
        self.wait_below = wait_below
        self.epoch_started = 0.0
        self.last_duration: float | None = None
        self.stop_at_epoch_end: str | None = None  # the Cancelled message of a stop that waits
        self.sink = sink
        self.validate = validate
        self.stopping = stopping
        self.outputs = list(spec.outputs)
        self.single = len(self.outputs) == 1
        self.steps = steps
        self.last_epoch = spec.training.epochs
        self.epoch = 0
        self.epochs: list[EpochMetrics] = []
        self.initial_epoch: int | None = None
        self.stop_reason: str | None = None

    def stops_wait(self) -> bool:
        """Whether a stop during the coming epoch waits for its end: the last epoch was short."""
        return self.wait_below is not None and self.last_duration is not None and self.last_duration < self.wait_below

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch = epoch + 1
        self.epoch_started = time.monotonic()
        if self.initial_epoch is None:
            self.initial_epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if logs and "loss" in logs:
            self._check(float(logs["loss"]))
        self.sink.on_batch(self.epoch, min(batch + 1, self.steps), self.steps)
        if self.stop_at_epoch_end is None and self.sink.should_stop():
            if not self.stops_wait():
                raise Cancelled(f"cancelled during epoch {self.epoch}")
            self.stop_at_epoch_end = f"cancelled after epoch {self.epoch}"

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        loss = float(logs["loss"])
        self._check(loss)
        val_loss, val_metrics = self.validate()
        outputs: dict[str, dict[str, Any]] = {}
        for name in self.outputs:
            out_loss = logs.get(f"{name}_loss", logs["loss"] if self.single else None)
            outputs[name] = {"loss": float(out_loss), "val_metrics": val_metrics[name]}  # type: ignore[arg-type]
            if "mse" in val_metrics[name]:
                outputs[name]["val_mse"] = val_metrics[name]["mse"]
        metrics = EpochMetrics(epoch=epoch + 1, loss=loss, val_loss=val_loss, outputs=outputs)
        self.epochs.append(metrics)
        early = self.stopping.update(metrics, self.model) if self.stopping is not None else None
        self.sink.on_epoch(metrics)
        self.last_duration = time.monotonic() - self.epoch_started
        if self.stop_at_epoch_end is not None:  # train() backs this epoch up and raises Cancelled
            self.model.stop_training = True
            return
        reason = self.sink.should_stop_after_epoch(metrics) or early
        if reason is not None and metrics.epoch < self.last_epoch:
            self.stop_reason = reason
            self.model.stop_training = True  # fit ends after this epoch's callbacks, the backup's too

    def _check(self, loss: float) -> None:
        if not math.isfinite(loss):
            raise TrainingError(f"epoch {self.epoch}: loss is {loss}")
