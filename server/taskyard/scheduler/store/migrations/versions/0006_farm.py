"""Several schedulers on one database: each one's heartbeat, the lease that
elects the one that runs maintenance, which scheduler holds each worker's
session, and keys that make declaring an artifact safe to repeat.

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
    """Add the schedulers and leases tables, workers.scheduler ('' for none)
    and artifacts.idempotency_key (unique to its creator)."""
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
    with op.batch_alter_table("artifacts") as table:
        table.add_column(sa.Column("idempotency_key", sa.String(200)))
        table.create_index(
            "uq_artifacts_idempotency_key", ["created_by", "idempotency_key"], unique=True
        )


def downgrade() -> None:
    """Drop them again."""
    with op.batch_alter_table("artifacts") as table:
        table.drop_index("uq_artifacts_idempotency_key")
        table.drop_column("idempotency_key")
    with op.batch_alter_table("workers") as table:
        table.drop_column("scheduler")
    op.drop_table("leases")
    op.drop_table("schedulers")
