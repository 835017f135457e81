"""Tenants: the teams sharing a farm, with weights and quotas; every request,
artifact and submit token belongs to one, and a worker may be reserved for
some. What existed moves into the default tenant; an idempotency key
becomes its tenant's own.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

#: Names SQLite's unnamed unique constraint of 0001, so that it can be dropped.
NAMING = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def upgrade() -> None:
    """Add the tenants table (with the default tenant), the tenant columns,
    and the unique (tenant, idempotency_key) in place of the key alone."""
    tenants = op.create_table(
        "tenants",
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("weight", sa.Float, nullable=False),
        sa.Column("max_running", sa.Integer),
        sa.Column("max_pending", sa.Integer),
    )
    op.bulk_insert(tenants, [{"name": "default", "weight": 1.0}])
    with op.batch_alter_table("tokens") as table:
        table.add_column(sa.Column("tenant", sa.String(63), nullable=False, server_default=""))
    with op.batch_alter_table("workers") as table:
        table.add_column(sa.Column("tenants_json", sa.Text, nullable=False, server_default="[]"))
    op.execute("UPDATE tokens SET tenant = 'default' WHERE role = 'submit'")
    with op.batch_alter_table("artifacts") as table:
        table.add_column(
            sa.Column("tenant", sa.String(63), nullable=False, server_default="default")
        )
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint("work_requests_idempotency_key_key", "work_requests", type_="unique")
        dropping = None
    else:
        dropping = "uq_work_requests_idempotency_key"
    with op.batch_alter_table("work_requests", naming_convention=NAMING) as table:
        if dropping:
            table.drop_constraint(dropping, type_="unique")
        table.add_column(
            sa.Column("tenant", sa.String(63), nullable=False, server_default="default")
        )
        table.create_index(
            "uq_work_requests_tenant_key", ["tenant", "idempotency_key"], unique=True
        )
        table.create_index("ix_work_requests_tenant_id", ["tenant", "id"])


def downgrade() -> None:
    """Drop them again (keys stay unique within a tenant only if they were)."""
    with op.batch_alter_table("work_requests") as table:
        table.drop_index("ix_work_requests_tenant_id")
        table.drop_index("uq_work_requests_tenant_key")
        table.drop_column("tenant")
        table.create_unique_constraint("uq_work_requests_idempotency_key", ["idempotency_key"])
    with op.batch_alter_table("artifacts") as table:
        table.drop_column("tenant")
    with op.batch_alter_table("workers") as table:
        table.drop_column("tenants_json")
    with op.batch_alter_table("tokens") as table:
        table.drop_column("tenant")
    op.drop_table("tenants")
