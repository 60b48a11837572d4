"""Jobs carry tags (queryable: one row per tag) and the lineage their worker recorded.

* ``job_tags``: ``(job_id, tag)``, deleted with its job; ``(tag, job_id)`` is the index
  ``jobs --tag``, ``compare --tag`` and ``dashboard --tag`` read.
* ``jobs.lineage``: what the worker that trained the job recorded (versions, host, devices,
  strategy); what the submitter recorded stays in ``jobs.context``.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "job_tags",
        sa.Column("job_id", sa.Integer(), sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("tag", sa.String(64), primary_key=True),
    )
    op.create_index("ix_job_tags_tag_job", "job_tags", ["tag", "job_id"])
    op.add_column("jobs", sa.Column("lineage", sa.JSON(), nullable=False, server_default=sa.text("'{}'")))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("lineage")
    op.drop_index("ix_job_tags_tag_job", table_name="job_tags")
    op.drop_table("job_tags")
