"""The scheduler process: gRPC server, standard services, graceful shutdown."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import secrets
import signal
import socket
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection
from opentelemetry import trace

from taskyard.errors import FailedPreconditionError, InvalidArgumentError
from taskyard.rpc.credentials import SERVER_OPTIONS
from taskyard.rpc.tracing import server_interceptors
from taskyard.scheduler.api.access import AccessInterceptor
from taskyard.scheduler.api.artifacts import ArtifactServicer
from taskyard.scheduler.api.operator import OperatorServicer
from taskyard.scheduler.api.work_requests import WorkRequestServicer
from taskyard.scheduler.api.workers import WorkerServicer
from taskyard.scheduler.blobs.local import LocalBlobStore
from taskyard.scheduler.blobs.logs import LogFiles
from taskyard.scheduler.config import SchedulerConfig
from taskyard.scheduler.service import metrics
from taskyard.scheduler.service.artifact_rules import Limits
from taskyard.scheduler.service.scheduler import Scheduler
from taskyard.scheduler.service.sessions import Settings
from taskyard.scheduler.service.tracing import SCOPE as TRACING_SCOPE
from taskyard.scheduler.service.tracing import SpanObserver
from taskyard.scheduler.store.sql import SqlStore
from taskyard.scheduler.web.access import is_loopback
from taskyard.scheduler.web.app import StatusSite
from taskyard.telemetry import traces_recorded
from taskyard.v1 import (
    artifacts_pb2,
    artifacts_pb2_grpc,
    operator_pb2,
    operator_pb2_grpc,
    work_requests_pb2,
    work_requests_pb2_grpc,
    workers_pb2,
    workers_pb2_grpc,
)

log = logging.getLogger(__name__)

SERVICES = (
    artifacts_pb2.DESCRIPTOR.services_by_name["ArtifactService"].full_name,
    work_requests_pb2.DESCRIPTOR.services_by_name["WorkRequestService"].full_name,
    workers_pb2.DESCRIPTOR.services_by_name["WorkerService"].full_name,
    operator_pb2.DESCRIPTOR.services_by_name["OperatorService"].full_name,
)


@dataclass
class RunningServer:
    """A started gRPC server around a started scheduler."""

    server: grpc.aio.Server
    scheduler: Scheduler
    health: HealthServicer
    port: int

    async def stop(self, grace: float) -> None:
        """Stop accepting, tell workers, let calls finish within `grace`, close the store."""
        await self.health.enter_graceful_shutdown()
        await self.scheduler.stop()
        await self.server.stop(grace)
        self.scheduler.close()


def _credentials(config: SchedulerConfig) -> grpc.ServerCredentials | None:
    if not config.tls_cert and not config.tls_key:
        return None
    if not (config.tls_cert and config.tls_key):
        raise InvalidArgumentError("--tls-cert and --tls-key go together")
    try:
        key, cert = Path(config.tls_key).read_bytes(), Path(config.tls_cert).read_bytes()
        client_ca = Path(config.tls_client_ca).read_bytes() if config.tls_client_ca else None
    except OSError as error:
        raise InvalidArgumentError(f"cannot read a TLS file: {error}") from error
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


async def start_server(scheduler: Scheduler, config: SchedulerConfig) -> RunningServer:
    """Start the scheduler and serve it on `config.listen` (port 0 picks a free port)."""
    await scheduler.start()
    interceptors = [*server_interceptors(), AccessInterceptor(scheduler)]  # RPC spans outermost
    # No SO_REUSEPORT: a second scheduler on a served port must fail, not
    # share it (clients would be split between the two).
    server = grpc.aio.server(interceptors=interceptors, options=SERVER_OPTIONS)
    core = scheduler.core
    work_requests_pb2_grpc.add_WorkRequestServiceServicer_to_server(
        WorkRequestServicer(scheduler.work_requests, scheduler.artifacts, scheduler.logs), server
    )
    workers_pb2_grpc.add_WorkerServiceServicer_to_server(
        WorkerServicer(scheduler.workers, core.dispatcher.sessions, scheduler.logs), server
    )
    operator_pb2_grpc.add_OperatorServiceServicer_to_server(
        OperatorServicer(
            scheduler.workers, scheduler.tokens, scheduler.retention, scheduler.tenants
        ),
        server,
    )
    artifacts_pb2_grpc.add_ArtifactServiceServicer_to_server(
        ArtifactServicer(scheduler.artifacts), server
    )
    health_servicer = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (
            *SERVICES,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    credentials = _credentials(config)
    try:
        _check_free(config.listen)
        if credentials is None:
            port = server.add_insecure_port(config.listen)
        else:
            port = server.add_secure_port(config.listen, credentials)
    except (RuntimeError, OSError):
        port = 0
    if port == 0:
        await scheduler.stop()
        scheduler.close()
        raise FailedPreconditionError(
            f"cannot listen on {config.listen}: the address is in use or not valid here",
            reason="ADDRESS_IN_USE",
        )
    await server.start()
    scheduler.listening(f"{config.listen.rsplit(':', 1)[0]}:{port}")
    for service in ("", *SERVICES):
        await health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    return RunningServer(server, scheduler, health_servicer, port)


def build_scheduler(config: SchedulerConfig) -> Scheduler:
    """A scheduler over the configured database."""
    settings = Settings(
        heartbeat_interval=config.heartbeat_interval,
        lease_grace=config.lease_grace,
        default_max_attempts=config.max_attempts,
    )
    limits = Limits(
        max_file_size=config.max_file_size,
        max_artifact_size=config.max_artifact_size,
        partial_max_age=config.partial_upload_max_age,
        upload_quota=config.upload_quota,
    )
    identity = scheduler_id()
    scheduler = Scheduler(
        SqlStore(config.database_url(), origin=identity),
        settings=settings,
        auto_enable_workers=config.auto_enable_workers,
        blobs=LocalBlobStore(config.blob_root() / "blobs"),
        limits=limits,
        logs=LogFiles(config.blob_root() / "logs"),
        log_cap=config.log_cap,
        keep_seconds=config.keep_days * 86400,
        scheduler_id=identity,
        lease_ttl=config.leader_ttl,
    )
    if traces_recorded():  # observers only when exported: otherwise they cost for nothing
        scheduler.observe_with(SpanObserver(trace.get_tracer(TRACING_SCOPE)), submissions=True)
    if metrics.measuring():
        scheduler.observe_with(metrics.MetricsObserver())
    return scheduler


def scheduler_id() -> str:
    """This scheduler's name among those sharing a database."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"


