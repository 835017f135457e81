"""Who submitted each work request, and who created each artifact.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the owner and creator columns; rows from before have none ('')."""
    with op.batch_alter_table("work_requests") as table:
        table.add_column(sa.Column("owner", sa.String(120), nullable=False, server_default=""))
        table.create_index("ix_work_requests_owner", ["owner"])
    with op.batch_alter_table("artifacts") as table:
        table.add_column(sa.Column("created_by", sa.String(120), nullable=False, server_default=""))
        table.create_index("ix_artifacts_created_by", ["created_by"])


def downgrade() -> None:
    """Drop them again."""
    with op.batch_alter_table("artifacts") as table:
        table.drop_index("ix_artifacts_created_by")
        table.drop_column("created_by")
    with op.batch_alter_table("work_requests") as table:
        table.drop_index("ix_work_requests_owner")
        table.drop_column("owner")
