"""Short-lived spans made straight as finished SDK spans.

The SDK's `Span` is built to live long and change from any thread. Its locks,
bounded collections and checks on each attribute cost about 15 us a span, and
a traced scheduler makes five per work request. Those five are short. Some
are recorded after the fact, because their start and end are already known
(queue wait, match, assignment, completion). The submit span lives around one
block that sets a few attributes. A `SpanRecorder` builds such spans as the
SDK's `ReadableSpan`, the finished form every span processor and exporter
takes, and uses the provider's sampler, id generator, resource, span limits
and span processors. So they are sampled, batched and exported exactly like
spans made by the SDK's tracer.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.context import Context
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
)
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.semconv.attributes.exception_attributes import (
    EXCEPTION_MESSAGE,
    EXCEPTION_STACKTRACE,
    EXCEPTION_TYPE,
)
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes, AttributeValue

_UNSET = Status(StatusCode.UNSET)


class RecordingTracerProvider(TracerProvider):
    """The SDK's tracer provider, which also hands out `SpanRecorder`s."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._recorders: dict[str, SpanRecorder] = {}

    def recorder(self, scope: str) -> SpanRecorder:
        """The recorder of spans for instrumentation scope `scope`."""
        if scope not in self._recorders:
            self._recorders[scope] = SpanRecorder(self, InstrumentationScope(scope))
        return self._recorders[scope]


class SpanRecorder:
    """Makes spans of one instrumentation scope as finished SDK spans."""

    def __init__(self, provider: RecordingTracerProvider, scope: InstrumentationScope) -> None:
        self._provider = provider
        self._scope = scope
        # The provider's own: every span of the process goes through the
        # same processors, within the same limits.
        self._processor = provider._active_span_processor
        self._limits: SpanLimits = provider._span_limits
        self._skips_unsampled = _drops_children_of_unsampled(provider.sampler)
        self._keeps_sampled = _keeps_children_of_sampled(provider.sampler)

    def drops_child_of(self, parent: Context | None) -> bool:
        """Whether a span in `parent` is sure to be dropped: its parent is
        unsampled, and the sampler is parent-based with the default of
        sampling no child of an unsampled parent. Then the caller need not
        even build the span's attributes: an unsampled request costs a flag
        test per span, not a sampling decision."""
        if not self._skips_unsampled:
            return False
        context = trace.get_current_span(parent).get_span_context()
        return context.is_valid and not context.trace_flags.sampled

    def start(
        self,
        name: str,
        attributes: Mapping[str, AttributeValue],
        parent: Context | None = None,
        start_time: int | None = None,
    ) -> trace.Span:
        """A span, child of the span current in `parent` (default: the current
        context), or a non-recording span if the sampler drops it."""
        provider = self._provider
        parent_context = trace.get_current_span(parent).get_span_context()
        if parent_context.is_valid:
            trace_id = parent_context.trace_id
            random_ids = parent_context.trace_flags.random_trace_id
        else:
            trace_id = provider.id_generator.generate_trace_id()
            random_ids = provider.id_generator.is_trace_id_random()
        if self._keeps_sampled and parent_context.is_valid and parent_context.trace_flags.sampled:
            # What the parent-based sampler would answer, without asking it.
            decision = Decision.RECORD_AND_SAMPLE
            trace_state: TraceState | None = parent_context.trace_state
            kept = dict(attributes)
        else:
            sampling = provider.sampler.should_sample(
                parent, trace_id, name, SpanKind.INTERNAL, attributes
            )
            decision, trace_state = sampling.decision, sampling.trace_state
            kept = dict(sampling.attributes or {})
        flags = TraceFlags.SAMPLED if decision is Decision.RECORD_AND_SAMPLE else TraceFlags.DEFAULT
        if random_ids:
            flags |= TraceFlags.RANDOM_TRACE_ID
        context = SpanContext(
            trace_id,
            provider.id_generator.generate_span_id(),
            is_remote=False,
            trace_flags=TraceFlags(flags),
            trace_state=trace_state,
        )
        if decision is Decision.DROP:
            return trace.NonRecordingSpan(context)
        return RecordedSpan(
            self,
            name,
            context=context,
            parent=parent_context if parent_context.is_valid else None,
            attributes=kept,
            start_time=start_time if start_time is not None else time.time_ns(),
        )

    def record(
        self,
        name: str,
        attributes: Mapping[str, AttributeValue],
        parent: Context | None,
        start_time: int | None = None,
        end_time: int | None = None,
    ) -> None:
        """A span that began at `start_time` and ended at `end_time` (default: now)."""
        self.start(name, attributes, parent, start_time).end(end_time)

    def finish(self, span: RecordedSpan, end_time: int) -> None:
        """Hand a span that ended to the provider's span processors."""
        attributes: Attributes = span.attributes
        limits = self._limits
        if (
            len(span.attributes) > (limits.max_span_attributes or len(span.attributes))
            or limits.max_span_attribute_length is not None
        ):
            attributes = BoundedAttributes(
                limits.max_span_attributes,
                span.attributes,
                immutable=True,
                max_value_len=limits.max_span_attribute_length,
            )
        self._processor.on_end(
            ReadableSpan(
                span.name,
                span.get_span_context(),
                parent=span.parent,
                resource=self._provider.resource,
                attributes=attributes,
                events=span.events,
                kind=SpanKind.INTERNAL,
                status=span.status,
                start_time=span.start_time,
                end_time=end_time,
                instrumentation_scope=self._scope,
            )
        )


