"""The store contract, run against every backend (``db_url``: a SQLite file, then PostgreSQL)."""

from __future__ import annotations

import dataclasses
import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa

from trainyard import defaults
from trainyard.db import JobState, LeaseLost, Store, Submission, WorkerState, spec_hash, utcnow
from trainyard.errors import InvalidTransition, JobNotFound, StoreError, StoreUnavailable


def doc(name: str = "mlp", epochs: int = 3, **extra: object) -> dict:
    """A stand-in for ``JobSpec.document()``: the store only reads ``name`` and ``training.epochs``."""
    return {"name": name, "training": {"epochs": epochs}, "layers": [{"units": 8}], **extra}


def epoch(k: int, val_mse: float = 0.5, loss: float = 1.0) -> dict:
    return {"epoch": k, "loss": loss, "val_loss": val_mse, "outputs": {"price": {"loss": loss, "val_mse": val_mse}}}


@pytest.fixture
def store(db_url: str) -> Store:
    return Store.open(db_url)


def running(store: Store, owner: str = "w1", **kwargs: object) -> int:
    store.add_jobs([doc(**kwargs)])  # type: ignore[arg-type]
    job = store.claim_next(owner, lease_seconds=60)
    assert job is not None
    return job.id


# ---------------------------------------------------------------- storing


def test_add_jobs_queues_one_job_per_document_and_stores_identical_specs_once(store: Store) -> None:
    jobs = store.add_jobs([doc("a", 5), doc("a", 5), doc("b", 2)], priority=3, max_attempts=4)

    assert [(j.name, j.state, j.priority, j.max_attempts, j.epochs_total) for j in jobs] == [
        ("a", JobState.QUEUED, 3, 4, 5),
        ("a", JobState.QUEUED, 3, 4, 5),
        ("b", JobState.QUEUED, 3, 4, 2),
    ]
    assert jobs[0].spec_id == jobs[1].spec_id != jobs[2].spec_id
    # Same content, other key order, other call: still the same spec row.
    again = store.add_jobs([{"layers": [{"units": 8}], "training": {"epochs": 5}, "name": "a"}])[0]
    assert again.spec_id == jobs[0].spec_id
    assert store.get_spec(again.spec_id).content_hash == spec_hash(doc("a", 5))


def test_get_job_returns_the_spec_document_and_unknown_ids_raise(store: Store) -> None:
    job = store.add_jobs([doc("a")])[0]

    found = store.get_job(job.id)
    assert found.spec_document == doc("a")
    assert found.spec_hash == spec_hash(doc("a"))
    with pytest.raises(JobNotFound, match="no job with id 999"):
        store.get_job(999)
    with pytest.raises(JobNotFound):
        store.get_jobs([job.id, 999])


