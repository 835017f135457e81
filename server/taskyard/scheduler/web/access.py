"""Who is looking at the status page, and what they may see.

On a loopback listener nobody needs a token. On any other, a caller shows a
client token: as a bearer header, or in the HttpOnly cookie the login form
sets. Roles apply as on the gRPC API: the pages need the submit role (and
show the caller's tenant), the workers page and its data and `/metrics`
(every tenant's figures) the admin role; a worker's token sees nothing.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from urllib.parse import quote

from aiohttp import web
from aiohttp.typedefs import Middleware

from taskyard.errors import TaskyardError, UnauthenticatedError
from taskyard.scheduler.domain import Role
from taskyard.scheduler.service.auth import ClientPrincipal, Principal, require_role
from taskyard.scheduler.service.scheduler import Scheduler

COOKIE = "taskyard_token"
#: Who a caller on a loopback listener is.
LOCAL = ClientPrincipal("local", Role.ADMIN)
#: Who the gate admitted, for the handlers.
CALLER = web.RequestKey("caller", ClientPrincipal)
#: Paths anyone may fetch.
PUBLIC = ("/login", "/static/")
#: Paths that need more than the submit role: they show the whole farm.
ADMIN_ONLY = ("/workers", "/live/workers", "/metrics")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def is_loopback(host: str) -> bool:
    """Whether a listen host is this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def caller_of(request: web.Request) -> Principal:
    """The caller the gate admitted."""
    return request[CALLER]


def secret_of(request: web.Request) -> str:
    """The token a caller shows: the bearer header first, then the cookie."""
    header = request.headers.get("Authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() == "bearer" and secret.strip():
        return secret.strip()
    return request.cookies.get(COOKIE, "")


def wants_page(request: web.Request) -> bool:
    """Whether the caller is a person at a browser (sent to the login form)
    rather than a program (answered 401)."""
    return request.method == "GET" and "text/html" in request.headers.get("Accept", "")


def gate(scheduler: Scheduler, *, loopback: bool) -> Middleware:
    """The middleware that admits callers."""

    @web.middleware
    async def admit(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if path.startswith(PUBLIC):
            return await handler(request)
        try:
            request[CALLER] = _admitted(scheduler, request, loopback)
        except UnauthenticatedError as error:
            if wants_page(request):
                raise web.HTTPSeeOther(f"/login?next={quote(request.path_qs)}") from error
            raise
        return await handler(request)

    return admit


def _admitted(scheduler: Scheduler, request: web.Request, loopback: bool) -> ClientPrincipal:
    if loopback:
        return LOCAL
    secret = secret_of(request)
    if not secret:
        raise UnauthenticatedError(
            "this page needs a token: log in, or send it as a bearer token",
            reason="MISSING_TOKEN",
        )
    role = Role.ADMIN if request.path.startswith(ADMIN_ONLY) else Role.SUBMIT
    return require_role(scheduler.authenticate(secret), role)


def check_login(scheduler: Scheduler, secret: str) -> TaskyardError | None:
    """Why `secret` cannot open the page, or None if it can."""
    try:
        require_role(scheduler.authenticate(secret), Role.SUBMIT)
    except TaskyardError as error:
        return error
    return None


def local_path(target: str) -> str:
    """Where to go after logging in: a path on this site, never elsewhere."""
    if target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return "/"
