"""An index for the reconciler: queued jobs by last dispatch, so a pass reads only the slots it sends.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_jobs_state_dispatched", "jobs", ["state", "dispatched_at", "created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_jobs_state_dispatched", table_name="jobs")
