"""The scheduler's metrics, through the OpenTelemetry metrics API.

Exported over OTLP when telemetry is configured. The measurements of work
requests are made by an observer of the dispatcher (`MetricsObserver`),
installed only then (`measuring`), in each request's trace, so that an
exemplar names the request rather than whichever RPC is running.
"""

from __future__ import annotations

import functools
import sys
from collections import Counter
from collections.abc import Callable, Iterable

from opentelemetry import metrics
from opentelemetry.context import Context
from opentelemetry.metrics import CallbackOptions, Meter, MeterProvider, Observation

from taskyard.scheduler.domain import ACTIVE_STATES, FINAL_STATES, State, WorkRequest
from taskyard.scheduler.service.live import TenantUsage, WorkerCounts
from taskyard.scheduler.service.observers import Observer
from taskyard.scheduler.service.tracing import context_of

meter = metrics.get_meter("taskyard.scheduler")


class Tally:
    """A counter the scheduler keeps itself, by a fixed tuple of attribute
    values, which an observable counter reads when metrics are collected.

    For what is counted on every request: a synchronous counter's `add`
    costs the SDK about 7 us (a measurement, its attributes hashed, a lock,
    an exemplar offered) where this updates a dict. Rare events keep the
    SDK's counters, whose exemplars point at the trace that counted them.
    """

    def __init__(self, meter: Meter, name: str, keys: tuple[str, ...], description: str) -> None:
        self._keys = keys
        self._counts: Counter[tuple[str, ...]] = Counter()
        meter.create_observable_counter(name, [self._observe], description=description)

    def add(self, *values: str) -> None:
        """Count one, with these values of the attribute keys, in order."""
        self._counts[values] += 1

    def _observe(self, _options: CallbackOptions) -> Iterable[Observation]:
        # Read from the exporting thread: copying the items is one step
        # under the GIL, so an `add` in between cannot break it.
        counted = list(self._counts.items())
        return [Observation(n, dict(zip(self._keys, values, strict=True))) for values, n in counted]


#: Bucket bounds in seconds, from a quick task to a long build (the SDK's
#: default bounds are meant for milliseconds).
SECONDS = (0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800, 3600, 14400)

queue_time = meter.create_histogram(
    "taskyard.work_request.queue_time",
    unit="s",
    description="submit to start of an attempt",
    explicit_bucket_boundaries_advisory=SECONDS,
)
run_duration = meter.create_histogram(
    "taskyard.work_request.run_duration",
    unit="s",
    description="start to end of an attempt",
    explicit_bucket_boundaries_advisory=SECONDS,
)
outcomes = Tally(
    meter,
    "taskyard.work_request.outcomes",
    ("taskyard.task", "taskyard.result"),
    description="ended attempts, by task and result",
)
artifact_bytes = meter.create_counter(
    "taskyard.artifact.bytes_received", unit="By", description="artifact content received"
)
lease_expiries = meter.create_counter(
    "taskyard.lease.expiries", description="leases lost with their worker"
)
requeues = meter.create_counter(
    "taskyard.work_request.requeues", description="attempts sent back to the queue"
)
fenced_writes = meter.create_counter(
    "taskyard.maintenance.writes_refused",
    description="maintenance writes refused: this scheduler had lost the maintenance lease",
)


def measuring() -> bool:
    """Whether measurements are kept (the SDK's meter provider is installed):
    if not, what they would be made in need not even be looked up."""
    return _is_sdk(metrics.get_meter_provider())


@functools.lru_cache(maxsize=4)
def _is_sdk(provider: MeterProvider) -> bool:
    # Not imported here: the SDK is loaded only when metrics are exported.
    sdk = sys.modules.get("opentelemetry.sdk.metrics")
    return sdk is not None and isinstance(provider, sdk.MeterProvider)


def started(work_request: WorkRequest, context: Context) -> None:
    """An attempt started: record how long the request waited. `context` is
    the request's trace, which the measurement's exemplar names."""
    if work_request.started_at is not None:
        waited = (work_request.started_at - work_request.created_at).total_seconds()
        queue_time.record(waited, {"taskyard.task": work_request.task_name}, context)


