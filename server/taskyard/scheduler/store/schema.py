"""The SQL schema (SQLAlchemy Core). Changes go through Alembic migrations;
a test checks the migrations produce exactly this."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    TypeDecorator,
)


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.astimezone(UTC).replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData()

work_requests = Table(
    "work_requests",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("task_name", String(200), nullable=False),
    Column("task_data_json", Text, nullable=False),
    Column("priority", Integer, nullable=False),
    Column("queue_key", String(40), nullable=False),
    Column("state", String(16), nullable=False),
    Column("result", String(16), nullable=False),
    Column("output_json", Text, nullable=False),
    Column("error_reason", String(100)),
    Column("error_type", String(200)),
    Column("error_message", Text),
    Column("attempt", Integer, nullable=False),
    Column("max_attempts", Integer, nullable=False),
    Column("worker_name", String(200), nullable=False),
    Column("timeout_seconds", Float),
    Column("idempotency_key", String(200)),
    Column("trace_context_json", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("assigned_at", UtcDateTime),
    Column("started_at", UtcDateTime),
    Column("completed_at", UtcDateTime),
    Column("updated_at", UtcDateTime),
    Column("abort_requested_at", UtcDateTime),
    Column("owner", String(120), nullable=False, server_default=""),
    Column("details_json", Text, nullable=False, server_default=""),
    Column("tenant", String(63), nullable=False, server_default="default"),
    Column("waiting", Integer, nullable=False, server_default="0"),
    # An idempotency key is its tenant's own.
    Index("uq_work_requests_tenant_key", "tenant", "idempotency_key", unique=True),
    # A filtered list, newest first, reads its page from one of these.
    Index("ix_work_requests_tenant_id", "tenant", "id"),
    Index("ix_work_requests_state_id", "state", "id"),
    Index("ix_work_requests_task_name_id", "task_name", "id"),
    Index("ix_work_requests_owner_id", "owner", "id"),
    Index("ix_work_requests_worker_name_id", "worker_name", "id"),
    # Counts by state and task, from the index alone.
    Index("ix_work_requests_state_task", "state", "task_name"),
)

workers = Table(
    "workers",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("token_sha256", String(64), nullable=False, unique=True),
    Column("enabled", Boolean, nullable=False),
    Column("slots", Integer, nullable=False),
    Column("dynamic_metadata_json", Text, nullable=False),
    Column("static_metadata_json", Text, nullable=False),
    Column("allowed_tasks_json", Text, nullable=False),
    Column("denied_tasks_json", Text, nullable=False),
    Column("registered_at", UtcDateTime, nullable=False),
    Column("last_seen_at", UtcDateTime),
    # The scheduler holding its session ('' for none).
    Column("scheduler", String(200), nullable=False, server_default=""),
    # The tenants it is reserved for (a JSON list; empty: every tenant).
    Column("tenants_json", Text, nullable=False, server_default="[]"),
)

#: Each scheduler sharing the database, and when it last said it was alive.
schedulers = Table(
    "schedulers",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("address", String(300), nullable=False),
    Column("page", String(300), nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("seen_at", UtcDateTime, nullable=False),
)

#: Leases that elect one scheduler for a job (maintenance), with a term
#: that fences the writes of a former holder.
leases = Table(
    "leases",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("term", BigInteger, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
)

tokens = Table(
    "tokens",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("secret_sha256", String(64), nullable=False, unique=True),
    Column("role", String(32), nullable=False),
    Column("description", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime),
    Column("used_at", UtcDateTime),
    Column("revoked_at", UtcDateTime),
    Column("tenant", String(63), nullable=False, server_default=""),
)

#: The teams sharing the farm: weights and quotas (NULL: no limit).
tenants = Table(
    "tenants",
    metadata,
    Column("name", String(63), primary_key=True),
    Column("weight", Float, nullable=False),
    Column("max_running", Integer),
    Column("max_pending", Integer),
)

artifacts = Table(
    "artifacts",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("category", String(200), nullable=False),
    Column("data_json", Text, nullable=False),
    Column("work_request_id", String(40), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime),
    Column("complete", Boolean, nullable=False),
    Column("created_by", String(120), nullable=False, server_default=""),
    Column("idempotency_key", String(200)),
    Column("tenant", String(63), nullable=False, server_default="default"),
    Index("ix_artifacts_work_request_id", "work_request_id"),
    Index("ix_artifacts_created_by", "created_by"),
    Index("uq_artifacts_idempotency_key", "created_by", "idempotency_key", unique=True),
)

artifact_files = Table(
    "artifact_files",
    metadata,
    Column(
        "artifact_id", String(40), ForeignKey("artifacts.id", ondelete="CASCADE"), nullable=False
    ),
    Column("path", String(4096), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("content_type", String(200), nullable=False),
    Column("complete", Boolean, nullable=False),
    PrimaryKeyConstraint("artifact_id", "path"),
)

#: Ended attempts of work requests (the request row holds only its current one).
attempts = Table(
    "attempts",
    metadata,
    # An attempt given back unstarted keeps its number: it may end twice.
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("work_request_id", String(40), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("worker_name", String(200), nullable=False),
    Column("assigned_at", UtcDateTime),
    Column("started_at", UtcDateTime),
    Column("ended_at", UtcDateTime, nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("result", String(16), nullable=False),
    Column("reason", String(200), nullable=False),
    Column("message", Text, nullable=False),
    Index("ix_attempts_work_request_id", "work_request_id"),
)

#: What a request waits for: another request's success, or its end.
dependencies = Table(
    "dependencies",
    metadata,
    Column("work_request_id", String(40), nullable=False),
    Column("depends_on", String(40), nullable=False),
    Column("needs", String(16), nullable=False),
    PrimaryKeyConstraint("work_request_id", "depends_on"),
    # A request that ends finds what waits for it through this.
    Index("ix_dependencies_depends_on", "depends_on"),
)