def test_records_are_frozen(store: Store) -> None:
    job = store.add_jobs([doc()])[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.state = JobState.RUNNING  # type: ignore[misc]


def test_list_jobs_newest_first_filtered_and_limited(store: Store) -> None:
    ids = [j.id for j in store.add_jobs([doc(f"j{i}") for i in range(5)])]
    store.request_cancel(ids[1])

    assert [j.id for j in store.list_jobs()] == ids[::-1]
    assert [j.id for j in store.list_jobs(limit=2)] == ids[:2:-1][:2]
    assert [j.id for j in store.list_jobs(state="cancelled")] == [ids[1]]
    assert store.count_by_state() == {
        JobState.QUEUED: 4,
        JobState.RUNNING: 0,
        JobState.SUCCEEDED: 0,
        JobState.FAILED: 0,
        JobState.CANCELLED: 1,
        JobState.PRUNED: 0,
    }


# ---------------------------------------------------------------- claiming


def test_claim_takes_highest_priority_then_oldest(store: Store) -> None:
    low = store.add_jobs([doc("low")], priority=0)[0]
    old_high = store.add_jobs([doc("high-1")], priority=5)[0]
    new_high = store.add_jobs([doc("high-2")], priority=5)[0]

    claimed = [store.claim_next("w") for _ in range(4)]

    assert [c.id if c else None for c in claimed] == [old_high.id, new_high.id, low.id, None]


def test_claim_sets_running_lease_and_attempt_and_hands_over_the_spec(store: Store) -> None:
    store.add_jobs([doc("a", 4)])
    before = utcnow()

    job = store.claim_next("worker-1", lease_seconds=30)

    assert job is not None
    assert job.state is JobState.RUNNING
    assert job.attempts == 1
    assert job.lease_owner == "worker-1"
    assert job.lease_expires_at is not None and job.lease_expires_at >= before + timedelta(seconds=30)
    assert job.started_at is not None and job.started_at >= before
    assert job.spec_document == doc("a", 4)


def test_a_finished_job_cannot_be_claimed(store: Store) -> None:
    job_id = running(store)
    store.finish(job_id, "w1", JobState.SUCCEEDED)

    assert store.claim_next("w2") is None
    assert store.get_job(job_id).state is JobState.SUCCEEDED


def test_concurrent_claimers_never_get_the_same_job(store: Store) -> None:
    jobs = store.add_jobs([doc(f"j{i}") for i in range(30)])
    claimed: list[int] = []
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def claimer(name: str) -> None:
        try:
            start.wait()
            while (job := store.claim_next(name)) is not None:
                claimed.append(job.id)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert sorted(claimed) == sorted(j.id for j in jobs)
    assert all(j.attempts == 1 for j in store.list_jobs())


# ---------------------------------------------------------------- leases and epochs


def test_renew_lease_extends_it_and_reports_a_cancel_request(store: Store) -> None:
    job_id = running(store)
    first = store.get_job(job_id).lease_expires_at

    status = store.renew_lease(job_id, "w1", lease_seconds=600)
    assert status.held and not status.cancel_requested
    assert status.expires_at is not None and first is not None and status.expires_at > first
    assert store.get_job(job_id).lease_expires_at == status.expires_at

    store.request_cancel(job_id)
    status = store.renew_lease(job_id, "w1", lease_seconds=600)
    assert status.held and status.cancel_requested


def test_renew_lease_by_another_worker_says_the_lease_is_not_held(store: Store) -> None:
    job_id = running(store, owner="w1")
    expires = store.get_job(job_id).lease_expires_at

    status = store.renew_lease(job_id, "w2", lease_seconds=600)

    assert not status.held
    assert store.get_job(job_id).lease_expires_at == expires
    with pytest.raises(JobNotFound):
        store.renew_lease(12345, "w1")


def test_record_epoch_stores_an_epoch_once_and_tracks_progress(store: Store) -> None:
    job_id = running(store, epochs=3)

    assert store.record_epoch(job_id, "w1", epoch(1, val_mse=0.9)) is True
    assert store.record_epoch(job_id, "w1", epoch(1, val_mse=0.1)) is False  # a replay changes nothing
    assert store.record_epoch(job_id, "w1", epoch(2, val_mse=0.4)) is True

    epochs = store.epochs(job_id)
    assert [(e.epoch, e.val_mse) for e in epochs] == [(1, {"price": 0.9}), (2, {"price": 0.4})]
    job = store.get_job(job_id)
    assert (job.epochs_done, job.epochs_total, job.val_mse) == (2, 3, {"price": 0.4})


def test_record_epochs_stores_several_epochs_in_order_in_one_call(store: Store) -> None:
    job_id = running(store, epochs=5)
    store.record_epoch(job_id, "w1", epoch(1, val_mse=0.9))

    # epoch 1 again (a replay) changes nothing; 2 to 4 are new, in order
    stored = store.record_epochs(job_id, "w1", [epoch(1, val_mse=0.1), *(epoch(k, val_mse=1 / k) for k in (2, 3, 4))])

    assert stored == 3
    epochs = store.epochs(job_id)
    assert [(e.epoch, e.val_mse) for e in epochs] == [(1, {"price": 0.9})] + [(k, {"price": 1 / k}) for k in (2, 3, 4)]
    assert [e.id for e in epochs] == sorted(e.id for e in epochs)  # ids follow the epochs (sweeps rely on it)
    job = store.get_job(job_id)
    assert (job.epochs_done, job.val_mse) == (4, {"price": 0.25})
    assert store.record_epochs(job_id, "w1", []) == 0
    with pytest.raises(LeaseLost):
        store.record_epochs(job_id, "w2", [epoch(5)])
    assert store.get_job(job_id).epochs_done == 4


def test_record_epoch_stores_non_finite_values_as_null(store: Store) -> None:
    job_id = running(store)

    store.record_epoch(job_id, "w1", epoch(1, val_mse=float("inf"), loss=float("nan")))

    [stored] = store.epochs(job_id)
    assert stored.loss is None and stored.val_mse == {"price": None}


def test_a_worker_without_the_lease_cannot_write(store: Store) -> None:
    job_id = running(store, owner="w1")

    with pytest.raises(LeaseLost, match="w2 no longer holds"):
        store.record_epoch(job_id, "w2", epoch(1))
    with pytest.raises(LeaseLost):
        store.finish(job_id, "w2", JobState.SUCCEEDED)
    with pytest.raises(LeaseLost):
        store.release(job_id, "w2")
    assert store.epochs(job_id) == []
    assert store.get_job(job_id).state is JobState.RUNNING


def test_finish_records_results_and_frees_the_lease(store: Store) -> None:
    job_id = running(store)
    store.record_epoch(job_id, "w1", epoch(1, val_mse=0.3))

    done = store.finish(job_id, "w1", "succeeded", test_mse={"price": 0.35}, model_path="/m/1.keras")

    assert done.state is JobState.SUCCEEDED
    assert (done.test_mse, done.val_mse, done.model_path, done.error) == (
        {"price": 0.35},
        {"price": 0.3},
        "/m/1.keras",
        None,
    )
    assert done.finished_at is not None and done.lease_expires_at is None
    with pytest.raises(LeaseLost):  # finishing twice is refused
        store.finish(job_id, "w1", JobState.FAILED, error="again")


def test_every_metric_of_every_output_is_kept_per_epoch_and_at_the_end(store: Store) -> None:
    job_id = running(store)
    store.record_epoch(
        job_id,
        "w1",
        {
            "epoch": 1,
            "loss": 1.0,
            "val_loss": 0.9,
            "outputs": {"price": {"loss": 0.7, "val_mse": 0.4}, "kind": {"loss": 0.3}},
            "val_metrics": {"price": {"mse": 0.4, "mae": 0.5}, "kind": {"log_loss": 0.6, "accuracy": float("nan")}},
        },
    )

    (stored,) = store.epochs(job_id)
    assert stored.val_metrics == {"price": {"mse": 0.4, "mae": 0.5}, "kind": {"log_loss": 0.6, "accuracy": None}}
    assert stored.val_mse == {"price": 0.4}  # only regression outputs have an MSE
    job = store.get_job(job_id)
    assert job.val_metrics == stored.val_metrics and job.val_mse == {"price": 0.4}
    assert job.output_names == ["price", "kind"]

    done = store.finish(
        job_id,
        "w1",
        JobState.SUCCEEDED,
        val_metrics={"price": {"mse": 0.35, "mae": 0.45}, "kind": {"log_loss": 0.5}},
        test_metrics={"price": {"mse": 0.37}, "kind": {"log_loss": 0.55, "accuracy": 0.8}},
        best_epoch=1,
        stopped_epoch=1,
    )
    assert done.val_mse == {"price": 0.35} and done.test_mse == {"price": 0.37}
    assert done.test_metrics["kind"] == {"log_loss": 0.55, "accuracy": 0.8}
    assert (done.best_epoch, done.stopped_epoch) == (1, 1)

    # a retry forgets all of it
    failed_id = running(store, owner="w2")
    store.finish(failed_id, "w2", JobState.FAILED, test_metrics={"price": {"mse": 1.0}}, best_epoch=3)
    retried = store.retry(failed_id)
    assert (retried.val_metrics, retried.test_metrics, retried.best_epoch, retried.stopped_epoch) == (
        {},
        {},
        None,
        None,
    )


def test_an_epoch_with_only_a_val_mse_reports_it_as_the_mse_metric(store: Store) -> None:
    job_id = running(store)
    store.record_epoch(job_id, "w1", epoch(1, val_mse=0.25))

    assert store.epochs(job_id)[0].val_metrics == {"price": {"mse": 0.25}}
    assert store.get_job(job_id).val_metrics == {"price": {"mse": 0.25}}


def test_a_submission_travels_with_its_job_to_the_worker(store: Store) -> None:
    submitted = Submission(spec=doc("a"), data_fingerprint="abc", data_roots=("/data", "/more"))
    (queued,) = store.add_jobs([submitted])

    claimed = store.claim_next("w1")

    assert claimed is not None and claimed.submission == submitted
    assert store.get_job(queued.id).submission == submitted
    assert store.get_job(queued.id).spec_document == doc("a")  # the spec alone
    assert store.list_jobs()[0].submission is None  # list queries do not read the spec
    # a bare document is a submission that recorded nothing
    (bare,) = store.add_jobs([doc("b")])
    assert store.get_job(bare.id).submission == Submission(spec=doc("b"))


def test_finish_with_a_failure_keeps_the_error(store: Store) -> None:
    job_id = running(store)

    failed = store.finish(job_id, "w1", JobState.FAILED, error="epoch 7: loss is nan")

    assert failed.state is JobState.FAILED and failed.error == "epoch 7: loss is nan"


def test_finish_refuses_a_state_that_is_not_terminal(store: Store) -> None:
    job_id = running(store)
    with pytest.raises(InvalidTransition, match="received queued"):
        store.finish(job_id, "w1", JobState.QUEUED)


def test_release_queues_the_job_again_without_using_an_attempt(store: Store) -> None:
    job_id = running(store)
    store.record_epoch(job_id, "w1", epoch(1))

    released = store.release(job_id, "w1")

    assert (released.state, released.attempts, released.lease_owner, released.epochs_done) == (
        JobState.QUEUED,
        0,
        None,
        1,
    )
    again = store.claim_next("w2")
    assert again is not None and again.id == job_id and again.attempts == 1


def test_release_of_a_job_with_a_cancel_request_cancels_it(store: Store) -> None:
    job_id = running(store)
    store.request_cancel(job_id)

    assert store.release(job_id, "w1").state is JobState.CANCELLED


# ---------------------------------------------------------------- lost workers


def test_requeue_expired_takes_back_only_expired_leases(store: Store) -> None:
    expired_id = running(store, owner="w1", name="a")
    store.add_jobs([doc("b")])
    fresh = store.claim_next("w2", lease_seconds=3600)
    assert fresh is not None

    changed = store.requeue_expired(utcnow() + timedelta(seconds=120))

    assert [j.id for j in changed] == [expired_id]
    requeued = store.get_job(expired_id)
    assert (requeued.state, requeued.attempts, requeued.lease_owner) == (JobState.QUEUED, 1, None)
    assert "lease of w1 expired" in (requeued.error or "")
    assert store.get_job(fresh.id).state is JobState.RUNNING
    # The old owner has lost it: its writes are refused, and its renewal says so.
    with pytest.raises(LeaseLost):
        store.record_epoch(expired_id, "w1", epoch(1))
    assert not store.renew_lease(expired_id, "w1").held


def test_requeue_expired_fails_a_job_once_its_attempts_are_used_up(store: Store) -> None:
    store.add_jobs([doc()], max_attempts=2)
    for worker in ("w1", "w2"):
        job = store.claim_next(worker, lease_seconds=1)
        assert job is not None
        store.requeue_expired(utcnow() + timedelta(seconds=10))

    final = store.get_job(job.id)
    assert final.state is JobState.FAILED
    assert final.attempts == 2
    assert final.error is not None and final.error.startswith("worker lost 2 times: lease of w2 expired")
    assert store.claim_next("w3") is None


def test_requeue_expired_cancels_a_job_whose_cancel_was_requested(store: Store) -> None:
    job_id = running(store)
    store.request_cancel(job_id)

    store.requeue_expired(utcnow() + timedelta(seconds=120))

    assert store.get_job(job_id).state is JobState.CANCELLED


def test_a_requeued_job_keeps_its_epochs_and_ignores_replayed_ones(store: Store) -> None:
    job_id = running(store, owner="w1", epochs=3)
    store.record_epoch(job_id, "w1", epoch(1, val_mse=0.8))
    store.requeue_expired(utcnow() + timedelta(seconds=120))
    again = store.claim_next("w2")
    assert again is not None and again.id == job_id and again.epochs_done == 1

    assert store.record_epoch(job_id, "w2", epoch(1, val_mse=0.1)) is False
    assert store.record_epoch(job_id, "w2", epoch(2, val_mse=0.5)) is True
    assert [e.val_mse["price"] for e in store.epochs(job_id)] == [0.8, 0.5]


# ---------------------------------------------------------------- cancel and retry


def test_cancel_a_queued_job_at_once(store: Store) -> None:
    job = store.add_jobs([doc()])[0]

    cancelled = store.request_cancel(job.id)

    assert cancelled.state is JobState.CANCELLED and cancelled.finished_at is not None
    assert store.claim_next("w1") is None


def test_cancel_a_running_job_only_requests_it(store: Store) -> None:
    job_id = running(store)

    job = store.request_cancel(job_id)

    assert job.state is JobState.RUNNING and job.cancel_requested
    assert store.finish(job_id, "w1", JobState.CANCELLED).state is JobState.CANCELLED


def test_cancel_a_finished_or_unknown_job_is_refused(store: Store) -> None:
    job_id = running(store)
    store.finish(job_id, "w1", JobState.SUCCEEDED)

    with pytest.raises(InvalidTransition, match="already succeeded"):
        store.request_cancel(job_id)
    with pytest.raises(JobNotFound):
        store.request_cancel(4242)


def test_retry_queues_a_failed_job_from_scratch(store: Store) -> None:
    job_id = running(store)
    store.record_epoch(job_id, "w1", epoch(1))
    store.finish(job_id, "w1", JobState.FAILED, error="boom", test_mse={"price": 1.0})

    retried = store.retry(job_id)

    assert retried.state is JobState.QUEUED
    assert (retried.attempts, retried.epochs_done, retried.error, retried.val_mse, retried.test_mse) == (
        0,
        0,
        None,
        {},
        {},
    )
    assert store.epochs(job_id) == []
    assert store.claim_next("w2") is not None


def test_retry_a_cancelled_job_but_not_a_queued_running_or_succeeded_one(store: Store) -> None:
    queued, _other = store.add_jobs([doc("a"), doc("b")])
    with pytest.raises(InvalidTransition, match="only failed or cancelled"):
        store.retry(queued.id)
    store.request_cancel(queued.id)
    assert store.retry(queued.id).state is JobState.QUEUED

    job = store.claim_next("w1")
    assert job is not None
    with pytest.raises(InvalidTransition, match="is running"):
        store.retry(job.id)
    store.finish(job.id, "w1", JobState.SUCCEEDED)
    with pytest.raises(InvalidTransition, match="is succeeded"):
        store.retry(job.id)
    with pytest.raises(JobNotFound):
        store.retry(4242)


def test_mark_dispatched(store: Store) -> None:
    a, b = store.add_jobs([doc("a"), doc("b")])
    at = utcnow()

    store.mark_dispatched([a.id], at=at)

    assert store.get_job(a.id).dispatched_at == at
    assert store.get_job(b.id).dispatched_at is None


def test_count_jobs_counts_one_state(store: Store) -> None:
    *_, last = store.add_jobs([doc("a"), doc("b"), doc("c")])
    store.request_cancel(last.id)
    store.claim_next("w1/1")

    assert (store.count_jobs(JobState.QUEUED), store.count_jobs("running"), store.count_jobs("cancelled")) == (1, 1, 1)
    assert store.count_jobs(JobState.SUCCEEDED) == 0


def test_redispatch_candidates_never_dispatched_oldest_first_then_oldest_dispatch(store: Store) -> None:
    now = utcnow()
    older_new = store.add_jobs([doc("older")])[0].id  # two submits: two creation times
    newer_new = store.add_jobs([doc("newer")])[0].id
    late, early, recent = (j.id for j in store.add_jobs([doc("late"), doc("early"), doc("recent")]))
    store.mark_dispatched([late], at=now - timedelta(minutes=5))
    store.mark_dispatched([early], at=now - timedelta(minutes=10))
    store.mark_dispatched([recent], at=now - timedelta(seconds=1))  # its message may still be on its way
    busy = store.add_jobs([doc("busy")], priority=9)[0].id
    store.mark_dispatched([busy], at=now - timedelta(minutes=20))
    assert store.claim_next("w1/1").id == busy  # running: its slot was used
    store.request_cancel(store.add_jobs([doc("cancelled")])[0].id)  # never dispatched, but not queued
    cutoff = now - timedelta(seconds=30)

    assert store.redispatch_candidates(10, dispatched_by=cutoff) == [older_new, newer_new, early, late]
    assert store.redispatch_candidates(3, dispatched_by=cutoff) == [older_new, newer_new, early]
    assert store.redispatch_candidates(1, dispatched_by=cutoff) == [older_new]
    assert store.redispatch_candidates(0, dispatched_by=cutoff) == []
    assert store.redispatch_candidates(10, dispatched_by=now) == [older_new, newer_new, early, late, recent]


def test_a_requeued_or_handed_back_job_counts_as_never_dispatched(store: Store) -> None:
    first, second = store.add_jobs([doc("first"), doc("second")])
    store.mark_dispatched([first.id, second.id], at=utcnow() - timedelta(minutes=10))
    claimed = store.claim_next("w1/1")
    assert claimed is not None and claimed.id == first.id
    store.release(first.id, "w1/1")  # worker shutdown: no slot left for it in the broker

    assert store.redispatch_candidates(1, dispatched_by=utcnow()) == [first.id]


def test_running_job_ids_of_one_node_read_its_owners_exactly(store: Store) -> None:
    def claim(owner: str) -> int:
        store.add_jobs([doc(owner)])
        job = store.claim_next(owner)
        assert job is not None
        return job.id

    mine = [claim("gpu_1@box/101"), claim("gpu_1@box/102")]
    claim("gpu_10@box/103")  # another node whose name starts with this one's
    claim("gpuX1@box/104")  # "_" is a LIKE wildcard: it must not match "X"
    claim("GPU_1@box/105")  # SQLite's LIKE ignores ASCII case; node names do not
    claim("gpu_1@box")  # not an owner of the <node>/<pid> form
    nested = claim("gpu_1@box/sub/106")  # the node of this owner is "gpu_1@box/sub"
    finished = claim("gpu_1@box/107")
    store.finish(finished, "gpu_1@box/107", JobState.SUCCEEDED)
    store.add_jobs([doc("queued")])

    assert store.running_job_ids("gpu_1@box") == mine[::-1]  # newest first
    assert store.running_job_ids("gpu_1@box/sub") == [nested]
    assert store.running_job_ids("nobody@box") == []


def test_owner_format_is_made_and_read_by_one_pair_of_functions() -> None:
    from trainyard.db.records import make_owner, owner_node

    assert make_owner("trainyard@gpu-box", 4242) == "trainyard@gpu-box/4242"
    assert owner_node(make_owner("trainyard@gpu-box", 4242)) == "trainyard@gpu-box"
    assert owner_node(make_owner("a/b", 1)) == "a/b"
    for other in (None, "", "alpha", "w1/", "/12", "w1/x"):
        assert owner_node(other) is None, other


# ---------------------------------------------------------------- workers


def test_worker_heartbeats_insert_then_update(store: Store) -> None:
    job_id = running(store)
    first = store.worker_heartbeat("w1", "host-a", ["/gpu:0", "/gpu:1"], WorkerState.IDLE)
    second = store.worker_heartbeat("w1", "host-a", ["/gpu:0", "/gpu:1"], "busy", current_job_id=job_id)
    store.worker_heartbeat("w0", "host-b", ["/cpu:0"], "idle")

    assert second.started_at == first.started_at
    assert second.last_heartbeat >= first.last_heartbeat
    workers = store.list_workers()
    assert [(w.name, w.host, w.devices, w.state, w.current_job_id) for w in workers] == [
        ("w0", "host-b", ["/cpu:0"], WorkerState.IDLE, None),
        ("w1", "host-a", ["/gpu:0", "/gpu:1"], WorkerState.BUSY, job_id),
    ]


def test_a_worker_coming_back_after_stopping_gets_a_new_start_time(store: Store) -> None:
    first = store.worker_heartbeat("w1", "h", [], "idle")
    store.worker_heartbeat("w1", "h", [], "stopped")

    back = store.worker_heartbeat("w1", "h", [], "idle")

    assert back.started_at > first.started_at


# ---------------------------------------------------------------- schema and errors


def test_the_migrations_create_exactly_the_models(store: Store, db_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from trainyard.db.engine import SCHEMA_REVISION, engines_for, head_revision
    from trainyard.db.models import Base

    with engines_for(db_url).read.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert context.get_current_revision() == head_revision() == SCHEMA_REVISION
        assert compare_metadata(context, Base.metadata) == []


def test_a_database_at_the_first_schema_is_upgraded_keeping_its_jobs(db_url: str) -> None:
    from alembic import command

    from trainyard.db import engine

    engines = engine.engines_for(db_url)
    with engines.write.begin() as conn:
        command.upgrade(engine._alembic_config(conn), "0001")  # as trainyard 0.1 left it
        conn.execute(
            sa.text("INSERT INTO specs (id, name, content_hash, document, created_at) VALUES (1, 'a', 'h', '{}', :t)"),
            {"t": utcnow().replace(tzinfo=None)},
        )
        conn.execute(
            sa.text(
                "INSERT INTO jobs (spec_id, name, state, priority, attempts, max_attempts, epochs_total, epochs_done,"
                " created_at, updated_at, cancel_requested, val_mse, test_mse)"
                " VALUES (1, 'a', 'queued', 0, 0, 3, 5, 0, :t, :t, false, '{}', '{}')"
            ),
            {"t": utcnow().replace(tzinfo=None)},
        )
    engine.dispose_all()

    store = Store.open(db_url)

    assert engine.current_revision(engine.engines_for(db_url)) == engine.head_revision()
    (job,) = store.list_jobs()
    assert (job.name, job.state, job.epochs_total) == ("a", JobState.QUEUED, 5)
    assert store.redispatch_candidates(5, dispatched_by=utcnow()) == [job.id]
    with engine.engines_for(db_url).read.connect() as conn:
        indexes = {index["name"] for index in sa.inspect(conn).get_indexes("jobs")}
    assert "ix_jobs_state_dispatched" in indexes


def test_the_reconciler_and_heartbeat_queries_search_an_index_and_sort_nothing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """On SQLite, whose planner says it plainly: every query of ``count_jobs``, ``redispatch_candidates``
    and ``running_job_ids`` searches an index (no scan of the jobs table) and sorts nothing (no
    temporary B-tree), so its cost does not grow with the queue (``benchmarks/reconcile_pass.py``)."""
    import sqlite3

    from trainyard.db import engine

    path = tmp_path / "plans.sqlite"
    store = Store.open(f"sqlite:///{path}")
    jobs = store.add_jobs([doc(f"j{i}") for i in range(50)])
    store.mark_dispatched([j.id for j in jobs[:40]], at=utcnow() - timedelta(minutes=1))
    statements: list[tuple[str, object]] = []

    def capture(_conn, _cursor, statement, parameters, _context, _many):  # type: ignore[no-untyped-def]
        statements.append((statement, parameters))

    read = engine.engines_for(store.url).read
    sa.event.listen(read, "before_cursor_execute", capture)
    try:
        store.count_jobs(JobState.QUEUED)
        store.redispatch_candidates(20, dispatched_by=utcnow())  # 10 never dispatched, then 10 dispatched
        store.running_job_ids("w1@box")
    finally:
        sa.event.remove(read, "before_cursor_execute", capture)
    queries = [(q, params) for q, params in statements if "FROM jobs" in q]
    assert len(queries) == 4
    with sqlite3.connect(path) as conn:
        for query, params in queries:
            plan = [row[-1] for row in conn.execute(f"EXPLAIN QUERY PLAN {query}", params)]
            assert all(step.startswith("SEARCH jobs USING") for step in plan), (query, plan)


def test_opening_again_is_a_no_op_and_keeps_the_data(store: Store, db_url: str) -> None:
    from trainyard.db import engine

    job = store.add_jobs([doc()])[0]
    engine.dispose_all()  # as a new process would

    assert Store.open(db_url).get_job(job.id).name == "mlp"


def test_an_unreachable_database_is_one_clear_error_without_the_password() -> None:
    url = "postgresql+psycopg://trainer:s3cret@127.0.0.1:9/jobs?connect_timeout=2"

    with pytest.raises(StoreError) as caught:
        Store.open(url)

    message = str(caught.value)
    assert isinstance(caught.value, StoreUnavailable)  # worth trying again: a worker waits, never fails a job
    assert message.startswith("cannot reach the job store at postgresql+psycopg://trainer:***@127.0.0.1:9/jobs")
    assert "s3cret" not in message and "\n" not in message


def test_an_unsupported_url_is_a_store_error() -> None:
    with pytest.raises(StoreError, match="unsupported database 'mysql\\+nodriver'"):
        Store.open("mysql+nodriver://x/y")


def test_sqlite_is_set_up_for_several_processes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from trainyard.db.engine import engines_for

    url = f"sqlite:///{tmp_path / 'nested' / 'store.sqlite'}"
    Store.open(url)  # creates the missing folder too

    with engines_for(url).read.connect() as conn:
        pragma = {
            name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("journal_mode", "foreign_keys", "busy_timeout", "cache_size")
        }
    assert pragma["journal_mode"] == "wal"
    assert pragma["foreign_keys"] == 1
    assert pragma["busy_timeout"] >= 15000
    assert pragma["cache_size"] == -defaults.SQLITE_CACHE_KIB  # KiB; SQLite's own default is -2000


def test_foreign_keys_are_enforced(store: Store, db_url: str) -> None:
    from trainyard.db.engine import engines_for

    with pytest.raises(sa.exc.IntegrityError):
        with engines_for(db_url).write.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO epoch_metrics (job_id, epoch, loss, outputs, recorded_at) VALUES (999, 1, 1.0, '{}', :t)"
                ),
                {"t": utcnow().replace(tzinfo=None)},
            )


