"""How the status page says no: one line, with the HTTP status of its kind.

A user's mistake (a request that does not exist, a filter that makes no
sense, a token that does not open the page) is a page or a line of text
saying so, never a traceback; anything unexpected is a generic 500, and its
traceback goes to the log.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from taskyard.errors import (
    AlreadyExistsError,
    ConflictError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    TaskyardError,
    UnauthenticatedError,
    UnavailableError,
    category_of,
)

log = logging.getLogger(__name__)

Render = Callable[[str, dict[str, Any], web.Request], str]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: HTTP status of each error category.
STATUS: dict[type[TaskyardError], int] = {
    InvalidArgumentError: 400,
    UnauthenticatedError: 401,
    PermissionDeniedError: 403,
    NotFoundError: 404,
    AlreadyExistsError: 409,
    ConflictError: 409,
    FailedPreconditionError: 409,
    ResourceExhaustedError: 503,
    UnavailableError: 503,
}


def status_of(error: TaskyardError) -> int:
    """The HTTP status that says what kind of error this is."""
    return STATUS.get(category_of(error), 500)


def errors(render: Render) -> Middleware:
    """The middleware that turns errors into one clear answer."""

    @web.middleware
    async def answer(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except TaskyardError as error:
            return _said(render, request, status_of(error), error.message)
        except Exception:
            log.exception("the status page failed on %s", request.path)
            return _said(render, request, 500, "the scheduler failed to answer; see its log")

    return answer


def _said(render: Render, request: web.Request, status: int, message: str) -> web.Response:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if "text/html" in request.headers.get("Accept", ""):
        html = render("error.html", {"status": status, "message": message}, request)
        return web.Response(text=html, content_type="text/html", status=status, headers=headers)
    return web.Response(text=message + "\n", status=status, headers=headers)
