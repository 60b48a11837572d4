"""The reconciler: the store is the truth, the broker only carries slots; this keeps them in step.

One pass (:func:`reconcile`):

1. jobs whose lease expired (their worker died: SIGKILL, power loss, lost network) are queued
   again, or end ``failed`` once they used ``max_attempts`` (``Store.requeue_expired``);
1b. every running sweep gets its next trials queued, and sweeps that are done are ended
   (:func:`trainyard.sweeps.advance`): a sweep needs nothing but workers to complete;
2. the number of queued jobs is compared with the number of messages waiting in the broker queue,
   and the missing messages are sent (``dispatch``): never-dispatched jobs first (new ones, and
   requeued or handed-back ones, whose ``dispatched_at`` is cleared), then the oldest dispatches,
   skipping jobs dispatched less than ``REDISPATCH_GRACE_SECONDS`` ago (their message may be on its
   way to a worker). Since a message is a slot (``trainyard.queue``), an extra message is harmless
   and a missing one is what loses jobs, so "at least as many messages as queued jobs" is the whole
   invariant. A Redis ``FLUSHALL``, a broker restart, or the embedded broker's lost in-flight
   message of a killed worker all heal here.

A pass costs the same with 10,000 queued jobs as with 100 (``benchmarks/reconcile_pass.py``): it
counts the queued jobs and reads only the ids of the jobs it sends, index-ordered with a ``LIMIT``.

Where it runs (the choice): in a daemon thread of every worker's parent process, every
``settings.reconcile_seconds`` (``trainyard.worker.node``), so a deployment with workers needs
nothing more; and as ``trainyard reconcile [--loop]`` for operators (or a cron job). Passes from
several workers may overlap: the store's conditional updates keep ``requeue_expired`` race-free,
and overlapping re-dispatches only add harmless extra slots.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from trainyard import defaults
from trainyard.config import Settings
from trainyard.db.records import JobState, utcnow
from trainyard.errors import BrokerError, TrainyardError
from trainyard.queue.slots import dispatch
from trainyard.queue.transport import queue_size
from trainyard.sweeps import advance

if TYPE_CHECKING:
    from trainyard.db import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Report:
    """What one reconciler pass did."""

    requeued: tuple[int, ...] = ()  # expired leases queued again
    failed: tuple[int, ...] = ()  # expired leases with no attempt left
    cancelled: tuple[int, ...] = ()  # expired leases of jobs whose cancel was requested
    queued: int = 0  # queued jobs in the store after step 1
    in_broker: int | None = None  # messages waiting in the broker queue (None: broker unreachable)
    redispatched: tuple[int, ...] = ()
    broker_error: str | None = None
    trials: tuple[int, ...] = ()  # sweep trials queued by this pass
    sweep_error: str | None = None

    @property
    def changed(self) -> bool:
        return bool(self.requeued or self.failed or self.cancelled or self.redispatched or self.trials)

    def __str__(self) -> str:
        parts = [f"{self.queued} queued", f"{'?' if self.in_broker is None else self.in_broker} in broker"]
        for label, ids in (
            ("requeued", self.requeued),
            ("failed", self.failed),
            ("cancelled", self.cancelled),
            ("re-dispatched", self.redispatched),
            ("sweep trials queued", self.trials),
        ):
            if ids:
                parts.append(f"{label} {', '.join(map(str, ids))}")
        if self.broker_error:
            parts.append(self.broker_error)
        if self.sweep_error:
            parts.append(f"sweeps: {self.sweep_error}")
        return "; ".join(parts)


def reconcile(
    store: Store,
    settings: Settings | None = None,
    *,
    now: datetime | None = None,
    grace_seconds: float = defaults.REDISPATCH_GRACE_SECONDS,
) -> Report:
    """One pass: requeue or fail expired leases, then send the broker messages queued jobs lack."""
    settings = settings or Settings.from_env()
    now = now or utcnow()
    changed = store.requeue_expired(now)
    requeued = tuple(j.id for j in changed if j.state is JobState.QUEUED)
    failed = tuple(j.id for j in changed if j.state is JobState.FAILED)
    cancelled = tuple(j.id for j in changed if j.state is JobState.CANCELLED)
    trials: tuple[int, ...] = ()
    sweep_error = None
    try:
        trials = tuple(
            job for progress in advance(store, max_attempts=settings.max_attempts) for job in progress.queued
        )
    except Exception as exc:  # a store error or a bug in one sweep: the rest of the pass still runs
        log.warning("reconciler: sweeps not advanced: %s", exc, exc_info=not isinstance(exc, TrainyardError))
        sweep_error = str(exc)
    queued = store.count_jobs(JobState.QUEUED)
    base = Report(
        requeued=requeued, failed=failed, cancelled=cancelled, queued=queued, trials=trials, sweep_error=sweep_error
    )
    if not queued and not changed:
        return base
    try:
        waiting = queue_size(settings)
    except BrokerError as exc:
        return replace(base, broker_error=str(exc))
    missing = queued - waiting
    chosen: list[int] = []
    if missing > 0:
        chosen = store.redispatch_candidates(missing, dispatched_by=now - timedelta(seconds=grace_seconds))
        if chosen:
            try:
                dispatch(chosen, settings, store=store)
            except BrokerError as exc:
                return replace(base, in_broker=waiting, broker_error=str(exc))
    report = replace(base, in_broker=waiting, redispatched=tuple(chosen))
    if report.changed:
        log.info("reconciler: %s", report)
    return report
