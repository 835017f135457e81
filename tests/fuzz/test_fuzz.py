"""Fuzzing every RPC of a real scheduler as an attacker and a careless client would.

Every request message of every service, generated from its descriptor
(`strategies.py`), sent by each kind of caller, whole or as truncated and
mutated bytes, and worker sessions with their messages in any order. Whatever
arrives: never INTERNAL or UNKNOWN, never a traceback in the log, health
SERVING throughout, bounded memory, and a clean restart on the same data
afterwards.

`make fuzz` runs it long (TASKYARD_FUZZ_EXAMPLES, default 300 here) and prints
the figures.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taskyard.rpc.credentials import CHANNEL_OPTIONS
from taskyard.scheduler.server import SERVICES
from taskyard.v1 import artifacts_pb2, operator_pb2, work_requests_pb2, workers_pb2
from tests.fuzz import strategies
from tests.fuzz.server import WORKERS, SchedulerUnderFuzz

EXAMPLES = int(os.environ.get("TASKYARD_FUZZ_EXAMPLES", "1000"))
#: What the scheduler's RSS may grow by over a run (README: "Limits"): its
#: caches are bounded at 40 MiB; the rest is what gRPC, the interpreter and
#: SQLite keep of the largest messages.
MAX_RSS_GROWTH = 256 * 1024 * 1024
CALLERS = ["admin", "submit", "worker", "anonymous"]
FORBIDDEN = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
_FILES = (artifacts_pb2, operator_pb2, work_requests_pb2, workers_pb2)


def _methods() -> list[MethodDescriptor]:
    found = []
    for name in SERVICES:
        for module in _FILES:
            service = module.DESCRIPTOR.services_by_name.get(name.rsplit(".", 1)[-1])
            if service is not None and service.full_name == name:
                found.extend(service.methods)
    return found


METHODS = _methods()
codes: Counter[str] = Counter()
sent: Counter[str] = Counter()


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SchedulerUnderFuzz]:
    root = tmp_path_factory.mktemp("fuzz")
    server = SchedulerUnderFuzz(root / "data", root / "scheduler.log")
    server.start()
    before = server.rss()
    try:
        yield server
    finally:
        after = server.rss() if server.alive() else 0
        exit_code = server.stop()
    report(before, after, server)
    assert exit_code == 0, server.log.read_text()[-3000:]
    assert server.tracebacks() == 0, server.log.read_text()[-3000:]
    assert after - before < MAX_RSS_GROWTH, f"RSS grew by {(after - before) >> 20} MiB"
    again = SchedulerUnderFuzz(server.data_dir, root / "restart.log")
    again.start()  # a clean restart on what the run stored
    try:
        assert health(again) == health_pb2.HealthCheckResponse.SERVING
    finally:
        assert again.stop() == 0


def report(before: int, after: int, server: SchedulerUnderFuzz) -> None:
    lines = [
        f"fuzz: {sent['messages']} messages in {sum(codes.values())} calls",
        "fuzz: codes " + ", ".join(f"{c}={n}" for c, n in codes.most_common()),
        f"fuzz: scheduler RSS {before >> 20} MiB before, {after >> 20} MiB after",
        f"fuzz: {server.log_lines()} scheduler log lines, {server.tracebacks()} tracebacks",
    ]
    print("\n" + "\n".join(lines))
    target = os.environ.get("TASKYARD_FUZZ_REPORT")
    if target:
        Path(target).write_text("\n".join(lines) + "\n")


def health(server: SchedulerUnderFuzz) -> int:
    with server.channel() as channel:
        stub: Any = health_pb2_grpc.HealthStub(channel)
        answer = stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
    return int(answer.status)


def call(
    server: SchedulerUnderFuzz,
    channel: grpc.Channel,
    method: MethodDescriptor,
    caller: str,
    payloads: list[bytes],
) -> grpc.StatusCode:
    """Send `payloads` (one for a unary request) to `method`; the final code."""
    path = f"/{method.containing_service.full_name}/{method.name}"
    sent["messages"] += len(payloads)
    metadata = server.callers[caller]
    options: dict[str, Any] = {"metadata": metadata, "timeout": 0.5}
    try:
        if method.client_streaming:
            if method.server_streaming:
                for _ in channel.stream_stream(path, None, None)(iter(payloads), **options):
                    pass
            else:
                channel.stream_unary(path, None, None)(iter(payloads), **options)
        elif method.server_streaming:
            for _ in channel.unary_stream(path, None, None)(payloads[0], **options):
                pass
        else:
            channel.unary_unary(path, None, None)(payloads[0], **options)
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def input_class(method: MethodDescriptor) -> Any:
    return message_factory.GetMessageClass(method.input_type)


@st.composite
def requests(draw: st.DrawFn) -> tuple[MethodDescriptor, str, list[bytes]]:
    method = draw(st.sampled_from(METHODS))
    caller = draw(st.sampled_from(CALLERS))
    count = draw(st.integers(1, 4)) if method.client_streaming else 1
    payloads = []
    for _ in range(count):
        message = draw(strategies.messages(input_class(method)))
        data = message.SerializeToString() if message is not None else b""
        if draw(st.integers(0, 9)) == 0:
            data = draw(strategies.mutated(data))
        payloads.append(data)
    return method, caller, payloads


FUZZ = settings(
    max_examples=EXAMPLES,
    suppress_health_check=list(HealthCheck),
    deadline=None,
    database=None,
)
#: Sessions cost a commit each (the hello): a fifth as many.
SESSIONS = settings(FUZZ, max_examples=max(1, EXAMPLES // 5))


@FUZZ
@given(request=requests())
def test_no_request_breaks_the_scheduler(
    scheduler: SchedulerUnderFuzz, request: tuple[MethodDescriptor, str, list[bytes]]
) -> None:
    method, caller, payloads = request
    code = call(scheduler, scheduler.shared_channel(), method, caller, payloads)
    codes[code.name] += 1
    assert code not in FORBIDDEN, (method.full_name, caller, payloads[:1])
    if sum(codes.values()) % 250 == 0:  # SERVING throughout, not only at the end
        assert health(scheduler) == health_pb2.HealthCheckResponse.SERVING


SESSION = next(m for m in METHODS if m.name == "Session")
HELLO = workers_pb2.SessionRequest(
    hello=workers_pb2.WorkerHello(metadata_json="{}", slots=2, protocol_version=2)
).SerializeToString()


@SESSIONS
@given(
    hello_first=st.booleans(),
    messages=st.lists(strategies.messages(workers_pb2.SessionRequest), max_size=6),
)
def test_session_messages_in_any_order(
    scheduler: SchedulerUnderFuzz, hello_first: bool, messages: list[Any]
) -> None:
    payloads = [m.SerializeToString() for m in messages if m is not None]
    if hello_first:
        payloads.insert(0, HELLO)
    code = call(scheduler, scheduler.shared_channel(), SESSION, "worker", payloads or [HELLO])
    codes[code.name] += 1
    assert code not in FORBIDDEN


#: Concurrent sessions (and uploads) per example.
CROWD = 16
#: gRPC refuses a message past 4 MiB before the scheduler sees it, and an
#: asyncio client still writing then reports an INTERNAL of its own (its
#: write failed); the sequential tests above send those.
WITHIN_GRPC_LIMIT = 4 * 1024 * 1024 - 1024
CROWDS = settings(FUZZ, max_examples=max(1, EXAMPLES // 20))


@st.composite
def payloads(draw: st.DrawFn, message_class: Any, most: int) -> list[bytes]:
    """Up to `most` messages of `message_class`, one in five mutated."""
    found = []
    for message in draw(st.lists(strategies.messages(message_class), max_size=most)):
        data = message.SerializeToString() if message is not None else b""
        if draw(st.integers(0, 4)) == 0:
            data = draw(strategies.mutated(data))
        if len(data) < WITHIN_GRPC_LIMIT:
            found.append(data)
    return found


@st.composite
def crowds(draw: st.DrawFn) -> list[tuple[str, int, list[bytes]]]:
    """What CROWD clients send at once: worker sessions (shared and distinct
    workers, a hello first or not) and uploads."""
    crowd = []
    for _ in range(CROWD):
        if draw(st.integers(0, 4)) == 0:
            crowd.append(("upload", 0, draw(payloads(artifacts_pb2.UploadFileRequest, 4))))
            continue
        messages = draw(payloads(workers_pb2.SessionRequest, 6))
        if draw(st.integers(0, 4)) > 0:
            messages.insert(0, HELLO)
        worker = draw(st.integers(0, WORKERS - 1))
        crowd.append(("session", worker, messages or [HELLO]))
    return crowd


async def _crowd_call(
    channel: grpc.aio.Channel, path: str, metadata: Any, payloads: list[bytes], stream: bool
) -> grpc.StatusCode:
    options: dict[str, Any] = {"metadata": metadata, "timeout": 1.0}
    try:
        if stream:
            async for _ in channel.stream_stream(path, None, None)(iter(payloads), **options):
                pass
        else:
            await channel.stream_unary(path, None, None)(iter(payloads), **options)
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def _send_crowd(
    scheduler: SchedulerUnderFuzz, crowd: list[tuple[str, int, list[bytes]]]
) -> list[grpc.StatusCode]:
    async with grpc.aio.insecure_channel(scheduler.address, options=CHANNEL_OPTIONS) as channel:
        calls = [
            _crowd_call(channel, UPLOAD_PATH, scheduler.workers[0], messages, stream=False)
            if kind == "upload"
            else _crowd_call(channel, SESSION_PATH, scheduler.workers[worker], messages, True)
            for kind, worker, messages in crowd
        ]
        return list(await asyncio.gather(*calls))


SESSION_PATH = "/taskyard.v1.WorkerService/Session"
UPLOAD_PATH = "/taskyard.v1.ArtifactService/UploadFile"


@CROWDS
@given(crowd=crowds())
def test_many_sessions_at_once(
    scheduler: SchedulerUnderFuzz, crowd: list[tuple[str, int, list[bytes]]]
) -> None:
    """Sessions of several workers at once, replacing each other, with
    mutated messages, beside uploads: never INTERNAL, whoever was first."""
    sent["messages"] += sum(len(messages) for _, _, messages in crowd)
    found = asyncio.run(_send_crowd(scheduler, crowd))
    for code in found:
        codes[code.name] += 1
    assert not FORBIDDEN & set(found), found


def test_health_stays_serving(scheduler: SchedulerUnderFuzz) -> None:
    assert health(scheduler) == health_pb2.HealthCheckResponse.SERVING
    assert scheduler.alive()
