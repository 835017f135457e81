"""The generated taskyard.v1 stubs: importable, complete, and JSON-text exact."""

from __future__ import annotations

import json

import pytest
from google.protobuf import descriptor_pool

from taskyard.v1 import (
    artifacts_pb2,
    common_pb2,
    operator_pb2,
    work_requests_pb2,
    work_requests_pb2_grpc,
    workers_pb2,
)

EXPECTED_METHODS = {
    "taskyard.v1.WorkerService": {"Register", "Session"},
    "taskyard.v1.WorkRequestService": {
        "Submit",
        "BatchSubmit",
        "SubmitStream",
        "Get",
        "List",
        "Watch",
        "Abort",
        "Retry",
        "Explain",
        "Logs",
        "GetPipeline",
    },
    "taskyard.v1.OperatorService": {
        "ListWorkers",
        "EnableWorker",
        "DisableWorker",
        "SetWorkerMetadata",
        "SetWorkerTaskFilter",
        "SetWorkerTenants",
        "RefreshWorkerMetadata",
        "RemoveWorker",
        "ListTasks",
        "CreateToken",
        "ListTokens",
        "RevokeToken",
        "Prune",
        "ListTenants",
        "SetTenant",
    },
    "taskyard.v1.ArtifactService": {
        "CreateArtifact",
        "UploadFile",
        "QueryUploadStatus",
        "GetArtifact",
        "ListArtifacts",
        "DownloadArtifact",
    },
}


@pytest.mark.parametrize("service", sorted(EXPECTED_METHODS))
def test_every_service_has_its_methods(service: str) -> None:
    descriptor = descriptor_pool.Default().FindServiceByName(service)
    assert {m.name for m in descriptor.methods} == EXPECTED_METHODS[service]


def test_session_is_one_bidirectional_stream() -> None:
    session = workers_pb2.DESCRIPTOR.services_by_name["WorkerService"].methods_by_name["Session"]
    assert session.client_streaming
    assert session.server_streaming


def test_streaming_shapes_of_upload_download_and_watch() -> None:
    artifacts = artifacts_pb2.DESCRIPTOR.services_by_name["ArtifactService"].methods_by_name
    assert artifacts["UploadFile"].client_streaming
    assert not artifacts["UploadFile"].server_streaming
    assert artifacts["DownloadArtifact"].server_streaming
    watch = work_requests_pb2.DESCRIPTOR.services_by_name["WorkRequestService"].methods_by_name
    assert watch["Watch"].server_streaming
    assert watch["SubmitStream"].client_streaming
    assert watch["SubmitStream"].server_streaming


def test_task_data_travels_as_json_text_and_keeps_big_integers_and_nesting() -> None:
    data = {"n": 2**70, "nested": {"list": [1, {"deep": -(2**63) - 1}]}}
    request = work_requests_pb2.SubmitRequest(task_name="noop", task_data_json=json.dumps(data))
    decoded = work_requests_pb2.SubmitRequest.FromString(request.SerializeToString())
    assert json.loads(decoded.task_data_json) == data


def test_assignment_carries_a_lease_and_trace_context() -> None:
    assignment = workers_pb2.Assignment(
        lease=common_pb2.Lease(work_request_id="wr-1", attempt=2),
        task_name="noop",
        trace_context=common_pb2.TraceContext(
            traceparent="00-" + "1" * 32 + "-" + "2" * 16 + "-01"
        ),
    )
    message = workers_pb2.SessionResponse(
        assignments=workers_pb2.Assignments(assignments=[assignment])
    )
    decoded = workers_pb2.SessionResponse.FromString(message.SerializeToString())
    assert decoded.WhichOneof("message") == "assignments"
    assert decoded.assignments.assignments[0].lease.attempt == 2
    assert decoded.assignments.assignments[0].trace_context.traceparent.startswith("00-1111")


def test_client_stub_is_generated() -> None:
    assert hasattr(work_requests_pb2_grpc, "WorkRequestServiceStub")
    assert operator_pb2.TokenRole.Name(operator_pb2.TOKEN_ROLE_WORKER_ACTIVATION)
