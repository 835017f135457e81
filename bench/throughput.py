"""Durable no-op requests end to end, per second, and scheduler CPU per request.

A real scheduler process (SQLite, durable commits) serves N simulated workers
that complete each assignment at once, while clients submit concurrently;
then the same with real `taskyard worker` processes (one executor per slot). In
the same run, a bare gRPC server answers trivial unary calls; the ratio of
scheduler CPU per request to bare CPU per call is what Taskyard costs over the
cheapest possible RPC. Targets: >= 1,500 requests/s, ratio <= 2.5.
The tracing lines compare BatchSubmit throughput with the scheduler exporting
to a test OTLP receiver against without, in rounds that run each
configuration side by side; target for traces: median ratio >= 0.85.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext

from taskyard.rpc.credentials import bearer_metadata
from taskyard.v1 import work_requests_pb2, work_requests_pb2_grpc

from support import (
    Child,
    SimulatedWorker,
    bare_cpu_per_call,
    channel_to,
    cpu_seconds,
    machine,
    otlp_receiver,
    real_workers,
    run_concurrently,
    scheduler_process,
    spans_received,
    wait_for_workers,
)


async def scheduler_run(
    requests: int,
    workers: int,
    slots: int,
    concurrency: int,
    batch: int,
    *,
    env: dict[str, str] | None = None,
    options: Sequence[str] = (),
    alongside: Callable[[Child], AbstractContextManager[object]] = lambda _: nullcontext(),
) -> tuple[float, float]:
    """Requests per second end to end, and scheduler CPU seconds per request.

    With `batch` > 1 clients submit with BatchSubmit, `batch` requests a call;
    with 0, one client sends them all on one SubmitStream.
    The scheduler runs with more `options`, and `alongside` it (status pages
    open, say) while requests flow.
    """
    with scheduler_process(env, options) as (scheduler, admin), alongside(scheduler):
        async with channel_to(scheduler.address) as channel:
            done = asyncio.Event()
            simulated = [SimulatedWorker(channel, f"sim{i}", slots) for i in range(workers)]
            serving = [asyncio.create_task(w.run(done)) for w in simulated]
            await asyncio.sleep(1.0)  # sessions open
            stub = work_requests_pb2_grpc.WorkRequestServiceStub(channel)
            metadata = bearer_metadata(admin)
            request = work_requests_pb2.SubmitRequest(task_name="noop", task_data_json="{}")
            many = work_requests_pb2.BatchSubmitRequest(requests=[request] * batch)
            before, started = cpu_seconds(scheduler.pid), time.perf_counter()
            if batch == 0:  # one SubmitStream
                item = work_requests_pb2.SubmitStreamRequest(request=request)
                async for _ in stub.SubmitStream(iter([item] * requests), metadata=metadata):
                    pass
            elif batch > 1:
                await run_concurrently(
                    requests // batch,
                    concurrency,
                    lambda: stub.BatchSubmit(many, metadata=metadata),
                )
            else:
                await run_concurrently(
                    requests, concurrency, lambda: stub.Submit(request, metadata=metadata)
                )
            while sum(w.completed for w in simulated) < requests:
                await asyncio.sleep(0.01)
            elapsed = time.perf_counter() - started
            cpu = cpu_seconds(scheduler.pid) - before
            done.set()
            for task in serving:
                task.cancel()
            await asyncio.gather(*serving, return_exceptions=True)
    return requests / elapsed, cpu / requests


async def real_run(requests: int, workers: int, slots: int, batch: int) -> tuple[float, float]:
    """As `scheduler_run`, with real worker processes running `noop`."""
    with scheduler_process() as (scheduler, admin):
        async with channel_to(scheduler.address) as channel:
            with real_workers(scheduler.address, workers, slots):
                await wait_for_workers(channel, admin, workers)
                stub = work_requests_pb2_grpc.WorkRequestServiceStub(channel)
                metadata = bearer_metadata(admin)
                completed = stub.Watch(
                    work_requests_pb2.WatchRequest(
                        states=[work_requests_pb2.WORK_REQUEST_STATE_COMPLETED]
                    ),
                    metadata=metadata,
                )
                request = work_requests_pb2.SubmitRequest(task_name="noop")
                many = work_requests_pb2.BatchSubmitRequest(requests=[request] * batch)
                before, started = cpu_seconds(scheduler.pid), time.perf_counter()
                await run_concurrently(
                    requests // batch, 4, lambda: stub.BatchSubmit(many, metadata=metadata)
                )
                seen = 0
                async for _ in completed:
                    seen += 1
                    if seen == requests // batch * batch:
                        break
                elapsed = time.perf_counter() - started
                cpu = cpu_seconds(scheduler.pid) - before
                completed.cancel()
    return seen / elapsed, cpu / seen


TRACED = {
    "traces": {"OTEL_METRICS_EXPORTER": "none"},
    "traces and metrics": {},
    "traces, 10% of requests sampled": {
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.1",
    },
}
SPANS_PER_REQUEST = 5  # submit, queue wait, match, assignment, completion


async def tracing_overhead(args: argparse.Namespace) -> None:
    """BatchSubmit throughput exporting to a test OTLP receiver, against without.

    Each round runs every configuration once, in turn, each with a scheduler
    and a receiver of its own. A traced line's ratio is the median, over the
    rounds, of its rate over the untraced rate of the same round: runs side
    by side share the machine's state, which on a shared machine drifts by
    more than tracing costs. A run counts only if every sampled request's
    spans arrived: a scheduler that dropped spans would look cheaper than it is.
    """
    configurations = {"without telemetry": None, **TRACED}
    rates: dict[str, list[float]] = {label: [] for label in configurations}
    ratios: dict[str, list[float]] = {label: [] for label in TRACED}
    spans: dict[str, int] = {}
    for _ in range(args.tracing_rounds):
        for label, variables in configurations.items():
            rate, spans[label] = await traced_run(args, label, variables)
            rates[label].append(rate)
            if variables is not None:
                ratios[label].append(rate / rates["without telemetry"][-1])
    print(f"  {'median of ' + str(args.tracing_rounds) + ' rounds (range)':<34}")
    for label in configurations:
        line = f"  {label:<34} {_median_range(rates[label], '{:,.0f}')} req/s"
        if label in ratios:
            line += f"  ratio {_median_range(ratios[label], '{:.2f}')}  {spans[label]:,} spans"
        print(line)


async def traced_run(
    args: argparse.Namespace, label: str, variables: dict[str, str] | None
) -> tuple[float, int]:
    """One BatchSubmit run of the line `label`, exporting as `variables` say
    (None: no telemetry): requests per second and the spans that arrived."""
    with otlp_receiver() as receiver:
        env = None
        if variables is not None:
            env = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{receiver.address}", **variables}
        rate, _ = await scheduler_run(
            args.requests, args.workers, args.slots, 4, args.batch, env=env
        )
        spans = spans_received(receiver)
    every_request = variables is not None and "OTEL_TRACES_SAMPLER" not in variables
    if every_request and spans < SPANS_PER_REQUEST * args.requests:
        raise RuntimeError(f"{label}: only {spans} spans arrived")
    return rate, spans


def _median_range(values: list[float], form: str) -> str:
    """'median (lowest-highest)'."""
    low, high = min(values), max(values)
    return f"{form.format(statistics.median(values))} ({form.format(low)}-{form.format(high)})"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--batch", type=int, default=50, help="requests per BatchSubmit")
    parser.add_argument("--real-workers", type=int, default=2, help="worker processes")
    parser.add_argument("--tracing-rounds", type=int, default=5, help="rounds of the tracing lines")
    args = parser.parse_args()
    bare_cpu, bare_rate = await bare_cpu_per_call(args.requests, args.concurrency)
    print(f"machine: {machine()}")
    print(f"{args.requests} no-op requests, {args.workers} simulated workers x {args.slots} slots")
    print(f"bare unary: {bare_rate:,.0f} calls/s, {bare_cpu * 1e6:,.0f} us server CPU per call")
    print(
        f"{'submitting with':<30} {'requests/s':>12} {'CPU/request us':>15} {'ratio to bare':>14}"
    )
    for label, batch, concurrency in (
        (f"Submit x{args.concurrency} in flight", 1, args.concurrency),
        (f"BatchSubmit of {args.batch}", args.batch, 4),
        ("SubmitStream, one stream", 0, 1),
    ):
        rate, cpu = await scheduler_run(args.requests, args.workers, args.slots, concurrency, batch)
        print(f"{label:<30} {rate:>12,.0f} {cpu * 1e6:>15,.0f} {cpu / bare_cpu:>14.2f}")
    print(f"tracing to an OTLP receiver process, BatchSubmit of {args.batch}:")
    await tracing_overhead(args)
    rate, cpu = await real_run(args.requests, args.real_workers, args.slots, args.batch)
    label = f"real workers {args.real_workers}x{args.slots}, batch"
    print(f"{label:<30} {rate:>12,.0f} {cpu * 1e6:>15,.0f} {cpu / bare_cpu:>14.2f}")


if __name__ == "__main__":
    asyncio.run(main())
