"""Sweeps: a ``sweeps`` table, each job's sweep, trial number and parameters, and the ``pruned`` state.

* ``sweeps``: one row per sweep (its definition, base spec and state); its trials are ordinary jobs.
* ``jobs.sweep_id`` / ``jobs.trial`` / ``jobs.params`` / ``jobs.params_key``: a trial's sweep, number
  and parameters; unique indexes keep one job per trial number and per point of the search space.
* ``jobs.state`` may be ``pruned``. The CHECK constraint only widens, so the table is not rebuilt:
  on SQLite, rebuilding ``jobs`` would fire ``epoch_metrics``' ``ON DELETE CASCADE`` (foreign keys
  cannot be switched off inside the migration's transaction); the constraint's text is rewritten in
  the schema instead, SQLite's documented way to change a CHECK constraint that rows already satisfy.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_OLD_STATES = ("queued", "running", "succeeded", "failed", "cancelled")
_NEW_STATES = (*_OLD_STATES, "pruned")
SWEEP_STATES = ("running", "finished", "cancelled")


def _check(states: tuple[str, ...]) -> str:
    return "state IN (" + ", ".join(f"'{state}'" for state in states) + ")"


def _set_job_states(old: tuple[str, ...], new: tuple[str, ...]) -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute("ALTER TABLE jobs DROP CONSTRAINT IF EXISTS job_state")
        op.execute(f"ALTER TABLE jobs ADD CONSTRAINT job_state CHECK ({_check(new)})")
        return
    version = bind.exec_driver_sql("PRAGMA schema_version").scalar()
    bind.exec_driver_sql("PRAGMA writable_schema = ON")
    bind.execute(
        sa.text("UPDATE sqlite_master SET sql = replace(sql, :old, :new) WHERE type = 'table' AND name = 'jobs'"),
        {"old": _check(old), "new": _check(new)},
    )
    bind.exec_driver_sql(f"PRAGMA schema_version = {int(version) + 1}")
    bind.exec_driver_sql("PRAGMA writable_schema = OFF")


def upgrade() -> None:
    op.create_table(
        "sweeps",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column(
            "state",
            sa.Enum(*SWEEP_STATES, name="sweep_state", native_enum=False, create_constraint=True, length=16),
            nullable=False,
        ),
        sa.Column("definition", sa.JSON(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("context", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.add_column("jobs", sa.Column("sweep_id", sa.Integer(), sa.ForeignKey("sweeps.id")))
    else:  # alembic refuses the foreign key here, SQLite allows it on a column that defaults to null
        op.execute("ALTER TABLE jobs ADD COLUMN sweep_id INTEGER REFERENCES sweeps (id)")
    op.add_column("jobs", sa.Column("trial", sa.Integer(), nullable=True))
    op.add_column("jobs", sa.Column("params", sa.JSON(), nullable=True))
    op.add_column("jobs", sa.Column("params_key", sa.String(64), nullable=True))
    op.create_index("uq_jobs_sweep_trial", "jobs", ["sweep_id", "trial"], unique=True)
    op.create_index("uq_jobs_sweep_params", "jobs", ["sweep_id", "params_key"], unique=True)
    _set_job_states(_OLD_STATES, _NEW_STATES)


def downgrade() -> None:
    op.execute("DELETE FROM jobs WHERE state = 'pruned'")
    _set_job_states(_NEW_STATES, _OLD_STATES)
    op.drop_index("uq_jobs_sweep_params", table_name="jobs")
    op.drop_index("uq_jobs_sweep_trial", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        for column in ("params_key", "params", "trial", "sweep_id"):
            batch.drop_column(column)
    op.drop_table("sweeps")
