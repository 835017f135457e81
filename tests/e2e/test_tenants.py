"""Two teams on one farm, as they would use it: real scheduler and worker
processes, set up and read through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from taskyard.rpc.credentials import bearer_metadata
from taskyard.v1 import work_requests_pb2 as pb
from taskyard.v1 import work_requests_pb2_grpc
from tests.e2e.client import Client
from tests.e2e.processes import SchedulerProcess, scheduler, taskyard, worker

pytestmark = pytest.mark.e2e
FAST = ("--heartbeat-interval", "0.5", "--lease-grace", "2", "--auto-enable-workers")
SHORT = json.dumps({"sleep": 0.05})


def admin(process: SchedulerProcess, *args: str) -> str:
    """Run a CLI command as the farm's admin; its stdout."""
    done = taskyard(args, process.env())
    assert done.returncode == 0, done.stderr
    return done.stdout


def team_token(process: SchedulerProcess, tenant: str) -> str:
    created = json.loads(admin(process, "token", "create", "--role", "submit",
                               "--tenant", tenant, "--json"))  # fmt: skip
    assert created["tenant"] == tenant
    return str(created["secret"])


def flood(process: SchedulerProcess, token: str, count: int) -> list[str]:
    """`count` short no-ops submitted in one call with the team's token."""
    client = Client(process)
    try:
        stub = work_requests_pb2_grpc.WorkRequestServiceStub(client.channel)
        batch = [pb.SubmitRequest(task_name="noop", task_data_json=SHORT)] * count
        response = stub.BatchSubmit(
            pb.BatchSubmitRequest(requests=batch), metadata=bearer_metadata(token), timeout=30
        )
        return [result.work_request.id for result in response.results]
    finally:
        client.close()


def test_a_flood_does_not_starve_another_team_and_weights_share_the_slots(
    tmp_path: Path,
) -> None:
    with scheduler(tmp_path / "scheduler", *FAST) as process:
        admin(process, "tenants", "set", "big", "--weight", "2")
        admin(process, "tenants", "set", "small", "--max-pending", "10")
        big, small = team_token(process, "big"), team_token(process, "small")
        big_ids = flood(process, big, 120)
        small_ids = flood(process, small, 10)

        # Past its quota, the small team is told which quota and its value.
        refused = taskyard(["submit", "noop", "--token", small], process.env())
        assert refused.returncode == 1
        assert "max_pending is 10" in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1

        # Neither team sees the other's work; it does not exist for them.
        hidden = taskyard(["get", big_ids[0], "--token", small], process.env())
        missing = taskyard(["get", "0" * 24, "--token", small], process.env())
        assert (hidden.returncode, hidden.stderr) == (
            1,
            f"taskyard: error: no work request '{big_ids[0]}'\n",
        )
        assert missing.stderr == f"taskyard: error: no work request '{'0' * 24}'\n"
        listed = json.loads(
            taskyard(["list", "--all", "--json", "--token", small], process.env()).stdout
        )
        assert sorted(r["id"] for r in listed) == sorted(small_ids)

        # One worker of 3 slots arrives to find both queues waiting.
        client = Client(process)
        try:
            with worker(process.address, tmp_path / "w", "--slots", "3"):
                for work_request_id in [*big_ids, *small_ids]:
                    ended = client.wait(work_request_id)
                    assert ended.state == pb.WORK_REQUEST_STATE_COMPLETED
        finally:
            client.close()
        everything = json.loads(admin(process, "list", "--all", "--json"))

    order = [r["tenant"] for r in sorted(everything, key=lambda r: (r["assigned_at"], r["id"]))]
    # First in, first out would have run every request of the big team first.
    last_small = max(i for i, tenant in enumerate(order) if tenant == "small")
    assert last_small < 45, order
    # Weights 2:1 while both wait: two slots of three for the big team.
    assert 16 <= order[:30].count("big") <= 24, order[:30]
