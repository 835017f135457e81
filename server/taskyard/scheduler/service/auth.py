"""Who is calling: bearer tokens to principals, and what each role may do.

Clients hold tokens with a role; workers hold the token they generated. Only
SHA-256 digests are stored. Both are cached in memory, so authenticating a
call costs no database round trip: the cache follows this scheduler's own
writes and, in a farm, what the other schedulers announce (a token made on
one works on another once the announcement arrives, milliseconds later).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from taskyard.errors import PermissionDeniedError, UnauthenticatedError
from taskyard.scheduler.domain import DEFAULT_TENANT, Role, Token, Worker


def digest(secret: str) -> str:
    """The SHA-256 of a secret, as stored."""
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class ClientPrincipal:
    """A client authenticated by a token."""

    token_id: str
    role: Role
    #: A submit token's tenant: all it sees; empty for an admin, who sees all.
    tenant: str = ""


@dataclass(frozen=True)
class WorkerPrincipal:
    """A worker authenticated by its own token. Registering gives an
    identity, not access: until an operator enables it, a worker may only
    open the session that tells it so."""

    worker_name: str
    enabled: bool = True


Principal = ClientPrincipal | WorkerPrincipal

#: Roles each role includes.
_GRANTS: dict[Role, frozenset[Role]] = {
    Role.ADMIN: frozenset({Role.ADMIN, Role.SUBMIT}),
    Role.SUBMIT: frozenset({Role.SUBMIT}),
    Role.WORKER_ACTIVATION: frozenset(),
}


class Credentials:
    """The in-memory view of tokens and worker tokens, kept in step with the store."""

    def __init__(self) -> None:
        self._tokens: dict[str, Token] = {}
        self._workers: dict[str, Worker] = {}

    def load(self, tokens: list[Token], workers: list[Worker]) -> None:
        """Fill the caches from the store."""
        for token in tokens:
            self.remember_token(token)
        for worker in workers:
            self.remember_worker(worker)

    def remember_token(self, token: Token) -> None:
        """Record a created or changed token."""
        self._tokens[token.secret_sha256] = token

    def forget_worker(self, worker: Worker) -> None:
        """A removed worker's token works no more."""
        self._workers.pop(worker.token_sha256, None)

    def remember_worker(self, worker: Worker) -> None:
        """Record a registered or changed worker (its token, whether enabled)."""
        self._workers[worker.token_sha256] = worker

    def authenticate(self, bearer: str | None, now: datetime) -> Principal:
        """The principal behind a bearer secret; UNAUTHENTICATED if none."""
        if not bearer:
            raise UnauthenticatedError(
                "no bearer token in the `authorization` metadata", reason="TOKEN_MISSING"
            )
        key = digest(bearer)
        worker = self._workers.get(key)
        if worker is not None:
            return WorkerPrincipal(worker.name, worker.enabled)
        token = self._tokens.get(key)
        if token is None or token.role is Role.WORKER_ACTIVATION or not token.valid_at(now):
            raise UnauthenticatedError("unknown, revoked or expired token", reason="TOKEN_INVALID")
        return ClientPrincipal(token.id, token.role, token.tenant)

    def activation_token(self, secret: str, now: datetime) -> Token | None:
        """The valid activation token with this secret, if any."""
        token = self._tokens.get(digest(secret))
        if token is None or token.role is not Role.WORKER_ACTIVATION or not token.valid_at(now):
            return None
        return token

    def token(self, secret: str) -> Token | None:
        """The token with this secret, valid or not."""
        return self._tokens.get(digest(secret))


def require_role(principal: Principal, role: Role) -> ClientPrincipal:
    """`principal` as a client holding `role`; PERMISSION_DENIED otherwise."""
    if not isinstance(principal, ClientPrincipal) or role not in _GRANTS[principal.role]:
        who = (
            f"worker {principal.worker_name}"
            if isinstance(principal, WorkerPrincipal)
            else f"a {principal.role} token"
        )
        raise PermissionDeniedError(
            f"this call needs the {role} role; {who} does not have it",
            reason="ROLE_REQUIRED",
            metadata={"required_role": role.value},
        )
    return principal


def require_worker(principal: Principal) -> WorkerPrincipal:
    """`principal` as a worker; PERMISSION_DENIED for client tokens."""
    if not isinstance(principal, WorkerPrincipal):
        raise PermissionDeniedError("this call is for workers", reason="WORKER_REQUIRED")
    return principal


def require_enabled(principal: Principal) -> None:
    """PERMISSION_DENIED for a worker an operator has not enabled."""
    if isinstance(principal, WorkerPrincipal) and not principal.enabled:
        raise PermissionDeniedError(
            f"worker {principal.worker_name} is not enabled; an operator must run: "
            f"taskyard workers enable {principal.worker_name}",
            reason="WORKER_DISABLED",
            metadata={"worker_name": principal.worker_name},
        )


def owner_of(principal: Principal) -> str:
    """Who a principal is, as recorded on what it creates: `token:ID` or `worker:NAME`."""
    if isinstance(principal, WorkerPrincipal):
        return f"worker:{principal.worker_name}"
    return f"token:{principal.token_id}"


def is_admin(principal: Principal) -> bool:
    """Whether the principal holds the admin role."""
    return isinstance(principal, ClientPrincipal) and principal.role is Role.ADMIN


def tenant_of(principal: Principal) -> str | None:
    """The one tenant a caller sees, or None for one who sees every tenant
    (an admin; a worker is held to the work it holds instead)."""
    if isinstance(principal, ClientPrincipal) and principal.role is not Role.ADMIN:
        return principal.tenant
    return None


def sees(principal: Principal, tenant: str) -> bool:
    """Whether `principal` may see what belongs to `tenant` (empty: what an
    admin shared with every tenant)."""
    scope = tenant_of(principal)
    return scope is None or tenant in (scope, "")


def submitting_tenant(principal: Principal, requested: str) -> str:
    """The tenant a submission goes to: a submit token's own (naming another
    is PERMISSION_DENIED), or the one an admin names, else the default."""
    scope = tenant_of(principal)
    if scope is None:
        return requested or DEFAULT_TENANT
    if requested and requested != scope:
        raise PermissionDeniedError(
            f"this token submits into tenant {scope!r} only",
            reason="TENANT_NOT_ALLOWED",
            metadata={"tenant": scope},
        )
    return scope
