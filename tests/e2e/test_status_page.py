"""The status page in a real browser against real scheduler and worker
processes: it follows the scheduler by itself, with no reload."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.browser import chromium, screenshot_dir
from tests.e2e.processes import SchedulerProcess, scheduler, stop, taskyard, worker

pytestmark = pytest.mark.e2e
FAST = ("--heartbeat-interval", "0.5", "--lease-grace", "1", "--auto-enable-workers")
SH = {"TASKYARD_ALLOWED_COMMANDS": "sh"}
#: How long a page may take to show a change (it updates at most once a second).
SOON = 15_000


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SchedulerProcess]:
    """A scheduler serving its page on loopback, with one worker."""
    root = tmp_path_factory.mktemp("farm")
    with (
        scheduler(root / "s", *FAST, "--http", "127.0.0.1:0") as process,
        worker(process.address, root / "w1", "--name", "w1", env=SH),
    ):
        yield process


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as running:
        yield running


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        yield context.new_page()
    finally:
        context.close()


def submit(farm: SchedulerProcess, script: str) -> str:
    data = json.dumps({"command": ["sh", "-c", script]})
    done = taskyard(["submit", "command", "--data", data], farm.env())
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def not_reloaded(page: Page) -> None:
    """Mark the document; `still_same` checks the mark survived (no reload)."""
    page.evaluate("window.taskyardMark = 'this document'")


def still_same(page: Page) -> None:
    assert page.evaluate("window.taskyardMark") == "this document"


def test_a_submitted_request_appears_and_changes_state_without_a_reload(
    farm: SchedulerProcess, page: Page
) -> None:
    page.goto(farm.page + "/requests")
    not_reloaded(page)
    submitted = submit(farm, "sleep 2")
    row = page.locator(f'tr[data-id="{submitted}"]')
    expect(row).to_contain_text("running", timeout=SOON)
    expect(row).to_contain_text("completed: success", timeout=SOON)
    still_same(page)
    page.goto(farm.page + "/")
    expect(page.locator('[data-state="completed"]')).not_to_have_text("0", timeout=SOON)
    if (shots := screenshot_dir()) is not None:
        page.screenshot(path=str(shots / "overview.png"), full_page=True)


def test_a_running_tasks_log_lines_appear_on_its_page(farm: SchedulerProcess, page: Page) -> None:
    submitted = submit(farm, "echo first line; sleep 2; echo second line >&2; sleep 1")
    page.goto(f"{farm.page}/requests/{submitted}")
    not_reloaded(page)
    log = page.locator("#log")
    expect(log).to_contain_text("first line", timeout=SOON)
    expect(page.locator("#state")).to_have_text("running", timeout=SOON)
    expect(log).to_contain_text("second line", timeout=SOON)
    expect(page.locator("#log .stderr")).to_contain_text("second line")
    expect(page.locator("#state")).to_have_text("completed: success", timeout=SOON)
    expect(page.locator("table.history")).to_contain_text("completed: success")
    still_same(page)
    if (shots := screenshot_dir()) is not None:
        page.screenshot(path=str(shots / "request.png"), full_page=True)


def test_a_worker_going_away_shows(farm: SchedulerProcess, page: Page, tmp_path: Path) -> None:
    with worker(farm.address, tmp_path / "w2", "--name", "leaving", env=SH) as leaving:
        page.goto(farm.page + "/workers")
        not_reloaded(page)
        row = page.locator('tr[data-worker="leaving"] .connection')
        held_by = re.compile(rf"^connected to {re.escape(farm.address)} \(")  # its scheduler
        expect(row).to_have_text(held_by, timeout=SOON)
        if (shots := screenshot_dir()) is not None:
            page.screenshot(path=str(shots / "workers.png"), full_page=True)
        stop(leaving.process)
        expect(row).to_have_text("gone", timeout=SOON)
    still_same(page)


def test_a_pipeline_is_drawn_and_its_nodes_change_colour_as_they_run(
    farm: SchedulerProcess, page: Page, tmp_path: Path
) -> None:
    nodes = [
        {"name": "build", "task": "command", "data": {"command": ["sh", "-c", "sleep 2"]}},
        {"name": "test", "task": "noop", "after": ["build"]},
        {"name": "report", "task": "noop", "after_done": ["test"]},
    ]
    spec = tmp_path / "pipeline.json"
    spec.write_text(json.dumps({"nodes": nodes}))
    done = taskyard(["pipeline", "submit", str(spec), "--json"], farm.env())
    assert done.returncode == 0, done.stderr
    ids = {r["name"]: r["id"] for r in json.loads(done.stdout)}
    page.goto(f"{farm.page}/requests/{ids['test']}")
    page.locator("#pipeline-link").click()
    expect(page).to_have_url(f"{farm.page}/pipelines/{ids['test']}")
    not_reloaded(page)
    boxes = page.locator("svg.pipeline a.node")
    expect(boxes).to_have_count(3)
    expect(page.locator("svg.pipeline line.edge")).to_have_count(2)
    test_box = page.locator(f'a.node[data-id="{ids["test"]}"]')
    expect(test_box).to_have_attribute("data-state", "blocked")
    expect(page.locator(f'a.node[data-id="{ids["build"]}"]')).to_have_attribute(
        "data-state", "running", timeout=SOON
    )
    for name in ("build", "test", "report"):  # each turns green in place, in order
        expect(page.locator(f'a.node[data-id="{ids[name]}"]')).to_have_attribute(
            "data-state", "success", timeout=SOON
        )
    expect(page.locator("#pipeline-state")).to_have_attribute("data-done", "true", timeout=SOON)
    still_same(page)
    if (shots := screenshot_dir()) is not None:
        page.screenshot(path=str(shots / "pipeline.png"), full_page=True)
    page.locator(f'a.node[data-id="{ids["report"]}"]').click()
    expect(page).to_have_url(f"{farm.page}/requests/{ids['report']}")
