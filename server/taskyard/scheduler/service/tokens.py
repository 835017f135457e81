"""Token use cases: create, list, revoke, and the bootstrap admin token."""

from __future__ import annotations

import dataclasses
import logging
import os
from datetime import timedelta
from pathlib import Path

from taskyard.errors import NotFoundError, invalid
from taskyard.rpc.credentials import new_token
from taskyard.scheduler.domain import DEFAULT_TENANT, Role, Tenant, Token
from taskyard.scheduler.service.auth import digest
from taskyard.scheduler.service.core import Core
from taskyard.scheduler.service.tenants import Tenants, check_name, ensure
from taskyard.scheduler.store.port import StoreTransaction

log = logging.getLogger(__name__)


class Tokens:
    """Client and activation tokens."""

    def __init__(self, core: Core, tenants: Tenants) -> None:
        self._core = core
        self._tenants = tenants

    async def create(
        self,
        role: Role,
        description: str = "",
        ttl_seconds: float | None = None,
        tenant: str = "",
    ) -> tuple[Token, str]:
        """A new token and its secret (shown once; only its digest is kept).
        A submit token belongs to `tenant` (the default one if empty), made
        if it does not exist; the other roles belong to none."""
        core = self._core
        if role is Role.SUBMIT:
            tenant = tenant or DEFAULT_TENANT
            check_name(tenant)
        elif tenant:
            raise invalid("tenant", f"only submit tokens belong to a tenant, not {role} ones")
        secret = new_token()
        now = core.clock()
        token = Token(
            id=core.new_id(),
            secret_sha256=digest(secret),
            role=role,
            created_at=now,
            description=description,
            expires_at=now + timedelta(seconds=ttl_seconds) if ttl_seconds else None,
            tenant=tenant,
        )

        def save(tx: StoreTransaction) -> Tenant | None:
            _saved(tx, token, insert=True)
            return ensure(tx, tenant) if tenant else None

        owner = await core.db.run(save)
        if owner is not None:
            self._tenants.remember(owner)
        core.credentials.remember_token(token)
        return token, secret

    async def list(self) -> list[Token]:
        """Every token, newest first."""
        return await self._core.db.run(lambda tx: tx.list_tokens())

    async def revoke(self, token_id: str) -> Token:
        """Revoke a token: calls with it fail from now on."""
        now = self._core.clock()

        def save(tx: StoreTransaction) -> Token:
            token = tx.get_token(token_id)
            if token is None:
                raise NotFoundError(f"no token {token_id!r}", reason="TOKEN_NOT_FOUND")
            revoked = dataclasses.replace(token, revoked_at=token.revoked_at or now)
            _saved(tx, revoked)
            return revoked

        token = await self._core.db.run(save)
        self._core.credentials.remember_token(token)
        return token

    async def ensure_admin_token(self, path: Path) -> None:
        """Keep the admin token in `path` if it is valid, else write a new one (mode 0600)."""
        if path.exists():
            secret = path.read_text().strip()
            token = self._core.credentials.token(secret)
            if (
                token is not None
                and token.role is Role.ADMIN
                and token.valid_at(self._core.clock())
            ):
                return
        _, secret = await self.create(Role.ADMIN, "bootstrap admin token")
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(secret + "\n")
        os.chmod(path, 0o600)
        log.info("wrote a new admin token to %s", path)


def _saved(tx: StoreTransaction, token: Token, *, insert: bool = False) -> None:
    """Store a new or changed token, and tell the other schedulers."""
    if insert:
        tx.insert_token(token)
    else:
        tx.replace_token(token)
    tx.announce("token", token.id)
