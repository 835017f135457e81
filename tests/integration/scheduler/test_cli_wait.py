"""`taskyard submit --wait` follows the request to its end and exits by its result."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest

from taskyard.v1 import workers_pb2
from tests.integration.scheduler.harness import Harness

OUTCOMES = [
    (workers_pb2.WORK_OUTCOME_SUCCESS, 0, "completed (success)"),
    (workers_pb2.WORK_OUTCOME_FAILURE, 1, "completed (failure)"),
]


@pytest.mark.parametrize(("outcome", "exit_code", "shown"), OUTCOMES)
async def test_submit_wait(
    harness: Harness, outcome: workers_pb2.WorkOutcome.ValueType, exit_code: int, shown: str
) -> None:
    worker = await harness.new_worker()
    await worker.connect()
    token = dict(harness.submitter)["authorization"].split()[1]
    cli = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "taskyard.cli.main", "submit", "noop", "--wait",
        "--scheduler", harness.address, "--token", token,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=dict(os.environ),
    )  # fmt: skip
    try:
        lease = (await worker.expect("assignment", timeout=30)).lease
        worker.started(lease)
        assert cli.stderr is not None
        progress = ""
        async with asyncio.timeout(30):  # the CLI follows the request before it ends
            while "running on w" not in progress:
                progress += (await cli.stderr.readline()).decode()
        worker.completed(lease, outcome)
        await worker.expect("ack")
        stdout, stderr = await asyncio.wait_for(cli.communicate(), 30)
        progress += stderr.decode()
    finally:
        if cli.returncode is None:
            cli.kill()
            await cli.wait()
        await worker.disconnect()
    assert cli.returncode == exit_code
    assert "submitted" in progress
    assert "running on w" in progress
    assert shown in stdout.decode()
