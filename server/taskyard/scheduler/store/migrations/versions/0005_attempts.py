"""The history of each work request's attempts; counts by state and task.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from taskyard.scheduler.store.schema import UtcDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the attempts table (requests from before have no history) and an
    index that answers counts by state and task without reading the rows."""
    op.create_table(
        "attempts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("work_request_id", sa.String(40), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("worker_name", sa.String(200), nullable=False),
        sa.Column("assigned_at", UtcDateTime),
        sa.Column("started_at", UtcDateTime),
        sa.Column("ended_at", UtcDateTime, nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("result", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
    )
    op.create_index("ix_attempts_work_request_id", "attempts", ["work_request_id"])
    op.create_index("ix_work_requests_state_task", "work_requests", ["state", "task_name"])


def downgrade() -> None:
    """Drop them again."""
    op.drop_index("ix_work_requests_state_task", "work_requests")
    op.drop_table("attempts")
