"""Pipelines: a request may wait for others (their success, or their end);
while it does it is blocked, and counts the dependencies not yet met.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the dependencies table and the count of those a request waits for."""
    op.create_table(
        "dependencies",
        sa.Column("work_request_id", sa.String(40), nullable=False),
        sa.Column("depends_on", sa.String(40), nullable=False),
        sa.Column("needs", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("work_request_id", "depends_on"),
    )
    op.create_index("ix_dependencies_depends_on", "dependencies", ["depends_on"])
    with op.batch_alter_table("work_requests") as table:
        table.add_column(sa.Column("waiting", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    """Drop them again (a blocked request would be stranded: none may be left)."""
    with op.batch_alter_table("work_requests") as table:
        table.drop_column("waiting")
    op.drop_index("ix_dependencies_depends_on", "dependencies")
    op.drop_table("dependencies")