def _drops_children_of_unsampled(sampler: Sampler) -> bool:
    """Whether `sampler` drops every child of an unsampled parent, remote or
    local, as every `parentbased_*` sampler of `OTEL_TRACES_SAMPLER` does.
    ParentBased keeps its delegates private: if that ever changes, this says
    False, and every span is sampled as usual (tests guard it)."""
    return isinstance(sampler, ParentBased) and all(
        getattr(sampler, delegate, None) is ALWAYS_OFF
        for delegate in ("_remote_parent_not_sampled", "_local_parent_not_sampled")
    )


def _keeps_children_of_sampled(sampler: Sampler) -> bool:
    """Whether `sampler` keeps every child of a sampled parent, remote or
    local, with the parent's trace state and no attributes of its own, as
    every `parentbased_*` sampler of `OTEL_TRACES_SAMPLER` does. Then a child
    of a sampled request needs no sampling call. Read as
    `_drops_children_of_unsampled` is (tests guard it)."""
    return isinstance(sampler, ParentBased) and all(
        getattr(sampler, delegate, None) is ALWAYS_ON
        for delegate in ("_remote_parent_sampled", "_local_parent_sampled")
    )


class RecordedSpan(trace.Span):
    """A recording span of one task or coroutine, until `end` hands it on.

    Unlike the SDK's span it takes no lock: it belongs to the code that
    started it, and is not shared between threads. Make it current with
    `trace.use_span`, which records an exception that escapes the block.
    """

    def __init__(
        self,
        recorder: SpanRecorder,
        name: str,
        *,
        context: SpanContext,
        parent: SpanContext | None,
        attributes: dict[str, AttributeValue],
        start_time: int,
    ) -> None:
        self._recorder = recorder
        self.name = name
        self._context = context
        self.parent = parent
        self.attributes = attributes
        self.events: list[Event] = []
        self.status = _UNSET
        self.start_time = start_time
        self._ended = False

    def get_span_context(self) -> SpanContext:
        return self._context

    def is_recording(self) -> bool:
        return not self._ended

    def set_attributes(self, attributes: Mapping[str, AttributeValue]) -> None:
        if not self._ended:
            self.attributes.update(attributes)

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        if not self._ended:
            self.attributes[key] = value

    def add_event(
        self, name: str, attributes: Attributes = None, timestamp: int | None = None
    ) -> None:
        if not self._ended:
            self.events.append(Event(name, attributes, timestamp))

    def update_name(self, name: str) -> None:
        if not self._ended:
            self.name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if self._ended:
            return
        if isinstance(status, StatusCode):
            status = Status(status, description)
        # As the SDK: an OK status is final, and UNSET never replaces another.
        if self.status.status_code is not StatusCode.OK and status.status_code is not (
            StatusCode.UNSET
        ):
            self.status = status

    def record_exception(
        self,
        exception: BaseException,
        attributes: Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        kind, module = type(exception).__qualname__, type(exception).__module__
        self.add_event(
            "exception",
            {
                EXCEPTION_TYPE: kind if module in ("", "builtins") else f"{module}.{kind}",
                EXCEPTION_MESSAGE: str(exception),
                EXCEPTION_STACKTRACE: "".join(traceback.format_exception(exception)),
                "exception.escaped": str(escaped),
                **(attributes or {}),
            },
            timestamp,
        )

    def end(self, end_time: int | None = None) -> None:
        if self._ended:
            return
        self._ended = True
        self._recorder.finish(self, end_time if end_time is not None else time.time_ns())
