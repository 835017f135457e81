"""The history of each work request's attempts; indexes that answer a
filtered list newest first, and counts by state and task, without sorting
or reading every row.

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

#: Columns a list filters by that had an index of their own.
LISTED_BY = ("state", "task_name", "owner")


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
    for column in LISTED_BY:
        op.drop_index(f"ix_work_requests_{column}", "work_requests")
        op.create_index(f"ix_work_requests_{column}_id", "work_requests", [column, "id"])
    op.create_index("ix_work_requests_worker_name_id", "work_requests", ["worker_name", "id"])
    op.create_index("ix_work_requests_state_task", "work_requests", ["state", "task_name"])


def downgrade() -> None:
    """Drop them again."""
    op.drop_index("ix_work_requests_state_task", "work_requests")
    op.drop_index("ix_work_requests_worker_name_id", "work_requests")
    for column in LISTED_BY:
        op.drop_index(f"ix_work_requests_{column}_id", "work_requests")
        op.create_index(f"ix_work_requests_{column}", "work_requests", [column])
    op.drop_table("attempts")
