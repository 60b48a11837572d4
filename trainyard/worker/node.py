"""The worker's parent process: its heartbeat in the ``workers`` table, and the reconciler loop.

A Celery bootstep (:class:`NodeStep`) starts one daemon thread in the parent of every
``celery -A trainyard.worker worker``: it writes a worker heartbeat every
WORKER_HEARTBEAT_SECONDS (``busy`` with the job its children train, or ``idle``) and runs a
reconciler pass every ``settings.reconcile_seconds`` (see :mod:`trainyard.queue.reconciler` for
why there). On shutdown it writes the state ``stopped``. It never imports TensorFlow. Both loops
cost the same with 10,000 queued jobs as with 100 (``benchmarks/reconcile_pass.py``).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from typing import Any

from celery import bootsteps

from trainyard import defaults
from trainyard.config import Settings
from trainyard.db.records import WorkerState
from trainyard.queue import reconciler
from trainyard.worker import devices

log = logging.getLogger(__name__)


class NodeKeeper:
    """Heartbeats and reconciler passes for the Celery node ``name``, in one daemon thread."""

    def __init__(
        self,
        name: str,
        settings: Settings | None = None,
        *,
        heartbeat_seconds: float = defaults.WORKER_HEARTBEAT_SECONDS,
        reconcile: bool = True,
    ) -> None:
        self.name = name
        self.settings = settings or Settings.from_env()
        self.heartbeat_seconds = heartbeat_seconds
        self.reconcile_enabled = reconcile
        self.host = socket.gethostname()
        self.devices = devices.device_names(devices.detect_gpus())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"trainyard-node-{name}", daemon=True)
        self._store: Any = None

    def _open(self) -> Any:
        if self._store is None:
            from trainyard.db import Store

            self._store = Store.open(self.settings.db_url)
        return self._store

    def start(self) -> NodeKeeper:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread and say ``stopped`` in the workers table."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        self.heartbeat(WorkerState.STOPPED)

    def current_job(self) -> int | None:
        """A job a pool child of this node holds the lease of (the newest, when several do), if any."""
        ids = self._open().running_job_ids(self.name)
        return ids[0] if ids else None

    def heartbeat(self, state: WorkerState | None = None) -> None:
        try:
            store = self._open()
            job_id = None if state is WorkerState.STOPPED else self.current_job()
            if state is None:
                state = WorkerState.BUSY if job_id is not None else WorkerState.IDLE
            store.worker_heartbeat(self.name, self.host, self.devices, state, job_id)
        except Exception as exc:  # noqa: BLE001 - the store may be down for a while; the next beat retries
            log.warning("worker heartbeat of %s failed: %s", self.name, exc)

    def reconcile(self) -> None:
        from trainyard.worker import child

        if child.handback_requested():
            return  # shutting down: slots sent now would come back to this worker; others send them
        try:
            reconciler.reconcile(self._open(), self.settings)
        except Exception as exc:  # noqa: BLE001 - logged; the next pass retries
            log.warning("reconciler pass failed: %s", exc)

    def _orphaned(self) -> bool:
        """True when this worker was started by ``trainyard run`` (or a test) that has since died."""
        from trainyard.worker.local import PARENT_PID_ENV

        owner = os.environ.get(PARENT_PID_ENV)
        return owner is not None and owner != "" and os.getppid() != int(owner)

    def _run(self) -> None:
        next_reconcile = time.monotonic()
        while not self._stop.is_set():
            if self._orphaned():
                log.warning("the process that started worker %s is gone: shutting down", self.name)
                os.kill(os.getpid(), signal.SIGTERM)  # warm shutdown: running jobs are handed back
                return
            self.heartbeat()
            if self.reconcile_enabled and time.monotonic() >= next_reconcile:
                self.reconcile()
                next_reconcile = time.monotonic() + self.settings.reconcile_seconds
            wait = self.heartbeat_seconds
            if self.reconcile_enabled:
                wait = min(wait, max(0.0, next_reconcile - time.monotonic()))
            self._stop.wait(max(wait, 0.05))


class NodeStep(bootsteps.StartStopStep):
    """Celery worker bootstep running a :class:`NodeKeeper` in the worker's parent process."""

    requires = {"celery.worker.components:Pool"}

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.keeper: NodeKeeper | None = None

    def start(self, worker: Any) -> None:
        self.keeper = NodeKeeper(worker.hostname).start()
        log.info(
            "trainyard node %s: heartbeats and reconciler every %gs",
            worker.hostname,
            self.keeper.settings.reconcile_seconds,
        )

    def stop(self, worker: Any) -> None:
        if self.keeper is not None:
            self.keeper.stop()

    def terminate(self, worker: Any) -> None:
        self.stop(worker)

    def shutdown(self, worker: Any) -> None:
        self.stop(worker)
