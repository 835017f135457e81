"""A test OTLP/gRPC receiver built from the collector service definitions.

For tests and benchmarks: it keeps every span and metric point it receives.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
from opentelemetry.proto.collector.metrics.v1 import (
    metrics_service_pb2,
    metrics_service_pb2_grpc,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2


@dataclass(frozen=True)
class Span:
    """One received span, flattened."""

    name: str
    service: str
    pid: int
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, Any]


def _value(value: Any) -> Any:
    return getattr(value, value.WhichOneof("value")) if value.WhichOneof("value") else None


@dataclass
class Received:
    """Everything exported to the receiver so far. Span exports are kept as
    the bytes that arrived, and decoded and flattened when first read, so
    receiving costs next to nothing (a benchmark's receiver shares the
    machine with what it measures)."""

    metrics: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _exports: list[bytes] = field(default_factory=list)
    _spans: list[Span] = field(default_factory=list)

    @property
    def spans(self) -> list[Span]:
        """Every span received so far, in arrival order."""
        with self.lock:
            exports, self._exports = self._exports, []
        decoded = map(trace_service_pb2.ExportTraceServiceRequest.FromString, exports)
        flattened = [span for export in decoded for span in _flatten(export)]
        with self.lock:
            self._spans.extend(flattened)
            return list(self._spans)

    def add_export(self, request: bytes) -> None:
        with self.lock:
            self._exports.append(request)

    def wait_for(self, condition: Callable[[], bool], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"not received in time: {self.names()}"
            time.sleep(0.1)

    def names(self) -> list[str]:
        return sorted({s.name for s in self.spans})

    def named(self, name: str) -> list[Span]:
        return [s for s in self.spans if s.name == name]


def _flatten(request: Any) -> Iterator[Span]:
    for resource_spans in request.resource_spans:
        resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
        for scope in resource_spans.scope_spans:
            for span in scope.spans:
                yield Span(
                    name=span.name,
                    service=str(resource.get("service.name", "")),
                    pid=int(resource.get("process.pid", 0)),
                    trace_id=span.trace_id.hex(),
                    span_id=span.span_id.hex(),
                    parent_id=span.parent_span_id.hex(),
                    attributes={a.key: _value(a.value) for a in span.attributes},
                )


def _traces(received: Received) -> grpc.GenericRpcHandler[bytes, Any]:
    """The trace service's Export, taking each request as its bytes."""

    def export(request: bytes, context: grpc.ServicerContext) -> Any:
        received.add_export(request)
        return trace_service_pb2.ExportTraceServiceResponse()

    method = grpc.unary_unary_rpc_method_handler(
        export,
        request_deserializer=None,
        response_serializer=trace_service_pb2.ExportTraceServiceResponse.SerializeToString,
    )
    return grpc.method_handlers_generic_handler(
        "opentelemetry.proto.collector.trace.v1.TraceService", {"Export": method}
    )


class _Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, received: Received) -> None:
        self.received = received

    def Export(self, request: Any, context: Any) -> Any:
        for resource_metrics in request.resource_metrics:
            for scope in resource_metrics.scope_metrics:
                for metric in scope.metrics:
                    data = getattr(metric, metric.WhichOneof("data"))
                    for point in data.data_points:
                        labels = {a.key: _value(a.value) for a in point.attributes}
                        with self.received.lock:
                            self.received.metrics.setdefault(metric.name, []).append(labels)
        return metrics_service_pb2.ExportMetricsServiceResponse()


@contextmanager
def receiver(address: str = "127.0.0.1:0") -> Iterator[tuple[str, Received]]:
    """An OTLP receiver on `address` (default: a free loopback port); yields
    its endpoint and what it received."""
    received = Received()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((_traces(received),))
    # The collector stubs are untyped.
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(_Metrics(received), server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port(address)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}", received
    finally:
        server.stop(1)


def main() -> None:
    """Serve as a process until SIGTERM, then print how many spans arrived."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with receiver() as (endpoint, received):
        print(f"otlp receiver listening on {endpoint.removeprefix('http://')}", flush=True)
        stop.wait()
        print(f"received {len(received.spans)} spans", flush=True)


if __name__ == "__main__":
    main()
