"""One OpenTelemetry trace per work request, across scheduler, worker and executor."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from taskyard.testing.otlp import Received, Span, receiver
from taskyard.v1 import work_requests_pb2 as pb
from tests.e2e.client import Client
from tests.e2e.processes import scheduler, worker

pytestmark = pytest.mark.e2e
CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
METRICS = (
    "taskyard.workers.connected",
    "taskyard.work_request.run_duration",
    "taskyard.work_request.queue_time",
    "taskyard.artifact.bytes_received",
)
APPLICATION_SPANS = {
    f"taskyard.{name}"
    for name in ("submit", "queue_wait", "match", "assign", "run", "upload", "complete")
}


def otel(endpoint: str) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_METRIC_EXPORT_INTERVAL": "300",
    }


def in_trace(received: Received, trace_id: str) -> dict[str, list[Span]]:
    spans = [s for s in received.spans if s.trace_id == trace_id]
    by_name: dict[str, list[Span]] = {}
    for span in spans:
        by_name.setdefault(span.name, []).append(span)
    return by_name


def test_one_trace_covers_a_work_request_across_three_processes(tmp_path: Path) -> None:
    with receiver() as (endpoint, received):
        env = otel(endpoint)
        with scheduler(tmp_path / "s", "--auto-enable-workers", env=env) as process:
            client = Client(process)
            worker_env = {**env, "TASKYARD_LOG_FORMAT": "json"}
            with worker(
                process.address, tmp_path / "w", "--allow-command", "sh", env=worker_env
            ) as the_worker:
                client.wait_connected(1)
                traceparent = f"00-{CLIENT_TRACE}-00f067aa0ba902b7-01"
                request = pb.SubmitRequest(
                    task_name="command",
                    task_data_json='{"command": ["sh", "-c", "echo hi"]}',
                )
                submitted = client.work_requests.Submit(
                    request, metadata=(*client.metadata, ("traceparent", traceparent))
                )
                work_request_id = submitted.work_request.id
                assert client.wait(work_request_id).result == pb.WORK_REQUEST_RESULT_SUCCESS
                wanted = APPLICATION_SPANS
                received.wait_for(lambda: wanted <= set(in_trace(received, CLIENT_TRACE)))
                received.wait_for(lambda: "taskyard.work_request.outcomes" in received.metrics)
                worker_pid = the_worker.process.pid
            client.close()
    spans = in_trace(received, CLIENT_TRACE)  # the client's own trace was continued
    [submit] = spans["taskyard.submit"]
    assert submit.service == "taskyard-scheduler"
    assert submit.attributes["taskyard.work_request.id"] == work_request_id
    for name in ("taskyard.queue_wait", "taskyard.match", "taskyard.assign", "taskyard.complete"):
        [span] = spans[name]
        assert (span.service, span.parent_id) == ("taskyard-scheduler", submit.span_id), name
    [run] = spans["taskyard.run"]
    assert (run.service, run.parent_id) == ("taskyard-worker", submit.span_id)
    assert run.attributes["taskyard.result"] == "success"
    assert run.attributes["taskyard.task"] == "command"
    [upload] = spans["taskyard.upload"]
    assert upload.parent_id == run.span_id  # the executor asked the worker to upload
    assert upload.pid == worker_pid
    assert run.pid not in {0, worker_pid}  # the run span comes from the executor process
    server_rpcs = [s for s in received.spans if s.trace_id == CLIENT_TRACE and "/" in s.name]
    assert any("WorkRequestService/Submit" in s.name for s in server_rpcs)
    assert any("ArtifactService/UploadFile" in s.name for s in server_rpcs)
    lines = [json.loads(line) for line in the_worker.log.read_text().splitlines()]
    [uploaded] = [e for e in lines if "debug logs of command uploaded" in e["message"]]
    assert uploaded["trace_id"] == CLIENT_TRACE  # a task's own log line, in the executor
    assert uploaded["logger"] == "taskyard.tasks.command"
    outcomes = received.metrics["taskyard.work_request.outcomes"]
    assert {"taskyard.task": "command", "taskyard.result": "success"} in outcomes
    for name in METRICS:
        assert name in received.metrics, name


def test_a_client_that_samples_its_trace_out_gets_no_spans_of_it(tmp_path: Path) -> None:
    unsampled = "5cf92f3577b34da6a3ce929d0e0e4737"
    with receiver() as (endpoint, received):
        env = otel(endpoint)
        with scheduler(tmp_path / "s", "--auto-enable-workers", env=env) as process:
            client = Client(process)
            with worker(process.address, tmp_path / "w", env=env):
                client.wait_connected(1)
                for trace_id, flags in ((unsampled, "00"), (CLIENT_TRACE, "01")):
                    traceparent = ("traceparent", f"00-{trace_id}-{'1' * 16}-{flags}")
                    submitted = client.work_requests.Submit(
                        pb.SubmitRequest(task_name="noop"), metadata=(*client.metadata, traceparent)
                    )
                    assert client.wait(submitted.work_request.id).result == (
                        pb.WORK_REQUEST_RESULT_SUCCESS
                    )
                # Spans are exported in order: once the sampled request's last
                # spans are here, the unsampled one's would be too.
                wanted = {"taskyard.complete", "taskyard.run"}
                received.wait_for(lambda: wanted <= set(in_trace(received, CLIENT_TRACE)))
            client.close()
    assert in_trace(received, unsampled) == {}


def test_a_requeue_shows_two_attempts_in_the_same_trace(tmp_path: Path) -> None:
    with receiver() as (endpoint, received):
        env = otel(endpoint)
        fast = ("--auto-enable-workers", "--heartbeat-interval", "0.5", "--lease-grace", "1")
        with scheduler(tmp_path / "s", *fast, env=env) as process:
            client = Client(process)
            with worker(process.address, tmp_path / "w1", env=env) as first:
                client.wait_connected(1)
                work_request_id = client.submit("noop", {"sleep": 2})
                client.wait(work_request_id, {pb.WORK_REQUEST_STATE_RUNNING})
                os.kill(first.process.pid, signal.SIGKILL)
                first.process.wait()
            with worker(process.address, tmp_path / "w2", env=env):
                assert client.wait(work_request_id).attempt == 2
                received.wait_for(lambda: len(received.named("taskyard.run")) >= 1)
                received.wait_for(lambda: len(received.named("taskyard.assign")) >= 2)
            client.close()
    [submit] = received.named("taskyard.submit")
    assigns = received.named("taskyard.assign")
    assert {a.trace_id for a in assigns} == {submit.trace_id}
    assert sorted(a.attributes["taskyard.attempt"] for a in assigns) == [1, 2]
    [expired] = received.named("taskyard.lease_expired")
    assert expired.trace_id == submit.trace_id


def test_without_a_collector_everything_still_works(tmp_path: Path) -> None:
    env = otel("http://127.0.0.1:1")  # nothing listens there
    with scheduler(tmp_path / "s", "--auto-enable-workers", env=env) as process:
        client = Client(process)
        with worker(process.address, tmp_path / "w", env=env):
            work_request_id = client.submit("noop")
            assert client.wait(work_request_id).result == pb.WORK_REQUEST_RESULT_SUCCESS
        client.close()
    assert process.process.returncode == 0
