"""Initial schema: work requests, workers, tokens.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from taskyard.scheduler.store.schema import UtcDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the three tables."""
    op.create_table(
        "work_requests",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("task_name", sa.String(200), nullable=False),
        sa.Column("task_data_json", sa.Text, nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("queue_key", sa.String(40), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("result", sa.String(16), nullable=False),
        sa.Column("output_json", sa.Text, nullable=False),
        sa.Column("error_reason", sa.String(100)),
        sa.Column("error_type", sa.String(200)),
        sa.Column("error_message", sa.Text),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("worker_name", sa.String(200), nullable=False),
        sa.Column("timeout_seconds", sa.Float),
        sa.Column("idempotency_key", sa.String(200), unique=True),
        sa.Column("trace_context_json", sa.Text, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("assigned_at", UtcDateTime),
        sa.Column("started_at", UtcDateTime),
        sa.Column("completed_at", UtcDateTime),
        sa.Column("updated_at", UtcDateTime),
        sa.Column("abort_requested_at", UtcDateTime),
    )
    op.create_index("ix_work_requests_state", "work_requests", ["state"])
    op.create_index("ix_work_requests_task_name", "work_requests", ["task_name"])
    op.create_table(
        "workers",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("token_sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("slots", sa.Integer, nullable=False),
        sa.Column("dynamic_metadata_json", sa.Text, nullable=False),
        sa.Column("static_metadata_json", sa.Text, nullable=False),
        sa.Column("allowed_tasks_json", sa.Text, nullable=False),
        sa.Column("denied_tasks_json", sa.Text, nullable=False),
        sa.Column("registered_at", UtcDateTime, nullable=False),
        sa.Column("last_seen_at", UtcDateTime),
    )
    op.create_table(
        "tokens",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("secret_sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("expires_at", UtcDateTime),
        sa.Column("used_at", UtcDateTime),
        sa.Column("revoked_at", UtcDateTime),
    )


def downgrade() -> None:
    """Drop the three tables."""
    op.drop_table("tokens")
    op.drop_table("workers")
    op.drop_index("ix_work_requests_task_name", "work_requests")
    op.drop_index("ix_work_requests_state", "work_requests")
    op.drop_table("work_requests")
