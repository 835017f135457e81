"""The spans of a work request's life in the scheduler say what operators
read them for: why it waited, how it was matched, how it ended; and its
metrics lead to its trace."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from taskyard.scheduler.service import metrics, tracing
from taskyard.v1 import work_requests_pb2 as pb
from taskyard.v1 import workers_pb2
from tests.integration.scheduler.harness import Harness, completion, started_report


@pytest.fixture
def recorded(harness: Harness) -> Iterator[InMemorySpanExporter]:
    """The scheduler's spans, recorded into memory (the process-wide tracer
    provider can be set only once, so the scheduler is given a tracer)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    observer = tracing.SpanObserver(provider.get_tracer(tracing.SCOPE))
    harness.running.scheduler.observe_with(observer, submissions=True)
    yield exporter
    provider.shutdown()


@pytest.fixture
def measured(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemoryMetricReader]:
    """The scheduler's latency histograms, measured into memory (as `recorded`
    does for spans: the process-wide meter provider can be set only once)."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    meter = provider.get_meter("test")
    for name in ("queue_time", "run_duration"):
        monkeypatch.setattr(metrics, name, meter.create_histogram(name, unit="s"))
    harness.running.scheduler.observe_with(metrics.MetricsObserver())
    yield reader
    provider.shutdown()


def named(spans: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [span for span in spans.get_finished_spans() if span.name == name]


async def test_a_waiting_request_says_why_and_its_match_what_it_weighed(
    harness: Harness, recorded: InMemorySpanExporter
) -> None:
    worker = await harness.new_worker("builder")
    await harness.new_worker("other", enable=False)
    first, second = [await harness.submit("noop") for _ in range(2)]  # nobody connected yet
    await worker.connect(slots=1)
    for work_request_id in (first, second):
        lease = (await worker.expect("assignment")).lease
        assert lease.work_request_id == work_request_id
        worker.report(started_report(lease), completion(lease, workers_pb2.WORK_OUTCOME_SUCCESS))
        await worker.expect("ack")
    await harness.wait_for_state(second, pb.WORK_REQUEST_STATE_COMPLETED)

    submit = named(recorded, "taskyard.submit")[0]
    assert submit.attributes is not None
    assert submit.attributes["taskyard.work_request.id"] == first
    assert submit.attributes["taskyard.workers.not-connected"] == 1
    assert submit.attributes["taskyard.workers.disabled"] == 1
    matches = [dict(span.attributes or {}) for span in named(recorded, "taskyard.match")]
    assert matches == [
        {
            "taskyard.task": "noop",
            "taskyard.attempt": 1,
            "taskyard.worker": "builder",
            "taskyard.candidates": 1,  # one shape waiting
            "taskyard.cache_hits": 0,  # the worker's verdict, asked for the first time
            "taskyard.pending": 1,
        },
        {
            "taskyard.task": "noop",
            "taskyard.attempt": 1,
            "taskyard.worker": "builder",
            "taskyard.candidates": 1,
            "taskyard.cache_hits": 1,  # the same verdict, from the cache
            "taskyard.pending": 0,
        },
    ]
    complete = named(recorded, "taskyard.complete")[0]
    assert complete.attributes is not None
    assert complete.attributes["taskyard.outcome"] == "success"
    assert complete.attributes["taskyard.result"] == "success"
    assert submit.context is not None
    for name in ("taskyard.queue_wait", "taskyard.match", "taskyard.assign", "taskyard.complete"):
        span = named(recorded, name)[0]
        assert span.context is not None
        assert span.parent is not None
        assert (span.context.trace_id, span.parent.span_id) == (
            submit.context.trace_id,
            submit.context.span_id,
        ), name
    await worker.disconnect()


async def test_a_request_an_idle_worker_takes_at_once_is_matched_at_submit(
    harness: Harness, recorded: InMemorySpanExporter
) -> None:
    worker = await harness.new_worker("builder")
    await worker.connect()
    await harness.submit("noop")
    await worker.expect("assignment")
    (submit,) = named(recorded, "taskyard.submit")
    assert not any(key.startswith("taskyard.workers.") for key in submit.attributes or {})
    (match,) = named(recorded, "taskyard.match")
    assert match.attributes is not None
    assert (match.attributes["taskyard.worker"], match.attributes["taskyard.candidates"]) == (
        "builder",
        1,  # one worker looked at
    )
    await worker.disconnect()


async def test_the_waiting_requests_of_a_batch_share_their_refusal_counts(
    harness: Harness, recorded: InMemorySpanExporter
) -> None:
    await harness.new_worker("builder")  # registered, not connected
    batch = pb.BatchSubmitRequest(requests=[pb.SubmitRequest(task_name="noop")] * 3)
    await harness.work_requests.BatchSubmit(batch, metadata=harness.submitter)
    submits = named(recorded, "taskyard.submit")
    assert len(submits) == 3
    for span in submits:
        assert span.attributes is not None
        assert span.attributes["taskyard.workers.not-connected"] == 1


async def test_a_request_s_latencies_have_exemplars_in_its_own_trace(
    harness: Harness, recorded: InMemorySpanExporter, measured: InMemoryMetricReader
) -> None:
    worker = await harness.new_worker("builder")
    await worker.connect()
    await harness.submit("noop")
    lease = (await worker.expect("assignment")).lease
    worker.report(started_report(lease), completion(lease, workers_pb2.WORK_OUTCOME_SUCCESS))
    await worker.expect("ack")
    (submit,) = named(recorded, "taskyard.submit")
    assert submit.context is not None
    data = measured.get_metrics_data()
    assert data is not None
    [scope] = data.resource_metrics[0].scope_metrics
    exemplars = {
        metric.name: [e for point in metric.data.data_points for e in point.exemplars]
        for metric in scope.metrics
    }
    # Measured in the worker's session call, which is not in the request's trace.
    for name in ("queue_time", "run_duration"):
        [exemplar] = exemplars[name]
        assert (exemplar.trace_id, exemplar.span_id) == (
            submit.context.trace_id,
            submit.context.span_id,
        ), name
    await worker.disconnect()
