"""Artifacts and their files.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from taskyard.scheduler.store.schema import UtcDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the artifact tables."""
    op.create_table(
        "artifacts",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("category", sa.String(200), nullable=False),
        sa.Column("data_json", sa.Text, nullable=False),
        sa.Column("work_request_id", sa.String(40), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("expires_at", UtcDateTime),
        sa.Column("complete", sa.Boolean, nullable=False),
    )
    op.create_index("ix_artifacts_work_request_id", "artifacts", ["work_request_id"])
    op.create_table(
        "artifact_files",
        sa.Column(
            "artifact_id",
            sa.String(40),
            sa.ForeignKey("artifacts.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("path", sa.String(4096), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("content_type", sa.String(200), nullable=False),
        sa.Column("complete", sa.Boolean, nullable=False),
        sa.PrimaryKeyConstraint("artifact_id", "path"),
    )


def downgrade() -> None:
    """Drop the artifact tables."""
    op.drop_table("artifact_files")
    op.drop_index("ix_artifacts_work_request_id", "artifacts")
    op.drop_table("artifacts")
