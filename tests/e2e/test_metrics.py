"""`/metrics` of a real scheduler, scraped as Prometheus would: the
scheduler's own metrics, named by Prometheus' conventions."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.processes import SchedulerProcess, scheduler, taskyard, worker

pytestmark = pytest.mark.e2e
FAST = ("--heartbeat-interval", "0.5", "--auto-enable-workers")


def scrape(url: str, token: str = "") -> tuple[int, str, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers)) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()


def sample(text: str, name: str, **labels: str) -> float:
    """The sum of the samples `name` whose labels include `labels`."""
    total, seen = 0.0, False
    for line in text.splitlines():
        match = re.match(r"^(\w+)(?:\{(.*)\})? (\S+)$", line)
        if match is None or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
        if labels.items() <= found.items():
            total, seen = total + float(match.group(3)), True
    assert seen, f"no sample {name} {labels} in:\n{text}"
    return total


def submit(process: SchedulerProcess, script: str, *options: str) -> None:
    data = json.dumps({"command": ["sh", "-c", script]})
    done = taskyard(["submit", "command", "--data", data, *options], process.env())
    assert done.returncode == 0, done.stderr


def test_metrics_are_scraped_in_prometheus_text(tmp_path: Path) -> None:
    sh = {"TASKYARD_ALLOWED_COMMANDS": "sh"}
    with (
        scheduler(tmp_path / "s", *FAST, "--http", "127.0.0.1:0") as process,
        worker(process.address, tmp_path / "w", env=sh),
    ):
        submit(process, "exit 0", "--wait")
        submit(process, "sleep 3")
        deadline = time.monotonic() + 15
        while True:
            status, kind, text = scrape(process.page + "/metrics")
            if "taskyard_work_requests_current" in text or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    assert status == 200
    assert kind.startswith("text/plain; version=")
    assert "# TYPE taskyard_work_request_queue_time_seconds histogram" in text
    assert (
        sample(text, "taskyard_work_request_run_duration_seconds_count", taskyard_task="command")
        == 1
    )
    assert (
        sample(
            text,
            "taskyard_work_request_outcomes_total",
            taskyard_task="command",
            taskyard_result="success",
        )
        == 1
    )
    assert sample(text, "taskyard_workers_connected") == 1
    assert sample(text, "taskyard_workers_slots_in_use") == 1
    assert sample(text, "taskyard_maintenance_leader") == 1  # alone, it runs maintenance
    assert sample(text, "taskyard_work_requests_current", taskyard_task="command") == 1
    assert re.search(r'taskyard_work_request_queue_time_seconds_bucket\{le="0.005"', text)


def test_without_http_there_is_no_page(tmp_path: Path) -> None:
    with scheduler(tmp_path / "s") as process:
        assert process.page == ""
