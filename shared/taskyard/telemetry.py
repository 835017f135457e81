"""OpenTelemetry for every Taskyard process, configured by the standard variables.

Nothing is exported unless an OTLP endpoint or exporter is configured
(`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_TRACES_EXPORTER`, `OTEL_METRICS_EXPORTER`,
or a `--otlp-endpoint` flag); `OTEL_SDK_DISABLED=true` turns everything off.
Export happens in the background, and shutdown waits a bounded time, so a
collector that is not listening never delays or fails a process.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from opentelemetry import metrics, propagate, trace
from opentelemetry.context import Context

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics.export import MetricReader

SHUTDOWN_TIMEOUT = 3.0


def _enabled(signal: str) -> bool:
    """Whether `signal` (traces, metrics) should be exported over OTLP."""
    if _disabled():
        return False
    exporters = os.environ.get(f"OTEL_{signal.upper()}_EXPORTER", "").strip().lower()
    if exporters:
        return "otlp" in [e.strip() for e in exporters.split(",")]
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT")
    )


def tracing_enabled() -> bool:
    """Whether traces are exported (read after `configure`)."""
    return _enabled("traces")


def traces_recorded() -> bool:
    """Whether the SDK's tracer provider is installed, so that spans made now
    are kept (and worth making)."""
    sdk = sys.modules.get("opentelemetry.sdk.trace")  # not imported here: loaded only to export
    return sdk is not None and isinstance(trace.get_tracer_provider(), sdk.TracerProvider)


@dataclass
class Telemetry:
    """What `configure` installed; `shutdown` flushes it within a bounded time."""

    shutdowns: list[Callable[[], object]] = field(default_factory=list)

    def flush(self) -> None:
        """Export what is buffered now (e.g. before an executor's task report)."""
        provider = trace.get_tracer_provider()
        force_flush = getattr(provider, "force_flush", None)
        if force_flush is not None:
            force_flush(int(SHUTDOWN_TIMEOUT * 1000))

    def shutdown(self) -> None:
        """Flush and stop the exporters, giving up after a few seconds."""
        for shutdown in self.shutdowns:
            worker = threading.Thread(target=shutdown, daemon=True)
            worker.start()
            worker.join(SHUTDOWN_TIMEOUT)


def configure(service_name: str, otlp_endpoint: str = "", *, prometheus: bool = False) -> Telemetry:
    """Install tracing and metrics for this process, as the environment says;
    with `prometheus`, metrics are also kept for a Prometheus scrape
    (`prometheus_client`'s registry, served by the scheduler's `/metrics`)."""
    if otlp_endpoint:  # a shortcut for the variable, which child processes inherit
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = otlp_endpoint
    telemetry = Telemetry()
    identity: dict[str, str | int] = {
        "service.name": os.environ.get("OTEL_SERVICE_NAME") or service_name,
        "process.pid": os.getpid(),
    }
    # The SDK and exporters are imported only when something is exported:
    # the standard pipeline, the SDK's batch processor and OTLP exporter.
    if _enabled("traces"):
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter  # noqa: PLC0415
        from opentelemetry.sdk.resources import Resource  # noqa: PLC0415
        from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
        from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: PLC0415

        tracer_provider = TracerProvider(resource=Resource.create(identity))
        tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(tracer_provider)
        telemetry.shutdowns.append(tracer_provider.shutdown)
    readers = _metric_readers(prometheus=prometheus and not _disabled())
    if readers:
        from opentelemetry.sdk.metrics import MeterProvider  # noqa: PLC0415
        from opentelemetry.sdk.resources import Resource  # noqa: PLC0415

        meter_provider = MeterProvider(resource=Resource.create(identity), metric_readers=readers)
        metrics.set_meter_provider(meter_provider)
        telemetry.shutdowns.append(meter_provider.shutdown)
    return telemetry


def _disabled() -> bool:
    return os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


def _metric_readers(*, prometheus: bool) -> list[MetricReader]:
    readers: list[MetricReader] = []
    if _enabled("metrics"):
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter  # noqa: PLC0415
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader  # noqa: PLC0415

        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
    if prometheus:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader  # noqa: PLC0415

        readers.append(PrometheusMetricReader())
    return readers


def current_trace_context() -> dict[str, str]:
    """The W3C trace context of the current span, to store or send along."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def context_from(carrier: Mapping[str, str]) -> Context:
    """A context to continue the trace carried in `carrier`."""
    return propagate.extract(dict(carrier))
