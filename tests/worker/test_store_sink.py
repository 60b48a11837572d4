"""The worker's StoreSink writes epochs in a thread of its own: all of them, in order, once flushed."""

from __future__ import annotations

from trainyard.config import Settings
from trainyard.db import JobState, Store
from trainyard.worker.lease import Lease
from trainyard.worker.runner import StoreSink

OWNER = "test@host/1"


def _claimed(store: Store, epochs: int) -> int:
    (job,) = store.add_jobs([{"name": "sink", "training": {"epochs": epochs}}])
    assert store.claim_next(OWNER) is not None
    return job.id


def _metrics(epoch: int) -> dict:
    return {"epoch": epoch, "loss": 1.0 / epoch, "val_loss": 2.0 / epoch, "outputs": {"y": {"loss": 1.0 / epoch, "val_mse": 2.0 / epoch}}}


def test_every_epoch_is_stored_in_order_once_flushed(settings: Settings) -> None:
    store = Store.open(settings.db_url)
    job_id = _claimed(store, 40)
    lease = Lease(store, job_id, OWNER, 60, 30).start()
    sink = StoreSink(store, job_id, OWNER, lease)
    for epoch in range(1, 41):
        sink.on_epoch(_metrics(epoch))
    sink.flush()
    assert [e.epoch for e in store.epochs(job_id)] == list(range(1, 41))
    assert store.get_job(job_id).epochs_done == 40 and store.get_job(job_id).val_mse == {"y": 2.0 / 40}
    sink.close()
    lease.stop()


def test_a_lease_taken_by_another_worker_stops_the_training(settings: Settings) -> None:
    store = Store.open(settings.db_url)
    job_id = _claimed(store, 5)
    lease = Lease(store, job_id, OWNER, 60, 30).start()
    sink = StoreSink(store, job_id, OWNER, lease)
    sink.on_epoch(_metrics(1))
    sink.flush()
    store.finish(job_id, OWNER, JobState.FAILED, error="taken away")  # the job is no longer ours
    sink.on_epoch(_metrics(2))
    sink.flush()
    assert lease.lost and sink.should_stop()
    assert [e.epoch for e in store.epochs(job_id)] == [1]
    sink.close()
    lease.stop()
