"""The scheduler's metrics, read through the SDK's metric reader as an exporter reads them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader, Sum
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from taskyard.scheduler.domain import Result, State, WorkRequest
from taskyard.scheduler.service import metrics
from taskyard.scheduler.service.metrics import Tally

NOW = datetime(2026, 1, 1, tzinfo=UTC)
OUTCOMES = "taskyard.work_request.outcomes"

SAMPLED = TraceFlags(TraceFlags.SAMPLED)
KEYS = ("taskyard.task", "taskyard.result")


@pytest.fixture
def provider() -> Iterator[tuple[MeterProvider, InMemoryMetricReader]]:
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    yield meter_provider, reader
    meter_provider.shutdown()


def collected(reader: InMemoryMetricReader, name: str) -> Any:
    """The data of metric `name`, collected now."""
    data = reader.get_metrics_data()
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    return metric.data
    raise AssertionError(f"no metric {name}")


def by_attributes(data: Any, value: str) -> dict[frozenset[tuple[str, Any]], Any]:
    """Each data point's `value` field, by the point's attributes."""
    return {frozenset(p.attributes.items()): getattr(p, value) for p in data.data_points}


def key(task: str, result: str) -> frozenset[tuple[str, Any]]:
    return frozenset(zip(KEYS, (task, result), strict=True))


def test_a_tally_is_read_as_a_cumulative_monotonic_sum_by_its_attributes(
    provider: tuple[MeterProvider, InMemoryMetricReader],
) -> None:
    meter_provider, reader = provider
    tally = Tally(meter_provider.get_meter("test"), OUTCOMES, KEYS, "ended attempts")
    for task, result in (("noop", "success"), ("noop", "success"), ("sbuild", "failure")):
        tally.add(task, result)
    data = collected(reader, OUTCOMES)
    assert by_attributes(data, "value") == {key("noop", "success"): 2, key("sbuild", "failure"): 1}
    assert isinstance(data, Sum)
    assert data.is_monotonic
    assert data.aggregation_temporality is AggregationTemporality.CUMULATIVE
    tally.add("noop", "success")
    again = by_attributes(collected(reader, OUTCOMES), "value")
    assert again == {key("noop", "success"): 3, key("sbuild", "failure"): 1}  # not reset


def test_an_ended_attempt_counts_its_outcome_and_duration_by_task_and_result(
    provider: tuple[MeterProvider, InMemoryMetricReader], monkeypatch: pytest.MonkeyPatch
) -> None:
    meter_provider, reader = provider
    meter = meter_provider.get_meter("test")
    monkeypatch.setattr(metrics, "outcomes", Tally(meter, OUTCOMES, KEYS, "ended"))
    monkeypatch.setattr(metrics, "run_duration", meter.create_histogram("duration", unit="s"))
    running = WorkRequest("wr", "noop", "{}", 0, NOW, "wr", state=State.RUNNING, started_at=NOW)
    later = NOW + timedelta(seconds=2)
    failed = running.with_changes(state=State.COMPLETED, result=Result.FAILURE, completed_at=later)
    metrics.finished(failed, Context())
    metrics.finished(running.with_changes(state=State.ABORTED, completed_at=later), Context())
    ended = {key("noop", "failure"): 1, key("noop", "aborted"): 1}
    assert by_attributes(collected(reader, OUTCOMES), "value") == ended
    durations = collected(reader, "duration")
    assert by_attributes(durations, "count") == ended
    assert set(by_attributes(durations, "sum").values()) == {2.0}


def test_a_latency_s_exemplar_names_the_trace_it_is_measured_in_not_the_current_span(
    provider: tuple[MeterProvider, InMemoryMetricReader], monkeypatch: pytest.MonkeyPatch
) -> None:
    meter_provider, reader = provider
    queue_time = meter_provider.get_meter("test").create_histogram("queue_time", unit="s")
    monkeypatch.setattr(metrics, "queue_time", queue_time)
    request = SpanContext(0x5B8AA5A2D2C872E8321CF37308D69DF2, 0x051581BF3CB55C13, True, SAMPLED)
    session = SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0x00F067AA0BA902B7, False, SAMPLED)
    started = WorkRequest("wr", "noop", "{}", 0, NOW, "wr", started_at=NOW + timedelta(seconds=1))
    with trace.use_span(NonRecordingSpan(session)):  # a worker's session call, say
        metrics.started(started, trace.set_span_in_context(NonRecordingSpan(request)))
    [point] = collected(reader, "queue_time").data_points
    [exemplar] = point.exemplars
    assert (exemplar.trace_id, exemplar.span_id) == (request.trace_id, request.span_id)
    assert exemplar.value == 1.0


def test_measurements_are_kept_only_under_the_sdks_meter_provider(
    provider: tuple[MeterProvider, InMemoryMetricReader],
) -> None:
    meter_provider, _ = provider
    assert metrics._is_sdk(meter_provider)
    assert not metrics._is_sdk(NoOpMeterProvider())
