"""The status page's HTTP side: pages, their live streams, task logs,
artifact downloads, `/metrics` and the login form, on aiohttp in the
scheduler's own event loop.

Each page is one template whose changing part is a region template; the page
follows the scheduler by server-sent events, each carrying that region
rendered again (`static/live.js` puts it in place). Nothing here changes
anything: every route but the login form is a GET.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp_sse import sse_response

from taskyard.errors import FailedPreconditionError, InvalidArgumentError, TaskyardError
from taskyard.scheduler.domain import WorkRequest
from taskyard.scheduler.service.auth import sees
from taskyard.scheduler.service.scheduler import Scheduler
from taskyard.scheduler.web import access, downloads, views
from taskyard.scheduler.web.access import caller_of
from taskyard.scheduler.web.errors import errors
from taskyard.scheduler.web.live import Updates, Wants, everything
from taskyard.scheduler.web.render import environment

Loader = Callable[[web.Request], Awaitable[views.Context]]


@dataclass(frozen=True)
class Page:
    """A page: `name.html`, whose live part is `regions/name.html`."""

    name: str
    load: Loader
    wants: Callable[[web.Request], Wants]


class StatusSite:
    """The web application over one scheduler; `start`, then `stop`."""

    def __init__(self, scheduler: Scheduler, *, loopback: bool, trace_url: str = "") -> None:
        self.scheduler = scheduler
        self.updates = Updates(scheduler.core.feed)
        self._loopback = loopback
        self._trace_url = trace_url
        self._templates = environment()
        gate = access.gate(scheduler, loopback=loopback)
        self.app = web.Application(middlewares=[errors(self._render), gate])
        self.app.on_response_prepare.append(_guarded)
        self._runner: web.AppRunner | None = None
        #: Where the page is served, once started (`http://host:port/`).
        self.address = ""
        self._routes()

    def _routes(self) -> None:
        use = self.scheduler
        for path, page in (
            ("/", Page("overview", lambda r: views.overview(use, caller_of(r)), _seen)),
            (
                "/requests",
                Page("requests", lambda r: views.requests(use, caller_of(r), r.query), _listed),
            ),
            ("/requests/{id}", Page("request", self._request, _one)),
            (
                "/pipelines/{id}",
                Page(
                    "pipeline",
                    lambda r: views.pipeline(use, caller_of(r), r.match_info["id"]),
                    _seen,
                ),
            ),
            ("/workers", Page("workers", lambda _: views.workers(use), lambda _: everything)),
        ):
            self.app.router.add_get(path, self._page(page))
            self.app.router.add_get("/live" + path, self._follow(page))
        router = self.app.router
        router.add_get("/requests/{id}/log", downloads.log_stream(use))
        router.add_get("/artifacts/{id}/{path:.+}", downloads.artifact_file(use))
        router.add_get("/metrics", downloads.metrics)
        router.add_get("/login", self._login_form)
        router.add_post("/login", self._login)
        router.add_post("/logout", self._logout)
        router.add_static("/static", downloads.STATIC)

    async def _requests(self, request: web.Request) -> views.Context:
        return await views.requests(self.scheduler, caller_of(request), request.query)

    async def _request(self, request: web.Request) -> views.Context:
        caller = caller_of(request)
        return await views.request(self.scheduler, caller, request.match_info["id"])

    def _render(self, template: str, context: dict[str, Any], request: web.Request) -> str:
        return self._templates.get_template(template).render(
            **context,
            path=request.path,
            events="/live" + request.path_qs,
            loopback=self._loopback,
            trace_url=self._trace_url,
            queue_wait=views.queue_wait,
            run_time=views.run_time,
        )

    def _page(self, page: Page) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def full(request: web.Request) -> web.StreamResponse:
            context = await page.load(request)
            html = self._render(f"{page.name}.html", context, request)
            return web.Response(text=html, content_type="text/html")

        return full

    def _follow(self, page: Page) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def stream(request: web.Request) -> web.StreamResponse:
            wants = page.wants(request)
            await page.load(request)  # a page that cannot load fails before the stream opens
            async with sse_response(request) as events:
                async for _ in self.updates.follow(wants):
                    context = await page.load(request)
                    html = self._render(f"regions/{page.name}.html", context, request)
                    await events.send(html, event="update")
            return events

        return stream

    async def _login_form(self, request: web.Request) -> web.StreamResponse:
        html = self._render("login.html", {"problem": "", "next": _next(request)}, request)
        return web.Response(text=html, content_type="text/html")

    async def _login(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        secret, target = str(form.get("token", "")).strip(), str(form.get("next", "/"))
        problem = access.check_login(self.scheduler, secret)
        if problem is not None:
            context = {"problem": problem.message, "next": access.local_path(target)}
            html = self._render("login.html", context, request)
            return web.Response(text=html, content_type="text/html", status=401)
        going = web.HTTPSeeOther(access.local_path(target))
        going.set_cookie(
            access.COOKIE, secret, httponly=True, samesite="Strict", secure=request.secure
        )
        raise going

    async def _logout(self, request: web.Request) -> web.StreamResponse:
        going = web.HTTPSeeOther("/login")
        going.del_cookie(access.COOKIE)
        raise going

    async def start(self, listen: str) -> int:
        """Serve on `listen` (HOST:PORT; port 0 picks one); return the port."""
        host, _, port = listen.rpartition(":")
        if not host or not port.isdigit() or int(port) > 65535:
            raise InvalidArgumentError(
                f"--http wants HOST:PORT (a port up to 65535), not {listen!r}"
            )
        # A page whose reader went away stops following at once.
        self._runner = web.AppRunner(
            self.app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, host.strip("[]"), int(port))
        try:
            await site.start()
        except OSError as error:
            await self._runner.cleanup()
            raise FailedPreconditionError(
                f"cannot serve the status page on {listen}: "
                f"{os.strerror(error.errno) if error.errno else error}",
                reason="ADDRESS_IN_USE",
            ) from error
        bound = int(self._runner.addresses[0][1])
        shown = f"[{host.strip('[]')}]" if ":" in host else host
        self.address = f"http://{shown}:{bound}/"
        return bound

    async def stop(self) -> None:
        """End every stream and stop serving."""
        self.updates.close()
        if self._runner is not None:
            await self._runner.cleanup()


#: Every answer: scripts and styles from this site only (none inline, so
#: nothing a task or a user wrote can run), never in another site's frame,
#: and no guessing at a download's type.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


async def _guarded(_request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(SECURITY_HEADERS)


def _seen(request: web.Request) -> Wants:
    """A page of everything follows the changes its viewer sees, and workers'."""
    viewer = caller_of(request)
    return lambda change: change is None or sees(viewer, change.tenant)


def _listed(request: web.Request) -> Wants:
    """A list follows the changes its filter passes that its viewer sees
    (and worker changes: none)."""
    viewer = caller_of(request)
    try:
        where, _ = views.request_filter(request.query)
    except TaskyardError:
        return _seen(request)
    return lambda change: (
        change is not None and sees(viewer, change.tenant) and where.matches(change)
    )


def _one(request: web.Request) -> Wants:
    """A request's page follows its changes, and workers' (its explanation)."""
    wanted = request.match_info["id"]

    def wants(change: WorkRequest | None) -> bool:
        return change is None or change.id == wanted

    return wants


def _next(request: web.Request) -> str:
    return access.local_path(request.query.get("next", "/"))
