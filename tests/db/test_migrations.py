"""Upgrading a store written by an older trainyard keeps every job and moves its data to the new columns."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from trainyard.db import Store
from trainyard.db import engine as _engine

OLD_SPEC = {"name": "mlp", "data": {"source": "builtin:diabetes"}, "training": {"epochs": 3}}

_SPECS = sa.table(
    "specs",
    sa.column("id", sa.Integer),
    sa.column("name", sa.String),
    sa.column("content_hash", sa.String),
    sa.column("document", sa.JSON),
    sa.column("created_at", sa.DateTime),
)
_JOBS = sa.table(
    "jobs",
    *(sa.column(name, sa.Integer) for name in ("id", "spec_id", "priority", "attempts", "max_attempts")),
    *(sa.column(name, sa.Integer) for name in ("epochs_total", "epochs_done")),
    sa.column("name", sa.String),
    sa.column("state", sa.String),
    sa.column("cancel_requested", sa.Boolean),
    sa.column("created_at", sa.DateTime),
    sa.column("updated_at", sa.DateTime),
    sa.column("val_mse", sa.JSON),
    sa.column("test_mse", sa.JSON),
)


def _database_at(url: str, revision: str) -> None:
    """Create the schema of ``revision`` (an older trainyard's) in the empty database at ``url``."""
    from alembic import command

    with _engine.engines_for(url).write.begin() as connection:
        command.upgrade(_engine._alembic_config(connection), revision)


def _old_job(conn: sa.Connection, document: dict, n: int) -> int:
    """A spec row and a succeeded job as trainyard 0001 wrote them."""
    now = datetime(2026, 11, 30, 12, 0)
    spec_id = conn.execute(
        _SPECS.insert()
        .values(name=document["name"], content_hash=f"old-hash-{n}", document=document, created_at=now)
        .returning(_SPECS.c.id)
    ).scalar_one()
    values = dict(spec_id=spec_id, name=document["name"], state="succeeded", priority=0, attempts=1)
    values.update(max_attempts=3, epochs_total=3, epochs_done=3, cancel_requested=False)
    values.update(created_at=now, updated_at=now, val_mse={"y": 0.5 * n}, test_mse={"y": n})
    return conn.execute(_JOBS.insert().values(**values).returning(_JOBS.c.id)).scalar_one()


def test_a_0001_store_upgrades_with_its_jobs_contexts_and_metrics(db_url: str) -> None:
    _database_at(db_url, "0001")
    # Two submits of one spec on data that changed in between: 0001 stored the fingerprint inside the
    # spec document, hence two spec rows. A third spec row carries no extra key at all.
    legacy = [
        {**OLD_SPEC, "data_fingerprint": "f1", "data_roots": ["/data"]},
        {**OLD_SPEC, "data_fingerprint": "f2", "data_roots": ["/data"]},
        {**OLD_SPEC, "name": "plain"},
    ]
    with _engine.engines_for(db_url).write.begin() as conn:
        ids = [_old_job(conn, document, n) for n, document in enumerate(legacy, start=1)]
    _engine.dispose_all()  # a new trainyard process opens the old store

    store = Store.open(db_url)

    first, second, plain = (store.get_job(i) for i in ids)
    assert first.spec_document == second.spec_document == OLD_SPEC  # the spec alone
    assert first.spec_id == second.spec_id != plain.spec_id  # the same spec is one row now
    assert first.submission is not None and second.submission is not None and plain.submission is not None
    assert (first.submission.data_fingerprint, second.submission.data_fingerprint) == ("f1", "f2")
    assert first.submission.data_roots == second.submission.data_roots == ("/data",)
    assert plain.submission.data_fingerprint is None and plain.submission.data_roots is None
    assert first.val_metrics == {"y": {"mse": 0.5}} and second.test_metrics == {"y": {"mse": 2}}
    assert first.val_mse == {"y": 0.5}
    assert first.spec_hash == store.get_spec(first.spec_id).content_hash
    # the same document submitted now finds the same row
    (again,) = store.add_jobs([OLD_SPEC])
    assert again.spec_id == first.spec_id


def test_a_0003_store_upgrades_keeping_every_epoch_and_accepts_pruned_jobs(db_url: str) -> None:
    _database_at(db_url, "0003")
    epochs = sa.table(
        "epoch_metrics",
        *(sa.column(name, sa.Integer) for name in ("id", "job_id", "epoch")),
        sa.column("outputs", sa.JSON),
        sa.column("recorded_at", sa.DateTime),
    )
    with _engine.engines_for(db_url).write.begin() as conn:
        job_id = _old_job(conn, OLD_SPEC, 1)
        for k in (1, 2, 3):
            conn.execute(
                epochs.insert().values(
                    job_id=job_id, epoch=k, outputs={"y": {"val_mse": k}}, recorded_at=datetime(2026, 12, 1)
                )
            )
    _engine.dispose_all()

    store = Store.open(db_url)

    assert [e.epoch for e in store.epochs(job_id)] == [1, 2, 3]  # widening the state check rebuilt nothing
    (job,) = store.add_jobs([OLD_SPEC])
    claimed = store.claim_next("w/1")
    assert claimed is not None and claimed.id == job.id
    assert store.finish(job.id, "w/1", "pruned", stopped_epoch=1).state.value == "pruned"
    assert store.get_job(job_id).sweep_id is None
