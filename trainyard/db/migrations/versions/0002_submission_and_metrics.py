"""Jobs keep what their submitter recorded beside the spec, and every metric of every output.

* ``jobs.context``: the submission's data fingerprint and data roots (and later what else a submitter
  records), which older versions stored inside the spec document under magic keys. Those keys are moved
  out here, so a spec document holds the spec alone (two submits of one spec on changed data now share
  one ``specs`` row).
* ``jobs.val_metrics`` / ``jobs.test_metrics``: ``{output: {metric: value}}``; filled from
  ``val_mse``/``test_mse`` for the jobs already stored.
* ``jobs.best_epoch`` / ``jobs.stopped_epoch``: for runs that stop before their last epoch.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

#: The keys older versions added to a stored spec document at submit.
_LEGACY_KEYS = ("data_fingerprint", "data_roots")

_specs = sa.table(
    "specs",
    sa.column("id", sa.Integer),
    sa.column("content_hash", sa.String),
    sa.column("document", sa.JSON),
)
_jobs = sa.table(
    "jobs",
    sa.column("id", sa.Integer),
    sa.column("spec_id", sa.Integer),
    sa.column("context", sa.JSON),
    sa.column("val_mse", sa.JSON),
    sa.column("test_mse", sa.JSON),
    sa.column("val_metrics", sa.JSON),
    sa.column("test_metrics", sa.JSON),
)


def _hash(document: dict[str, Any]) -> str:
    # the same canonical form as trainyard.db.store.spec_hash (kept here: a migration must not change
    # when the code does)
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _as_metrics(mse: Any) -> dict[str, dict[str, Any]]:
    return {str(name): {"mse": value} for name, value in (mse or {}).items()}


def upgrade() -> None:
    empty = sa.text("'{}'")
    op.add_column("jobs", sa.Column("context", sa.JSON(), nullable=False, server_default=empty))
    op.add_column("jobs", sa.Column("val_metrics", sa.JSON(), nullable=False, server_default=empty))
    op.add_column("jobs", sa.Column("test_metrics", sa.JSON(), nullable=False, server_default=empty))
    op.add_column("jobs", sa.Column("best_epoch", sa.Integer(), nullable=True))
    op.add_column("jobs", sa.Column("stopped_epoch", sa.Integer(), nullable=True))

    bind = op.get_bind()
    for job_id, val_mse, test_mse in bind.execute(sa.select(_jobs.c.id, _jobs.c.val_mse, _jobs.c.test_mse)).all():
        bind.execute(
            _jobs.update()
            .where(_jobs.c.id == job_id)
            .values(val_metrics=_as_metrics(val_mse), test_metrics=_as_metrics(test_mse))
        )

    by_hash = {digest: spec_id for spec_id, digest in bind.execute(sa.select(_specs.c.id, _specs.c.content_hash))}
    legacy = [
        (spec_id, document)
        for spec_id, document in bind.execute(sa.select(_specs.c.id, _specs.c.document)).all()
        if isinstance(document, dict) and any(key in document for key in _LEGACY_KEYS)
    ]
    for spec_id, document in legacy:
        context = {key: document[key] for key in _LEGACY_KEYS if key in document}
        spec = {key: value for key, value in document.items() if key not in _LEGACY_KEYS}
        digest = _hash(spec)
        bind.execute(_jobs.update().where(_jobs.c.spec_id == spec_id).values(context=context))
        same = by_hash.get(digest)
        if same is not None and same != spec_id:
            # the same spec, stored again only because its data fingerprint differed: one row now
            bind.execute(_jobs.update().where(_jobs.c.spec_id == spec_id).values(spec_id=same))
            bind.execute(_specs.delete().where(_specs.c.id == spec_id))
        else:
            bind.execute(_specs.update().where(_specs.c.id == spec_id).values(document=spec, content_hash=digest))
            by_hash[digest] = spec_id


def downgrade() -> None:
    # The moved keys go back into the documents only where one spec row serves one context; the
    # metrics columns are dropped (val_mse/test_mse still hold the regression outputs' values).
    bind = op.get_bind()
    rows = bind.execute(sa.select(_jobs.c.spec_id, _jobs.c.context)).all()
    contexts: dict[int, list[Any]] = {}
    for spec_id, context in rows:
        contexts.setdefault(spec_id, []).append(context or {})
    for spec_id, found in contexts.items():
        unique = {json.dumps(c, sort_keys=True) for c in found}
        if len(unique) != 1 or not found[0]:
            continue
        document = bind.execute(sa.select(_specs.c.document).where(_specs.c.id == spec_id)).scalar_one()
        merged = {**document, **found[0]}
        bind.execute(_specs.update().where(_specs.c.id == spec_id).values(document=merged, content_hash=_hash(merged)))
    with op.batch_alter_table("jobs") as batch:
        for column in ("stopped_epoch", "best_epoch", "test_metrics", "val_metrics", "context"):
            batch.drop_column(column)
