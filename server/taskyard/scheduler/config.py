"""Settings of `taskyard scheduler`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


def default_data_dir() -> Path:
    """Where the scheduler keeps its database and admin token by default."""
    return Path.home() / ".local" / "share" / "taskyard"


@dataclass(frozen=True)
class SchedulerConfig:
    """Every setting of the scheduler process, with its default."""

    listen: str = "127.0.0.1:50051"
    data_dir: Path = field(default_factory=default_data_dir)
    #: SQLAlchemy URL; empty means the SQLite file `taskyard.db` in the data dir.
    database: str = ""
    #: Where artifact contents and task logs live (empty: the data dir). All
    #: the schedulers of one database share one, on a shared filesystem.
    blob_dir: str = ""
    auto_enable_workers: bool = False
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""
    heartbeat_interval: float = 10.0
    lease_grace: float = 30.0
    #: Seconds the maintenance lease lasts unrenewed (renewed every third of
    #: it): how soon another scheduler on the same database takes over.
    leader_ttl: float = 5.0
    max_attempts: int = 3
    #: Seconds in-flight calls get to finish on shutdown.
    shutdown_grace: float = 10.0
    #: Largest artifact file and artifact, in bytes.
    max_file_size: int = 10 * 1024**3
    max_artifact_size: int = 50 * 1024**3
    #: Seconds without progress after which an unfinished upload is removed.
    partial_upload_max_age: float = 3600.0
    #: Bytes of unfinished uploads one caller may have declared at once.
    upload_quota: int = 10 * 1024**3
    #: Bytes of one attempt's live log kept (the rest is cut, and it says so).
    log_cap: int = 64 * 1024**2
    #: Days finished requests (with their logs and artifacts) are kept; 0: forever.
    keep_days: float = 30.0
    #: Serve the status page and `/metrics` here (HOST:PORT); empty: not at all.
    http: str = ""
    #: A trace viewer's page of one trace, with `{trace_id}` in it.
    trace_url: str = ""

    def blob_root(self) -> Path:
        """The directory holding `blobs/` and `logs/`."""
        return Path(self.blob_dir) if self.blob_dir else self.data_dir

    def database_url(self) -> str:
        """The database to use."""
        return self.database or f"sqlite:///{self.data_dir / 'taskyard.db'}"
