"""The span exporter delivers what the encoder wrote to a real OTLP receiver,
also after it had to reconnect."""

from __future__ import annotations

import socket
import threading
from contextlib import ExitStack

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from taskyard.otel_export import FastOTLPSpanExporter
from taskyard.span_recorder import RecordingTracerProvider
from taskyard.testing.otlp import receiver


def some_spans() -> tuple[ReadableSpan, ...]:
    memory = InMemorySpanExporter()
    provider = RecordingTracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    recorder = provider.recorder("taskyard.test")
    with provider.get_tracer("rpc").start_as_current_span("rpc") as rpc:
        parent = rpc.get_span_context()
        for n in range(3):
            recorder.record("taskyard.queue_wait", {"taskyard.task": "noop", "n": n}, parent)
    provider.shutdown()
    return memory.get_finished_spans()


@pytest.fixture
def free_port() -> int:
    """A loopback port nothing listens on (yet)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_spans_arrive_as_they_were_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    spans = some_spans()
    with receiver() as (endpoint, received):
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        exporter = FastOTLPSpanExporter()
        try:
            assert exporter.export(spans) is SpanExportResult.SUCCESS
        finally:
            exporter.shutdown()
        arrived = received.spans
    assert [(s.name, s.span_id, s.parent_id) for s in arrived] == [
        (s.name, f"{s.context.span_id:016x}", f"{s.parent.span_id:016x}" if s.parent else "")
        for s in spans
        if s.context is not None
    ]
    assert arrived[0].attributes == {"taskyard.task": "noop", "n": 0}


def test_an_export_after_the_collector_came_back_is_delivered(
    monkeypatch: pytest.MonkeyPatch, free_port: int
) -> None:
    """The first attempt finds nobody listening; the exporter makes a new
    channel (with the same raw stub) and its retry reaches the receiver."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{free_port}")
    exporter = FastOTLPSpanExporter()
    with ExitStack() as stack:
        started = threading.Event()

        def start_receiver_later() -> None:
            started.wait(0.3)
            stack.enter_context(receiver(f"127.0.0.1:{free_port}"))
            started.set()

        later = threading.Thread(target=start_receiver_later)
        later.start()
        try:
            result = exporter.export(some_spans())
        finally:
            later.join()
            exporter.shutdown()
        assert started.is_set()
        assert result is SpanExportResult.SUCCESS
