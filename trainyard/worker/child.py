"""The pool child's side of a worker: TensorFlow set-up, GPU pinning, and the hand-back flag.

Celery's prefork pool forks its children from a parent that never imported TensorFlow; each
child imports it here, in ``worker_process_init`` (hence the raised ``worker_proc_alive_timeout``),
so the first job does not pay for the import and CUDA is initialised only in the child.

Warm shutdown (SIGTERM or the first Ctrl-C to the worker) sets :data:`HANDBACK`, an event
created in the parent before the pool forks and so shared with every child: a running training
stops at the next batch boundary and its job is released to the store for another worker.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from typing import Any

from celery import signals

from trainyard.worker import devices

#: Set in the parent on warm shutdown; pool children hand their running job back when they see it.
HANDBACK: Any = None

_strategy_lock = threading.Lock()
_strategy: Any = None
_strategy_ready = False


@signals.worker_init.connect(weak=False)
def _create_handback_event(**_: Any) -> None:
    """In the parent, before the pool forks: children inherit the event."""
    global HANDBACK
    HANDBACK = multiprocessing.get_context("fork").Event()


@signals.worker_shutting_down.connect(weak=False)
def _request_handback(**_: Any) -> None:
    """In the parent, on warm or cold shutdown: ask the children to hand their jobs back."""
    if HANDBACK is not None:
        HANDBACK.set()


def handback_requested() -> bool:
    """True once the worker is shutting down (read at every batch boundary)."""
    return HANDBACK is not None and HANDBACK.is_set()


@signals.worker_process_init.connect(weak=False)
def _init_child(**_: Any) -> None:
    init_process()


def init_process() -> None:
    """Prepare a fresh training process: pin its GPU, turn memory growth on, import TensorFlow."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ["TF_FORCE_GPU_ALLOW_GROWTH"] = "true"
    _pin_gpu()
    # Database connections inherited from the parent are dropped by trainyard.db at fork.
    if handback_requested():
        return  # a replacement child forked during shutdown: it will train nothing
    configure_tensorflow()


def _pin_gpu() -> None:
    pinned = os.environ.get(devices.PIN_GPUS_ENV)
    if not pinned:
        return
    from billiard.process import current_process

    gpus = [g for g in pinned.split(",") if g]
    index = getattr(current_process(), "index", 0) or 0
    os.environ["CUDA_VISIBLE_DEVICES"] = gpus[index % len(gpus)]


def configure_tensorflow() -> None:
    """Import TensorFlow with memory growth on every GPU and, if asked, logical CPU devices.

    Must run before TensorFlow touches a device; afterwards the settings cannot change.
    """
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised: TF_FORCE_GPU_ALLOW_GROWTH has done it
            pass
    logical = _logical_cpus()
    if logical > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(logical)]
            )
        except RuntimeError:
            pass  # already initialised; strategy() then uses what exists


def _logical_cpus() -> int:
    raw = os.environ.get(devices.LOGICAL_CPUS_ENV, "")
    try:
        return int(raw) if raw else 0
    except ValueError:
        from trainyard.errors import TrainyardError

        raise TrainyardError(f"{devices.LOGICAL_CPUS_ENV}: expected an integer, received {raw!r}") from None


def strategy() -> Any:
    """The ``tf.distribute`` strategy for this process's jobs, or None to let the training core choose.

    None means: ``MirroredStrategy`` over all GPUs when there are several, the cheap
    single-device path otherwise (the training core decides). With
    ``TRAINYARD_LOGICAL_CPUS=N`` (N > 1), ``MirroredStrategy`` over N logical CPU devices.
    """
    global _strategy, _strategy_ready
    with _strategy_lock:
        if not _strategy_ready:
            logical = _logical_cpus()
            if logical > 1:
                configure_tensorflow()
                import tensorflow as tf

                cpus = tf.config.list_logical_devices("CPU")
                _strategy = tf.distribute.MirroredStrategy([d.name for d in cpus[:logical]])
            _strategy_ready = True
        return _strategy


def training_devices(strategy: Any) -> dict[str, Any]:
    """The devices a job trains on here, its ``tf.distribute`` strategy and replicas (for its lineage):
    ``strategy`` as :func:`strategy` returned it (None: the training core's choice, which is
    ``MirroredStrategy`` over several GPUs, else one device without a strategy)."""
    import tensorflow as tf

    if strategy is not None:
        return {
            "devices": [str(d) for d in strategy.extended.worker_devices],
            "strategy": type(strategy).__name__,
            "replicas": int(strategy.num_replicas_in_sync),
        }
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return {"devices": [g.name for g in gpus], "strategy": "MirroredStrategy", "replicas": len(gpus)}
    device = gpus[0] if gpus else tf.config.list_logical_devices("CPU")[0]
    return {"devices": [device.name], "strategy": "none", "replicas": 1}
