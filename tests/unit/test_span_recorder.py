"""Spans made as finished SDK spans: the provider's sampler, ids, limits and
processors apply, and they join traces like the tracer's own spans."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    ParentBasedTraceIdRatio,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import SpanContext, StatusCode, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import AttributeValue

from taskyard.span_recorder import (
    RecordingTracerProvider,
    SpanBatcher,
    SpanRecord,
    SpanRecorder,
    valid_context,
)
from taskyard.telemetry import context_from, current_trace_context
from taskyard.trace_context import span_context_from, w3c_carrier

TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
PARENT_ID = 0xB7AD6B7169203331
SAMPLED_PARENT = {"traceparent": f"00-{TRACE_ID:032x}-{PARENT_ID:016x}-01"}
UNSAMPLED_PARENT = {"traceparent": f"00-{TRACE_ID:032x}-{PARENT_ID:016x}-00"}


class RecordsExporter(InMemorySpanExporter):
    """Takes spans and `SpanRecord`s, as Taskyard's OTLP exporter does; keeps
    the spans the records stand for, and counts the records."""

    takes_records = True

    def __init__(self) -> None:
        super().__init__()
        self.records = 0

    def export(self, spans: Sequence[ReadableSpan | SpanRecord]) -> SpanExportResult:
        self.records += sum(isinstance(span, SpanRecord) for span in spans)
        return super().export(
            [span.as_span() if isinstance(span, SpanRecord) else span for span in spans]
        )


class Recorded:
    """A provider recording into memory, its recorder, and what it exported:
    through a simple processor, or with `records` through a `SpanBatcher`
    that takes records."""

    def __init__(self, records: bool = False, **provider_options: object) -> None:
        self.exporter = RecordsExporter() if records else InMemorySpanExporter()
        self.provider = RecordingTracerProvider(**provider_options)
        processor = SpanBatcher(self.exporter) if records else SimpleSpanProcessor(self.exporter)
        self.provider.add_span_processor(processor)
        self.recorder: SpanRecorder = self.provider.recorder("taskyard.test")

    def spans(self) -> tuple[ReadableSpan, ...]:
        self.provider.force_flush()
        return self.exporter.get_finished_spans()

    def records(self) -> int:
        """How many spans arrived as records."""
        self.provider.force_flush()
        return self.exporter.records if isinstance(self.exporter, RecordsExporter) else 0

    def only(self) -> ReadableSpan:
        (span,) = self.spans()
        return span


@pytest.fixture(params=["spans", "records"])
def recorded(request: pytest.FixtureRequest) -> Iterator[Recorded]:
    """Every test of the recorder runs with each way its spans are handed on."""
    recorded = Recorded(records=request.param == "records")
    yield recorded
    recorded.provider.shutdown()


def test_recorded_spans_are_handed_to_a_batcher_that_takes_records_as_records() -> None:
    recorded = Recorded(records=True)
    recorded.recorder.record("taskyard.queue_wait", {"taskyard.task": "noop"}, None)
    with recorded.recorder.current("taskyard.submit", {}):
        pass
    assert recorded.records() == 2
    recorded.provider.shutdown()


def test_a_recorded_span_joins_the_stored_trace_with_its_times(recorded: Recorded) -> None:
    recorded.recorder.record(
        "taskyard.queue_wait",
        {"taskyard.task": "noop", "taskyard.attempt": 2},
        span_context_from(SAMPLED_PARENT),
        start_time=1_000,
        end_time=5_000,
    )
    span = recorded.only()
    assert span.name == "taskyard.queue_wait"
    assert span.context is not None
    assert span.context.trace_id == TRACE_ID
    assert span.context.trace_flags.sampled
    assert span.parent is not None
    assert span.parent.span_id == PARENT_ID
    assert span.parent.is_remote
    assert (span.start_time, span.end_time) == (1_000, 5_000)
    assert dict(span.attributes or {}) == {"taskyard.task": "noop", "taskyard.attempt": 2}
    assert span.instrumentation_scope is not None
    assert span.instrumentation_scope.name == "taskyard.test"
    assert span.resource is recorded.provider.resource
    assert span.status.status_code is StatusCode.UNSET


def use_span(recorder: SpanRecorder, name: str) -> AbstractContextManager[trace.Span]:
    return trace.use_span(recorder.start(name, {}), end_on_exit=True)


def current(recorder: SpanRecorder, name: str) -> AbstractContextManager[trace.Span]:
    return recorder.current(name, {})


# The recorder's own `current` must behave as the SDK's `use_span` does.
MAKE_CURRENT = pytest.mark.parametrize("make_current", [use_span, current])
Current = Callable[[SpanRecorder, str], AbstractContextManager[trace.Span]]


@MAKE_CURRENT
def test_a_current_span_is_the_parent_of_what_runs_inside_it(
    recorded: Recorded, make_current: Current
) -> None:
    tracer = recorded.provider.get_tracer("inside")
    with make_current(recorded.recorder, "taskyard.submit") as span:
        carrier = current_trace_context()
        tracer.start_span("child").end()
        span.set_attribute("taskyard.created", True)
    child, submit = recorded.spans()
    assert submit.name == "taskyard.submit"
    assert submit.parent is None
    assert submit.context is not None
    assert child.context is not None
    assert child.parent == submit.context
    assert child.context.trace_id == submit.context.trace_id
    ids = submit.context
    assert ids.trace_flags.sampled
    assert carrier["traceparent"] == (
        f"00-{ids.trace_id:032x}-{ids.span_id:016x}-{ids.trace_flags:02x}"
    )
    assert dict(submit.attributes or {}) == {"taskyard.created": True}
    assert submit.end_time is not None
    assert submit.start_time is not None
    assert submit.end_time >= submit.start_time


@MAKE_CURRENT
def test_an_escaping_exception_marks_the_span_failed(
    recorded: Recorded, make_current: Current
) -> None:
    with (
        pytest.raises(ValueError, match="bad task data"),
        make_current(recorded.recorder, "taskyard.submit"),
    ):
        raise ValueError("bad task data")
    span = recorded.only()
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "ValueError: bad task data"
    (event,) = span.events
    assert event.name == "exception"
    assert event.attributes is not None
    assert event.attributes["exception.type"] == "ValueError"
    assert event.attributes["exception.message"] == "bad task data"


@MAKE_CURRENT
def test_a_cancellation_is_not_a_failure(recorded: Recorded, make_current: Current) -> None:
    with pytest.raises(asyncio.CancelledError), make_current(recorded.recorder, "taskyard.submit"):
        raise asyncio.CancelledError
    span = recorded.only()  # ended all the same
    assert span.status.status_code is StatusCode.UNSET
    assert span.events == ()
    assert not trace.get_current_span().get_span_context().is_valid  # no longer current


def test_a_span_is_handed_on_once_and_not_changed_after_it_ended(recorded: Recorded) -> None:
    span = recorded.recorder.start("taskyard.assign", {"taskyard.worker": "w1"})
    span.set_status(StatusCode.OK)
    span.set_status(StatusCode.ERROR, "too late: OK is final")
    span.end()
    span.end()
    span.set_attribute("taskyard.worker", "w2")
    assert not span.is_recording()
    exported = recorded.only()
    assert exported.status.status_code is StatusCode.OK
    assert dict(exported.attributes or {}) == {"taskyard.worker": "w1"}


def test_an_unsampled_trace_records_nothing_but_still_propagates(recorded: Recorded) -> None:
    span = recorded.recorder.start("taskyard.match", {}, context_from(UNSAMPLED_PARENT))
    assert not span.is_recording()
    assert span.get_span_context().trace_id == TRACE_ID
    assert not span.get_span_context().trace_flags.sampled
    span.end()
    recorded.recorder.record("taskyard.assign", {}, span_context_from(UNSAMPLED_PARENT))
    assert recorded.spans() == ()


@pytest.mark.parametrize("sampler", [ParentBased(ALWAYS_ON), ParentBasedTraceIdRatio(0.5)])
def test_children_of_an_unsampled_parent_are_known_dropped_under_parent_based_sampling(
    sampler: Sampler,
) -> None:
    recorder = Recorded(sampler=sampler).recorder
    assert recorder.drops_child_of(span_context_from(UNSAMPLED_PARENT))
    assert not recorder.drops_child_of(span_context_from(SAMPLED_PARENT))
    assert not recorder.drops_child_of(None)  # a new trace: the sampler decides


@pytest.mark.parametrize(
    "sampler", [ALWAYS_ON, ParentBased(ALWAYS_ON, remote_parent_not_sampled=ALWAYS_ON)]
)
def test_a_sampler_that_may_keep_children_of_unsampled_parents_is_asked(sampler: Sampler) -> None:
    recorded = Recorded(sampler=sampler)
    assert not recorded.recorder.drops_child_of(span_context_from(UNSAMPLED_PARENT))
    recorded.recorder.record("taskyard.assign", {}, span_context_from(UNSAMPLED_PARENT))
    assert recorded.only().name == "taskyard.assign"


@pytest.mark.parametrize("sampler", [ALWAYS_ON, ParentBased(ALWAYS_ON)])
def test_a_new_trace_under_a_sampler_that_keeps_every_root_needs_no_sampling_call(
    sampler: Sampler, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorded = Recorded(sampler=sampler)
    sdk_root = recorded.provider.get_tracer("sdk").start_span("sdk")
    sdk_root.end()
    asked = []
    monkeypatch.setattr(sampler, "should_sample", lambda *args, **kwargs: asked.append(args))
    ours = recorded.recorder.start("taskyard.submit", {"taskyard.task": "noop"})
    ours.end()
    assert asked == []
    root = ours.get_span_context()
    assert root.is_valid
    assert root.trace_id != sdk_root.get_span_context().trace_id
    assert root.trace_flags == sdk_root.get_span_context().trace_flags
    assert root.trace_state == sdk_root.get_span_context().trace_state
    assert dict(recorded.spans()[-1].attributes or {}) == {"taskyard.task": "noop"}


class CountedParentBased(ParentBased):
    """The default sampler, counting the decisions it is asked for."""

    calls = 0

    def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
        self.calls += 1
        return super().should_sample(*args, **kwargs)


def test_a_child_of_a_sampled_parent_is_kept_as_the_sampler_would_keep_it() -> None:
    sampler = CountedParentBased(ALWAYS_ON)
    recorded = Recorded(sampler=sampler)
    parent = context_from({**SAMPLED_PARENT, "tracestate": "vendor=value"})
    expected = sampler.should_sample(parent, TRACE_ID, "taskyard.assign", attributes={"n": 1})
    sampler.calls = 0
    span = recorded.recorder.start("taskyard.assign", {"n": 1}, parent)
    span.end()
    assert sampler.calls == 0  # not asked
    assert span.get_span_context().trace_flags.sampled
    assert span.get_span_context().trace_state == expected.trace_state
    assert recorded.only().attributes == expected.attributes
    recorded.recorder.start("taskyard.submit", {}).end()  # a new trace: asked
    assert sampler.calls == 1


def test_a_recorded_child_of_a_sampled_parent_needs_no_sampling_call() -> None:
    sampler = CountedParentBased(ALWAYS_ON)
    recorded = Recorded(sampler=sampler)
    parent = span_context_from({**SAMPLED_PARENT, "tracestate": "vendor=value"})
    recorded.recorder.record("taskyard.complete", {"n": 1}, parent, 10, 20)
    recorded.recorder.record("taskyard.complete", {"n": 2}, None, 10, 20)  # a new trace: asked
    assert sampler.calls == 1
    child, root = recorded.spans()
    assert child.context is not None
    assert child.context.trace_id == TRACE_ID
    assert child.context.trace_state == parent.trace_state
    assert child.context.trace_flags.sampled
    assert not child.context.is_remote
    assert child.parent == parent
    assert root.parent is None
    assert root.context is not None
    assert root.context.trace_id != TRACE_ID


@pytest.mark.parametrize("state", ["", "vendor=value,other=1"])
def test_a_w3c_carrier_reads_back_as_the_span_context_it_was_written_from(
    recorded: Recorded, state: str
) -> None:
    carrier = {**SAMPLED_PARENT, "tracestate": state} if state else SAMPLED_PARENT
    remote = span_context_from(carrier)
    assert remote.is_remote
    assert remote.is_valid
    assert w3c_carrier(remote) == carrier
    assert span_context_from(w3c_carrier(remote)) == remote
    assert not span_context_from({}).is_valid


def test_a_sampler_that_may_drop_children_of_sampled_parents_is_asked() -> None:
    recorded = Recorded(sampler=ParentBased(ALWAYS_ON, remote_parent_sampled=ALWAYS_OFF))
    span = recorded.recorder.start("taskyard.assign", {}, context_from(SAMPLED_PARENT))
    span.end()
    assert not span.get_span_context().trace_flags.sampled
    assert recorded.spans() == ()


@pytest.mark.parametrize("sampler", [ALWAYS_OFF, ParentBased(TraceIdRatioBased(0.0))])
def test_the_providers_sampler_decides_for_new_traces(sampler: object) -> None:
    recorded = Recorded(sampler=sampler)
    span = recorded.recorder.start("taskyard.submit", {})
    assert span.get_span_context().is_valid
    assert not span.is_recording()
    span.end()
    assert recorded.spans() == ()


@pytest.mark.parametrize("records", [False, True])
def test_the_providers_span_limits_apply(records: bool) -> None:
    limits = SpanLimits(max_span_attributes=2, max_span_attribute_length=4)
    recorded = Recorded(records, span_limits=limits)
    attributes: dict[str, AttributeValue] = {"a": 1, "b": "long value", "c": 3}
    recorded.recorder.record("taskyard.complete", attributes, None)
    recorded.provider.get_tracer("sdk").start_span("sdk", attributes=attributes).end()
    ours, sdks = recorded.spans()
    assert dict(ours.attributes or {}) == dict(sdks.attributes or {}) == {"b": "long", "c": 3}
    assert ours.dropped_attributes == sdks.dropped_attributes == 1
    assert recorded.records() == 0  # a bounded span is built as the SDK's
    recorded.provider.shutdown()


class RecordOnly(Sampler):
    """Records every span and samples none (RECORD_ONLY)."""

    def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
        return SamplingResult(Decision.RECORD_ONLY)

    def get_description(self) -> str:
        return "RecordOnly"


def test_a_span_the_sampler_only_records_is_not_exported() -> None:
    recorded = Recorded(records=True, sampler=RecordOnly())
    with recorded.recorder.current("taskyard.submit", {}) as span:
        assert span.is_recording()
    assert recorded.spans() == ()
    recorded.provider.shutdown()


@pytest.mark.parametrize(
    "parent",
    [None, span_context_from(SAMPLED_PARENT)],
    ids=["new trace", "child of a sampled parent"],  # asked of the sampler, or not
)
def test_only_a_span_within_the_limit_on_attributes_is_handed_on_as_a_record(
    parent: SpanContext | None,
) -> None:
    recorded = Recorded(records=True, span_limits=SpanLimits(max_span_attributes=2))
    recorded.recorder.record("within", {"a": 1, "b": 2}, parent)
    recorded.recorder.record("past", {"a": 1, "b": 2, "c": 3}, parent)
    within, past = recorded.spans()
    assert recorded.records() == 1
    assert dict(within.attributes or {}) == {"a": 1, "b": 2}
    assert dict(past.attributes or {}) == {"b": 2, "c": 3}
    assert past.dropped_attributes == 1
    recorded.provider.shutdown()


class TaskDataError(Exception):
    pass


def test_an_exception_is_named_as_the_sdk_names_it(recorded: Recorded) -> None:
    span = recorded.recorder.start("taskyard.submit", {})
    span.record_exception(TaskDataError("no"))
    span.end()
    (event,) = recorded.only().events
    assert event.attributes is not None
    assert event.attributes["exception.type"] == f"{__name__}.TaskDataError"


@pytest.mark.parametrize(
    "carrier",
    [
        SAMPLED_PARENT,
        UNSAMPLED_PARENT,
        {**SAMPLED_PARENT, "tracestate": "vendor=value,other=1"},
        {"traceparent": f"00-{TRACE_ID:032x}-{PARENT_ID:016x}-03"},
        {"traceparent": f"00-{TRACE_ID:032X}-{PARENT_ID:016X}-01"},  # upper case
        {"traceparent": f"00-{0:032x}-{PARENT_ID:016x}-01"},  # no trace id
        {"traceparent": f"00-{TRACE_ID:032x}-{0:016x}-01"},  # no span id
        {"traceparent": f"ff-{TRACE_ID:032x}-{PARENT_ID:016x}-01"},  # forbidden version
        {"traceparent": f"01-{TRACE_ID:032x}-{PARENT_ID:016x}-01-future"},
        {"traceparent": f" 00-{TRACE_ID:032x}-{PARENT_ID:016x}-01"},
        {"traceparent": "garbage"},
        {},
    ],
)
def test_a_carrier_reads_as_the_sdks_w3c_propagator_reads_it(carrier: dict[str, str]) -> None:
    by_sdk = TraceContextTextMapPropagator().extract(carrier)
    assert span_context_from(carrier) == trace.get_current_span(by_sdk).get_span_context()


def test_a_context_built_for_known_valid_ids_is_the_constructors() -> None:
    state = TraceState.from_header(["vendor=value"])
    for flags in (TraceFlags(TraceFlags.SAMPLED), TraceFlags(3)):
        built = valid_context(TRACE_ID, PARENT_ID, flags, state)
        made = SpanContext(TRACE_ID, PARENT_ID, False, flags, state)
        assert built == made
        assert (built.trace_id, built.span_id, built.is_remote) == (TRACE_ID, PARENT_ID, False)
        assert (built.trace_flags, built.trace_state, built.is_valid) == (flags, state, True)
