"""A claimed job's lease, kept alive by a heartbeat thread while the job trains.

Who owns a running job: the worker process whose ``owner`` string is the job's ``lease_owner``
in the store, for as long as it renews the lease before it expires. The heartbeat thread renews
it every ``heartbeat_seconds`` and reads two answers the training loop polls at each batch
boundary: a requested cancel, and a lost lease (expired and requeued, or taken by another
worker). A worker that lost its lease stops and writes nothing more for that job.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from trainyard.errors import TrainyardError

if TYPE_CHECKING:
    from trainyard.db import Store

log = logging.getLogger(__name__)


class Lease:
    """The lease ``owner`` holds on ``job_id``; :meth:`start` begins renewing it in a daemon thread."""

    def __init__(self, store: Store, job_id: int, owner: str, lease_seconds: float, heartbeat_seconds: float) -> None:
        self.store = store
        self.job_id = job_id
        self.owner = owner
        self.lease_seconds = lease_seconds
        self.heartbeat_seconds = max(0.05, min(heartbeat_seconds, lease_seconds / 2))
        self.cancel_requested = False
        self._lost = threading.Event()
        self._stop = threading.Event()
        self._last_renewal = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=f"lease-{job_id}", daemon=True)

    @property
    def lost(self) -> bool:
        """True once the store said the lease is no longer ours, or we could not renew it in time."""
        return self._lost.is_set()

    def mark_lost(self, reason: str) -> None:
        if not self._lost.is_set():
            log.warning("job %s: %s lost its lease: %s", self.job_id, self.owner, reason)
        self._lost.set()

    def start(self) -> Lease:
        """Renew once now (a cancel requested before the job started is seen at once), then periodically."""
        self.renew()
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop renewing (the job is finished, released or lost)."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=self.heartbeat_seconds + 30)

    def renew(self) -> None:
        """Renew once now; updates :attr:`cancel_requested` and :attr:`lost`."""
        try:
            status = self.store.renew_lease(self.job_id, self.owner, self.lease_seconds)
        except TrainyardError as exc:
            # The store is unreachable: keep training while the lease may still be valid.
            if time.monotonic() - self._last_renewal > self.lease_seconds:
                self.mark_lost(f"could not renew for {self.lease_seconds:g} s ({exc})")
            else:
                log.warning("job %s: lease renewal failed, will retry: %s", self.job_id, exc)
            return
        if not status.held:
            self.mark_lost(f"the job is {status.state}")
            return
        self._last_renewal = time.monotonic()
        if status.cancel_requested and not self.cancel_requested:
            log.info("job %s: cancel requested", self.job_id)
            self.cancel_requested = True

    def _run(self) -> None:
        while not self._stop.wait(self.heartbeat_seconds):
            self.renew()
            if self.lost:
                return
