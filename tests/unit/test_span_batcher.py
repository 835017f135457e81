"""The batch processor Taskyard exports through: the SDK's batching, with a
cheaper hand-over of each ended span."""

from __future__ import annotations

import logging
import os
import time

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanContext, TraceFlags

from taskyard import span_recorder
from taskyard.span_recorder import RecordingTracerProvider, SpanBatcher

RESOURCE = Resource({})  # built as is (`Resource.create` would detect in a thread)


def ended(name: str, sampled: bool = True) -> ReadableSpan:
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    context = SpanContext(1, len(name), False, flags)
    return ReadableSpan(name, context, resource=RESOURCE, start_time=1, end_time=2)


def stop(batcher: SpanBatcher) -> None:
    batcher.shutdown()  # type: ignore[no-untyped-call]  # untyped in the SDK


def names(exporter: InMemorySpanExporter) -> list[str]:
    return [span.name for span in exporter.get_finished_spans()]


def test_sampled_spans_are_exported_in_the_order_they_ended() -> None:
    exporter = InMemorySpanExporter()
    batcher = SpanBatcher(exporter, schedule_delay_millis=60_000)
    for span in (ended("a"), ended("bb", sampled=False), ended("ccc")):
        batcher.on_end(span)
    assert names(exporter) == []  # batched, not yet due
    assert batcher.force_flush()
    assert names(exporter) == ["a", "ccc"]
    stop(batcher)


def test_a_full_batch_is_exported_without_waiting_for_the_schedule() -> None:
    exporter = InMemorySpanExporter()
    batcher = SpanBatcher(exporter, schedule_delay_millis=60_000, max_export_batch_size=2)
    batcher.on_end(ended("a"))
    batcher.on_end(ended("bb"))  # wakes the worker
    deadline = time.monotonic() + 10
    while not names(exporter) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert names(exporter) == ["a", "bb"]
    stop(batcher)


def test_a_full_queue_drops_the_oldest_span_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    exporter = InMemorySpanExporter()
    batcher = SpanBatcher(
        exporter, max_queue_size=2, max_export_batch_size=2, schedule_delay_millis=60_000
    )
    with batcher._batch_processor._export_lock, caplog.at_level(logging.WARNING):
        for name in ("a", "bb", "ccc"):  # the worker is kept from exporting meanwhile
            batcher.on_end(ended(name))
    assert "Queue full" in caplog.text
    batcher.force_flush()
    assert names(exporter) == ["bb", "ccc"]
    stop(batcher)


def test_nothing_is_taken_after_shutdown() -> None:
    exporter = InMemorySpanExporter()
    batcher = SpanBatcher(exporter)
    stop(batcher)
    batcher.on_end(ended("a"))
    assert names(exporter) == []
    assert not batcher._batch_processor._queue  # not kept either


def test_a_recorder_hands_its_spans_to_every_processor_added_later() -> None:
    provider = RecordingTracerProvider()
    recorder = provider.recorder("taskyard.test")
    first, second = InMemorySpanExporter(), InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(first))
    recorder.record("one", {}, None, 1, 2)
    provider.add_span_processor(SimpleSpanProcessor(second))
    recorder.record("two", {}, None, 1, 2)
    assert names(first) == ["one", "two"]
    assert names(second) == ["two"]
    provider.shutdown()


class PidCalls:
    """Counts the calls of `os.getpid` (the SDK's fork check) while it is patched."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real = os.getpid

        def counted() -> int:
            self.calls += 1
            return real()

        monkeypatch.setattr(os, "getpid", counted)


def test_a_span_is_queued_without_a_system_call(monkeypatch: pytest.MonkeyPatch) -> None:
    exporter = InMemorySpanExporter()
    batcher = SpanBatcher(exporter, schedule_delay_millis=60_000)
    pid = PidCalls(monkeypatch)
    batcher.on_end(ended("a"))
    assert pid.calls == 0
    batcher.force_flush()
    assert names(exporter) == ["a"]
    stop(batcher)


def test_batching_not_built_as_expected_goes_through_the_sdks_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(span_recorder, "_batching_as_known", lambda batch: False)
    exporter = InMemorySpanExporter()
    batcher = SpanBatcher(exporter, schedule_delay_millis=60_000)
    pid = PidCalls(monkeypatch)
    for span in (ended("a"), ended("bb", sampled=False)):
        batcher.on_end(span)
    assert pid.calls == 1  # the SDK's own check, for the sampled span
    batcher.force_flush()
    assert names(exporter) == ["a"]
    stop(batcher)
