"""Request checks at the edge: every field type against the limits table."""

from __future__ import annotations

import pytest
from google.protobuf import duration_pb2, timestamp_pb2

from taskyard.errors import InvalidArgumentError
from taskyard.scheduler.api.validation import check
from taskyard.v1 import artifacts_pb2, operator_pb2, work_requests_pb2, workers_pb2


def violations(message: object) -> list[str]:
    with pytest.raises(InvalidArgumentError) as caught:
        check(message)  # type: ignore[arg-type]
    return [v.field for v in caught.value.violations]


def test_a_valid_request_passes() -> None:
    check(
        work_requests_pb2.SubmitRequest(
            task_name="noop",
            task_data_json='{"sleep": 1}',
            timeout=duration_pb2.Duration(seconds=60),
            max_attempts=3,
        )
    )


@pytest.mark.parametrize(
    ("message", "field"),
    [
        (work_requests_pb2.SubmitRequest(timeout=duration_pb2.Duration(seconds=2**62)), "timeout"),
        (work_requests_pb2.SubmitRequest(timeout=duration_pb2.Duration(seconds=-1)), "timeout"),
        (
            work_requests_pb2.SubmitRequest(timeout=duration_pb2.Duration(seconds=1, nanos=-1)),
            "timeout",
        ),
        (work_requests_pb2.SubmitRequest(task_data_json='{"y": "\\udfff"}'), "task_data_json"),
        (work_requests_pb2.SubmitRequest(task_name="a\0b"), "task_name"),
        (work_requests_pb2.SubmitRequest(task_name="x" * 201), "task_name"),
        (work_requests_pb2.SubmitRequest(max_attempts=101), "max_attempts"),
        (work_requests_pb2.ListRequest(states=[99]), "states[0]"),  # type: ignore[list-item]
        (work_requests_pb2.ListRequest(page_size=-1), "page_size"),
        (artifacts_pb2.ListArtifactsRequest(page_size=-1), "page_size"),
        (workers_pb2.WorkerHello(slots=2**32 - 1), "slots"),
        (
            workers_pb2.SessionRequest(
                metadata_update=workers_pb2.MetadataUpdate(metadata_json="[" * 40 + "]" * 40)
            ),
            "metadata_update.metadata_json",
        ),
        (
            artifacts_pb2.CreateArtifactRequest(expires_at=timestamp_pb2.Timestamp(seconds=2**62)),
            "expires_at",
        ),
        (
            artifacts_pb2.CreateArtifactRequest(files=[artifacts_pb2.ArtifactFile(size=-5)]),
            "files[0].size",
        ),
        (operator_pb2.CreateTokenRequest(ttl=duration_pb2.Duration(seconds=10**11)), "ttl"),
        (operator_pb2.CreateTokenRequest(description="d" * 1001), "description"),
        (
            work_requests_pb2.BatchSubmitRequest(
                requests=[work_requests_pb2.SubmitRequest()] * 20_001
            ),
            "requests",
        ),
        (
            work_requests_pb2.SubmitRequest(after=[work_requests_pb2.Dependency(on="x")] * 20_001),
            "after",
        ),
        (work_requests_pb2.SubmitRequest(ref="r" * 101), "ref"),
    ],
)
def test_each_limit_names_its_field(message: object, field: str) -> None:
    assert field in violations(message)


def test_every_violation_is_reported_and_task_data_keeps_its_reason() -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        check(work_requests_pb2.SubmitRequest(task_data_json="{", priority=1, task_name="\0"))
    assert {v.field for v in caught.value.violations} == {"task_name", "task_data_json"}
    request = work_requests_pb2.SubmitRequest(task_data_json="{")
    with pytest.raises(InvalidArgumentError) as caught:
        check(request)
    assert caught.value.reason == "TASK_DATA_INVALID"