def finished(work_request: WorkRequest, context: Context) -> None:
    """An attempt ended: record its duration and outcome (in `context`, as `started`)."""
    task, result = work_request.task_name, work_request.result.value or work_request.state.value
    outcomes.add(task, result)
    if work_request.started_at is not None and work_request.completed_at is not None:
        duration = (work_request.completed_at - work_request.started_at).total_seconds()
        attributes = {"taskyard.task": task, "taskyard.result": result}
        run_duration.record(duration, attributes, context)


def observe(
    live: Callable[[], Iterable[WorkRequest]],
    workers: Callable[[], WorkerCounts],
    tenants: Callable[[], list[TenantUsage]],
) -> None:
    """Gauges read when metrics are collected: requests waiting or at work,
    by state and task; the fleet; each tenant's usage against its weight."""

    def pending_by_task(_options: CallbackOptions) -> Iterable[Observation]:
        counts = Counter(w.task_name for w in live() if w.state is State.PENDING)
        return [Observation(n, {"taskyard.task": task}) for task, n in counts.items()]

    def by_state_and_task(_options: CallbackOptions) -> Iterable[Observation]:
        counts = Counter((w.state.value, w.task_name) for w in live())
        return [
            Observation(n, {"taskyard.state": state, "taskyard.task": task})
            for (state, task), n in counts.items()
        ]

    meter.create_observable_gauge("taskyard.work_requests.pending", [pending_by_task])
    meter.create_observable_gauge(
        "taskyard.work_requests.current",
        [by_state_and_task],
        description="requests pending, assigned or running, by state and task",
    )
    for field, description in (
        ("running", "requests assigned or running, by tenant"),
        ("pending", "requests pending, by tenant"),
        ("share", "fraction of the running requests that are the tenant's"),
        ("entitled", "fraction its weight entitles it to, among tenants with work"),
    ):
        meter.create_observable_gauge(
            f"taskyard.tenant.{field}", [_by_tenant(tenants, field)], description=description
        )
    for field, description in (
        ("connected", "workers with an open session"),
        ("enabled", "workers an operator enabled"),
        ("busy", "connected workers running something"),
        ("slots", "slots of connected, enabled workers"),
        ("slots_in_use", "of those slots, how many hold work"),
    ):
        meter.create_observable_gauge(
            f"taskyard.workers.{field}",
            [_reading(workers, field)],
            description=description,
        )


def observe_leading(leading: Callable[[], bool]) -> None:
    """A gauge that is 1 on the scheduler running maintenance, 0 on the others."""
    meter.create_observable_gauge(
        "taskyard.maintenance.leader",
        [lambda _options: [Observation(int(leading()))]],
        description="1 on the scheduler holding the maintenance lease",
    )


def _by_tenant(
    tenants: Callable[[], list[TenantUsage]], field: str
) -> Callable[[CallbackOptions], Iterable[Observation]]:
    return lambda _options: [
        Observation(getattr(usage, field), {"taskyard.tenant": usage.name}) for usage in tenants()
    ]


def _reading(
    workers: Callable[[], WorkerCounts], field: str
) -> Callable[[CallbackOptions], Iterable[Observation]]:
    return lambda _options: [Observation(getattr(workers(), field))]


class MetricsObserver(Observer):
    """Measures what happens to work requests, in their traces."""

    def transitioned(self, before: WorkRequest, after: WorkRequest) -> None:
        if after.state is State.RUNNING:
            started(after, context_of(after))
        elif after.state in FINAL_STATES:
            finished(after, context_of(after))
        elif after.state is State.PENDING and before.state in ACTIVE_STATES:
            requeues.add(1, {"taskyard.task": after.task_name}, context_of(before))

    def lease_expired(self, work_request: WorkRequest, worker: str) -> None:
        lease_expiries.add(1, {"taskyard.task": work_request.task_name}, context_of(work_request))
