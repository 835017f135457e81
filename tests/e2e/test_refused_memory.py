"""A refused call retains nothing: a flood of large requests that the
scheduler refuses, by a stranger or by a client, leaves its memory where it
was (README, "Limits": the bound is 128 MiB after 500 refused 3 MiB calls of
each kind; about 40 MiB measured)."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import psutil
import pytest

from taskyard.rpc.credentials import bearer_metadata
from taskyard.v1 import work_requests_pb2 as pb
from taskyard.v1 import work_requests_pb2_grpc
from tests.e2e.processes import scheduler

pytestmark = pytest.mark.e2e
MIB = 1024 * 1024
#: What the scheduler may grow by, whatever the number of refused calls.
BOUND = 128 * MIB
CALLS = 500


def test_refused_large_calls_leave_memory_where_it_was(tmp_path: Path) -> None:
    with scheduler(tmp_path / "s") as process:
        admin = bearer_metadata((process.data_dir / "admin.token").read_text().strip())
        options = [("grpc.max_send_message_length", 8 * MIB)]
        with grpc.insecure_channel(process.address, options=options) as channel:
            stub = work_requests_pb2_grpc.WorkRequestServiceStub(channel)
            too_large = json.dumps({"command": ["true"], "padding": "x" * (3 * MIB)})
            request = pb.SubmitRequest(task_name="command", task_data_json=too_large)
            stub.List(pb.ListRequest(), metadata=admin)  # warm: channel, caches, first call
            before = psutil.Process(process.process.pid).memory_info().rss
            codes = set()
            for metadata in ((), admin):  # a stranger, then a client
                for _ in range(CALLS):
                    with pytest.raises(grpc.RpcError) as refused:
                        stub.Submit(request, metadata=metadata)
                    codes.add(refused.value.code())
            after = psutil.Process(process.process.pid).memory_info().rss
    assert codes == {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.INVALID_ARGUMENT}
    print(f"RSS {before / MIB:.0f} -> {after / MIB:.0f} MiB after {2 * CALLS} refused calls")
    assert after - before < BOUND
