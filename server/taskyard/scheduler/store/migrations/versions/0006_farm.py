"""Several schedulers on one database: each one's heartbeat, the lease that
elects the one that runs maintenance, and which scheduler holds each
worker's session.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from taskyard.scheduler.store.schema import UtcDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the schedulers and leases tables and workers.scheduler ('' for none)."""
    op.create_table(
        "schedulers",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("address", sa.String(300), nullable=False),
        sa.Column("page", sa.String(300), nullable=False),
        sa.Column("started_at", UtcDateTime, nullable=False),
        sa.Column("seen_at", UtcDateTime, nullable=False),
    )
    op.create_table(
        "leases",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("term", sa.BigInteger, nullable=False),
        sa.Column("expires_at", UtcDateTime, nullable=False),
    )
    with op.batch_alter_table("workers") as table:
        table.add_column(sa.Column("scheduler", sa.String(200), nullable=False, server_default=""))


def downgrade() -> None:
    """Drop them again."""
    with op.batch_alter_table("workers") as table:
        table.drop_column("scheduler")
    op.drop_table("leases")
    op.drop_table("schedulers")