def test_a_database_from_a_newer_trainyard_is_refused_with_advice(store: Store, db_url: str) -> None:
    from trainyard.db import engine

    with engine.engines_for(db_url).write.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = 'f00d'"))
    engine.dispose_all()  # as a new process would

    with pytest.raises(StoreError, match="schema revision 'f00d'.*upgrade trainyard") as caught:
        Store.open(db_url)
    assert not isinstance(caught.value, StoreUnavailable)  # waiting would not mend it


def test_a_malformed_url_or_an_unusable_folder_is_a_store_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(StoreError, match="cannot be parsed") as caught:
        Store.open("not a url")
    assert not isinstance(caught.value, StoreUnavailable)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StoreError, match="cannot reach the job store"):
        Store.open(f"sqlite:///{blocker / 'sub' / 'store.sqlite'}")


def test_a_forked_child_uses_the_store_without_breaking_the_parent(store: Store) -> None:
    import multiprocessing

    store.add_jobs([doc("before-fork")])

    def child() -> None:
        child_store = Store.open(store.url)
        child_store.add_jobs([doc("from-child")])

    process = multiprocessing.get_context("fork").Process(target=child)
    process.start()
    process.join(60)

    assert process.exitcode == 0
    assert sorted(j.name for j in store.list_jobs()) == ["before-fork", "from-child"]
