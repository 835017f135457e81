"""How each work request's last attempt ended, as its task reported it.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the details column; rows from before have none ('')."""
    with op.batch_alter_table("work_requests") as table:
        table.add_column(sa.Column("details_json", sa.Text, nullable=False, server_default=""))


def downgrade() -> None:
    """Drop it again."""
    with op.batch_alter_table("work_requests") as table:
        table.drop_column("details_json")