def secure_data_dir(data_dir: Path) -> None:
    """Keep task data and artifacts to the scheduler's user: the data dir
    0700, everything in it created 0600 (directories 0700), and files left
    readable by an older version closed."""
    if data_dir.exists() and not data_dir.is_dir():
        raise FailedPreconditionError(f"the data dir {data_dir} is not a directory")
    token = data_dir / "admin.token"
    if token.exists() and token.stat().st_mode & 0o077:
        log.warning("%s was readable by other users; it is 0600 now", token)
    os.umask(0o077)
    data_dir.mkdir(parents=True, exist_ok=True)
    if not data_dir.stat().st_mode & 0o077:
        return  # private already: what is in it was made so (no walk over every blob)
    data_dir.chmod(0o700)
    for root, directories, files in os.walk(data_dir):
        for name in directories + files:
            path = Path(root, name)
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode) or not mode & 0o077:
                continue
            path.chmod(0o700 if stat.S_ISDIR(mode) else 0o600)


def _check_free(listen: str) -> None:
    """OSError if something already listens on `listen` (asked before gRPC
    binds, which would log its own error line)."""
    host, _, port = listen.rpartition(":")
    if not port.isdigit() or int(port) == 0:
        return
    found = socket.getaddrinfo(host.strip("[]") or None, int(port), type=socket.SOCK_STREAM)
    for family, kind, protocol, _, address in found:
        with socket.socket(family, kind, protocol) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)


def lock_data_dir(data_dir: Path) -> IO[str]:
    """Hold the data dir for this process's life: one scheduler per data dir
    (two would both serve its workers, which would flip between them)."""
    holder = open(data_dir / "scheduler.lock", "a+", encoding="utf-8")  # noqa: SIM115
    try:
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder.seek(0)
        other = holder.read().strip() or "another process"
        holder.close()
        raise FailedPreconditionError(
            f"the data dir {data_dir} is in use by another scheduler (pid {other})",
            reason="DATA_DIR_IN_USE",
        ) from None
    holder.truncate(0)
    holder.write(f"{os.getpid()}\n")
    holder.flush()
    return holder


def _announce(line: str) -> None:
    print(line, flush=True)


async def serve(config: SchedulerConfig, announce: Callable[[str], None] = _announce) -> None:
    """Run the scheduler until SIGTERM or SIGINT, then shut down gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    secure_data_dir(config.data_dir)
    lock = lock_data_dir(config.data_dir)
    scheduler = build_scheduler(config)
    try:
        running = await start_server(scheduler, config)
    except BaseException:
        lock.close()
        raise
    try:
        site = await _serve_page(scheduler, config)
    except BaseException:
        await running.stop(0)
        lock.close()
        raise
    await scheduler.tokens.ensure_admin_token(config.data_dir / "admin.token")
    host = config.listen.rsplit(":", 1)[0]
    scheduler.listening(f"{host}:{running.port}", site.address if site is not None else "")
    page = f" (status page: {site.address})" if site is not None else ""
    announce(f"taskyard scheduler listening on {host}:{running.port}{page}")
    await stop.wait()
    log.info("shutting down: telling workers, draining calls for up to %ss", config.shutdown_grace)
    if site is not None:
        await site.stop()
    await running.stop(config.shutdown_grace)
    lock.close()
    log.info("scheduler stopped")


async def _serve_page(scheduler: Scheduler, config: SchedulerConfig) -> StatusSite | None:
    """Serve the status page and `/metrics` if asked to (`--http`)."""
    if not config.http:
        return None
    host = config.http.rpartition(":")[0].strip("[]")
    site = StatusSite(scheduler, loopback=is_loopback(host), trace_url=config.trace_url)
    await site.start(config.http)
    return site
