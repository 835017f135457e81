"""Who may see the status page when it is served beyond loopback: a client
token, shown as a bearer header or through the login form's cookie, with
the roles of the gRPC API, and only its tenant's requests; nobody else."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from taskyard.rpc import transfer
from taskyard.rpc.credentials import bearer_metadata
from taskyard.scheduler.domain import Role
from taskyard.v1 import work_requests_pb2 as pb
from tests.integration.web.conftest import Site

HTML = {"Accept": "text/html"}


async def token(site: Site, role: Role) -> str:
    _, secret = await site.harness.running.scheduler.tokens.create(role, "web tests")
    return secret


async def status(site: Site, path: str, secret: str = "", html: bool = False) -> int:
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    if html:
        headers.update(HTML)
    async with site.http.get(site.url + path, headers=headers, allow_redirects=False) as response:
        return response.status


@pytest.mark.parametrize(
    ("path", "submit", "admin"),
    [
        ("/", 200, 200),
        ("/requests", 200, 200),
        ("/live/requests?state=running", 200, 200),
        ("/metrics", 403, 200),  # every tenant's figures
        ("/workers", 403, 200),
        ("/live/workers", 403, 200),
    ],
)
async def test_roles_apply_as_on_the_grpc_api(
    guarded: Site, path: str, submit: int, admin: int
) -> None:
    assert await status(guarded, path) == 401
    assert await status(guarded, path, "not-a-token") == 401
    assert await status(guarded, path, await token(guarded, Role.SUBMIT)) == submit
    assert await status(guarded, path, await token(guarded, Role.ADMIN)) == admin
    activation = await token(guarded, Role.WORKER_ACTIVATION)
    assert await status(guarded, path, activation) == 401


async def test_a_worker_token_opens_nothing(guarded: Site) -> None:
    worker = await guarded.harness.new_worker("w1")
    assert await status(guarded, "/", worker.token) == 403
    assert await status(guarded, "/metrics", worker.token) == 403


async def test_a_browser_is_sent_to_the_login_form_and_its_cookie_opens_the_page(
    guarded: Site,
) -> None:
    async with guarded.http.get(
        guarded.url + "/requests?state=pending", headers=HTML, allow_redirects=False
    ) as response:
        assert response.status == 303
        login = urlsplit(response.headers["Location"])
        assert (login.path, parse_qs(login.query)) == (
            "/login",
            {"next": ["/requests?state=pending"]},
        )
    async with guarded.http.post(
        guarded.url + "/login", data={"token": "wrong", "next": "/"}, allow_redirects=False
    ) as response:
        assert response.status == 401
        assert "unknown, revoked or expired token" in await response.text()
    secret = await token(guarded, Role.SUBMIT)
    form = {"token": secret, "next": "/requests?state=pending"}
    async with guarded.http.post(
        guarded.url + "/login", data=form, allow_redirects=False
    ) as response:
        assert response.status == 303
        assert response.headers["Location"] == "/requests?state=pending"
        cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert await status(guarded, "/requests", html=True) == 200  # the session's cookie
    async with guarded.http.post(guarded.url + "/logout", allow_redirects=False) as response:
        assert response.status == 303
    assert await status(guarded, "/requests", html=True) == 303


async def test_after_login_it_goes_only_to_a_page_of_this_site(guarded: Site) -> None:
    secret = await token(guarded, Role.SUBMIT)
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        form = {"token": secret, "next": target}
        async with guarded.http.post(
            guarded.url + "/login", data=form, allow_redirects=False
        ) as response:
            assert response.headers["Location"] == "/"


async def test_on_loopback_no_token_is_needed(web: Site) -> None:
    for path in ("/", "/requests", "/workers", "/metrics"):
        assert await status(web, path) == 200


async def body(site: Site, path: str, secret: str) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {secret}", "Accept": "text/html"}
    async with site.http.get(site.url + path, headers=headers, allow_redirects=False) as response:
        return response.status, await response.text()


async def test_every_page_keeps_to_its_viewers_tenant(guarded: Site, tmp_path: Path) -> None:
    tokens = guarded.harness.running.scheduler.tokens
    _, a = await tokens.create(Role.SUBMIT, tenant="team-a")
    _, b = await tokens.create(Role.SUBMIT, tenant="team-b")
    theirs = await guarded.harness.work_requests.Submit(
        pb.SubmitRequest(task_name="noop", task_data_json="{}"), metadata=bearer_metadata(a)
    )
    request_id = theirs.work_request.id
    (tmp_path / "f").write_bytes(b"theirs")
    artifact = await transfer.upload(
        guarded.harness.artifacts, bearer_metadata(a), category="x",
        files={"f": tmp_path / "f"}, work_request_id=request_id,
    )  # fmt: skip
    by_id = (f"/requests/{request_id}", f"/requests/{request_id}/log",
             f"/live/requests/{request_id}", f"/artifacts/{artifact.id}/f",
             f"/pipelines/{request_id}", f"/live/pipelines/{request_id}")  # fmt: skip
    for path in by_id:
        assert await status(guarded, path, b, html=True) == 404, path  # as if it did not exist
        assert await status(guarded, path, a, html=True) == 200, path
    for path in ("/", "/requests", "/requests?state=pending&task=noop"):
        status_b, page_b = await body(guarded, path, b)
        assert status_b == 200
        assert request_id not in page_b, path
        assert request_id in (await body(guarded, path, a))[1], path
    _, overview = await body(guarded, "/", b)
    assert 'data-tenant="team-b"' in overview
    assert 'data-tenant="team-a"' not in overview  # nor another tenant's usage
