"""A small synchronous client for end-to-end tests."""

from __future__ import annotations

import json
import time
from typing import Any

import grpc

from taskyard.rpc.credentials import bearer_metadata
from taskyard.v1 import operator_pb2, operator_pb2_grpc, work_requests_pb2, work_requests_pb2_grpc
from tests.e2e.processes import SchedulerProcess

FINAL = {
    work_requests_pb2.WORK_REQUEST_STATE_COMPLETED,
    work_requests_pb2.WORK_REQUEST_STATE_ABORTED,
}


class Client:
    """Admin access to a scheduler process."""

    def __init__(self, scheduler: SchedulerProcess) -> None:
        # A subchannel of its own: one shared with a client of a scheduler
        # that died would still be waiting out its reconnection backoff.
        self.channel = grpc.insecure_channel(
            scheduler.address, options=[("grpc.use_local_subchannel_pool", 1)]
        )
        self.metadata = bearer_metadata((scheduler.data_dir / "admin.token").read_text().strip())
        self.work_requests = work_requests_pb2_grpc.WorkRequestServiceStub(self.channel)
        self.operator = operator_pb2_grpc.OperatorServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def submit(self, task: str, data: Any = None, **fields: Any) -> str:
        request = work_requests_pb2.SubmitRequest(
            task_name=task, task_data_json=json.dumps(data or {}), **fields
        )
        response = self.work_requests.Submit(request, metadata=self.metadata, timeout=10)
        return response.work_request.id

    def get(self, work_request_id: str) -> work_requests_pb2.WorkRequest:
        request = work_requests_pb2.GetRequest(id=work_request_id)
        return self.work_requests.Get(request, metadata=self.metadata, timeout=10).work_request

    def wait(
        self, work_request_id: str, states: set[Any] | None = None, timeout: float = 60
    ) -> Any:
        """Poll until the request is in one of `states` (default: a final state);
        tolerates a restarting scheduler."""
        states = FINAL if states is None else states
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                last = self.get(work_request_id)
            except grpc.RpcError:
                last = None
            if last is not None and last.state in states:
                return last
            time.sleep(0.1)
        raise AssertionError(f"{work_request_id} did not reach {states} in {timeout}s: {last}")

    def explain(self, work_request_id: str) -> work_requests_pb2.ExplainResponse:
        request = work_requests_pb2.ExplainRequest(id=work_request_id)
        return self.work_requests.Explain(request, metadata=self.metadata, timeout=10)

    def abort(self, work_request_id: str) -> None:
        request = work_requests_pb2.AbortRequest(id=work_request_id)
        self.work_requests.Abort(request, metadata=self.metadata, timeout=10)

    def enable(self, name: str) -> None:
        request = operator_pb2.EnableWorkerRequest(name=name)
        self.operator.EnableWorker(request, metadata=self.metadata, timeout=10)

    def workers(self) -> list[operator_pb2.Worker]:
        request = operator_pb2.ListWorkersRequest()
        return list(self.operator.ListWorkers(request, metadata=self.metadata, timeout=10).workers)

    def wait_connected(self, count: int, timeout: float = 30) -> list[operator_pb2.Worker]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                connected = [w for w in self.workers() if w.connected]
            except grpc.RpcError:  # a scheduler still starting
                connected = []
            if len(connected) >= count:
                return connected
            time.sleep(0.05)
        raise AssertionError(f"fewer than {count} workers connected")
