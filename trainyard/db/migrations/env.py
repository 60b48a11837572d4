"""Alembic environment of the job store, run programmatically by :func:`trainyard.db.engine.ensure_schema`.

The caller hands over an open connection (``config.attributes["connection"]``) that already holds
the migration lock (``BEGIN IMMEDIATE`` on SQLite, an advisory lock on PostgreSQL), so several
processes opening a fresh database at once run the migrations exactly once.
"""

from __future__ import annotations

from alembic import context

from trainyard.db.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "trainyard's migrations run when trainyard opens a store (trainyard.db.engine.ensure_schema), not from the alembic CLI"
    )

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
