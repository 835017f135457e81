"""The status page against a real scheduler: what each page shows, how it
follows changes, the live log, downloads, and one-line answers to mistakes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp

from taskyard import logframes
from taskyard.rpc import transfer
from taskyard.v1 import common_pb2, workers_pb2
from taskyard.v1 import work_requests_pb2 as pb
from tests.integration.web.conftest import Site

HTML = {"Accept": "text/html"}


async def page(web: Site, path: str, status: int = 200) -> str:
    async with web.http.get(web.url + path, headers=HTML, allow_redirects=False) as response:
        text = await response.text()
        assert response.status == status, text
        return text


async def events(response: aiohttp.ClientResponse, wanted: str) -> list[str]:
    """Read server-sent events until one named `wanted`; return the data of each."""
    seen, name, data = [], "", []
    async with asyncio.timeout(10):
        async for raw in response.content:
            line = raw.decode().rstrip("\r\n")
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: ") or line == "data:":
                data.append(line.removeprefix("data:").removeprefix(" "))
            elif not line and name:
                seen.append("\n".join(data))
                if name == wanted:
                    return seen
                name, data = "", []
    raise AssertionError(f"the stream ended before a {wanted!r} event")


async def test_every_page_shows_what_the_scheduler_holds(web: Site) -> None:
    worker = await web.harness.new_worker("w1")
    await worker.connect()
    first = await web.harness.submit("noop", {"sleep": 30})
    lease = (await worker.expect("assignment")).lease
    worker.started(lease)
    pending = await web.harness.submit("noop", {"sleep": 1})
    await web.harness.wait_for_state(first, pb.WORK_REQUEST_STATE_RUNNING)

    overview = await page(web, "/")
    assert 'data-state="running">1<' in overview
    assert 'data-state="pending">1<' in overview
    assert 'id="workers-connected">1<' in overview
    listed = await page(web, "/requests?state=pending")
    assert pending in listed
    assert first not in listed
    running = await page(web, f"/requests/{first}")
    assert "running" in running
    assert "w1" in running
    assert f'data-follow="/requests/{first}/log"' in running
    why = await page(web, f"/requests/{pending}")
    assert "Why it is pending" in why
    assert "busy" in why
    workers = await page(web, "/workers")
    assert 'data-worker="w1"' in workers
    assert first in workers
    await worker.disconnect()


async def test_a_list_follows_new_requests_without_a_reload(web: Site) -> None:
    async with web.http.get(web.url + "/live/requests?task=noop") as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        await events(response, "update")  # the page as it is when it connects
        submitted = await web.harness.submit("noop", {"sleep": 1})
        (update,) = await events(response, "update")
    assert submitted in update
    assert "pending" in update


async def test_a_request_page_shows_its_attempts_and_why_each_ended(web: Site) -> None:
    worker = await web.harness.new_worker("w1")
    await worker.connect()
    submitted = await web.harness.submit("noop", {"sleep": 30})
    lease = (await worker.expect("assignment")).lease
    worker.started(lease)
    await web.harness.wait_for_state(submitted, pb.WORK_REQUEST_STATE_RUNNING)
    await worker.disconnect()  # the lease expires: back in the queue, attempt 2
    await web.harness.wait_for_state(submitted, pb.WORK_REQUEST_STATE_PENDING)
    shown = await page(web, f"/requests/{submitted}")
    assert "back in the queue (worker-lost)" in shown
    assert "worker w1 was lost" in shown
    assert "2 of at most 3" in shown


def said(lease: common_pb2.Lease, text: str) -> workers_pb2.TaskOutput:
    chunk = workers_pb2.OutputChunk(stream=logframes.STDOUT, data=text.encode())  # type: ignore[arg-type]
    return workers_pb2.TaskOutput(lease=lease, offset=0, chunks=[chunk])


async def test_the_log_streams_as_the_worker_sends_it(web: Site) -> None:
    worker = await web.harness.new_worker("w1")
    await worker.connect()
    submitted = await web.harness.submit("noop", {"sleep": 30})
    lease = (await worker.expect("assignment")).lease
    worker.started(lease)
    worker.send(output=said(lease, "héllo\n"))
    async with web.http.get(f"{web.url}/requests/{submitted}/log") as response:
        attempt, data = await events(response, "chunk")
        assert attempt == "1"
        assert json.loads(data) == {"stream": "stdout", "text": "héllo\n"}
        worker.completed(lease, workers_pb2.WORK_OUTCOME_SUCCESS)
        await events(response, "end")
    # A browser that reconnects says where it was: nothing comes twice.
    sent = logframes.HEADER.size + len("héllo\n".encode())
    resume = {"Last-Event-ID": f"1:{sent}"}
    async with web.http.get(f"{web.url}/requests/{submitted}/log", headers=resume) as response:
        assert await events(response, "end") == ["1", ""]
    await worker.disconnect()


async def test_the_log_follows_a_lost_attempt_into_the_next(web: Site) -> None:
    lost = await web.harness.new_worker("lost")
    await lost.connect()
    submitted = await web.harness.submit("noop", {"sleep": 30})
    first = (await lost.expect("assignment")).lease
    lost.started(first)
    lost.send(output=said(first, "one\n"))
    async with web.http.get(f"{web.url}/requests/{submitted}/log") as response:
        assert (await events(response, "chunk"))[-1] == json.dumps(
            {"stream": "stdout", "text": "one\n"}
        )
        await lost.disconnect()  # its lease expires: attempt 2 goes to the next worker
        second_worker = await web.harness.new_worker("next")
        await second_worker.connect()
        second = (await second_worker.expect("assignment")).lease
        second_worker.started(second)
        second_worker.send(output=said(second, "two\n"))
        attempt, data = await events(response, "chunk")
        assert attempt == "2"
        assert json.loads(data)["text"] == "two\n"
        second_worker.completed(second, workers_pb2.WORK_OUTCOME_SUCCESS)
        assert await events(response, "end") == [""]
    await second_worker.disconnect()


async def test_an_artifact_file_downloads(web: Site, tmp_path: Path) -> None:
    source = tmp_path / "build.log"
    source.write_bytes(b"the build log\n")
    harness = web.harness
    artifact = await transfer.upload(
        harness.artifacts, harness.submitter, category="test", files={"logs/build.log": source}
    )
    async with web.http.get(f"{web.url}/artifacts/{artifact.id}/logs/build.log") as response:
        assert response.status == 200
        assert await response.read() == b"the build log\n"
        assert "filename*=UTF-8''build.log" in response.headers["Content-Disposition"]
    async with web.http.get(f"{web.url}/artifacts/{artifact.id}/other") as response:
        assert response.status == 404


async def test_mistakes_get_one_line_and_the_right_status(web: Site) -> None:
    assert "no work request" in await page(web, "/requests/nope", 404)
    assert "must be one of" in await page(web, "/requests?state=lost", 400)
    assert "NUL" in await page(web, "/requests?task=a%00b", 400)
    async with web.http.get(web.url + "/requests/" + "x" * 100) as response:
        assert response.status == 400
        assert (await response.text()).count("\n") == 1
    async with web.http.post(web.url + "/requests") as response:
        assert response.status == 405  # nothing here changes anything
        assert "default-src 'self'" in response.headers["Content-Security-Policy"]
