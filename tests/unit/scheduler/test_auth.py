"""Credentials: tokens to principals; roles."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from taskyard.errors import PermissionDeniedError, UnauthenticatedError
from taskyard.scheduler.domain import Role, Token, Worker
from taskyard.scheduler.service.auth import (
    ClientPrincipal,
    Credentials,
    WorkerPrincipal,
    digest,
    require_role,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def credentials() -> Credentials:
    known = Credentials()
    known.load(
        [
            Token("admin", digest("admin-secret"), Role.ADMIN, NOW),
            Token("sub", digest("submit-secret"), Role.SUBMIT, NOW),
            Token("old", digest("expired"), Role.SUBMIT, NOW, expires_at=NOW),
            Token("gone", digest("revoked"), Role.ADMIN, NOW, revoked_at=NOW),
            Token("act", digest("activation"), Role.WORKER_ACTIVATION, NOW),
        ],
        [Worker("w1", digest("worker-secret"), NOW)],
    )
    return known


def test_tokens_become_principals() -> None:
    known = credentials()
    assert known.authenticate("admin-secret", NOW) == ClientPrincipal("admin", Role.ADMIN)
    assert known.authenticate("worker-secret", NOW) == WorkerPrincipal("w1", enabled=False)


@pytest.mark.parametrize("secret", [None, "", "nope", "expired", "revoked", "activation"])
def test_unusable_tokens_are_unauthenticated(secret: str | None) -> None:
    with pytest.raises(UnauthenticatedError):
        credentials().authenticate(secret, NOW + timedelta(seconds=1))


def test_roles_include_lesser_roles() -> None:
    admin = ClientPrincipal("a", Role.ADMIN)
    assert require_role(admin, Role.SUBMIT) is admin
    with pytest.raises(PermissionDeniedError, match="needs the admin role"):
        require_role(ClientPrincipal("s", Role.SUBMIT), Role.ADMIN)
    with pytest.raises(PermissionDeniedError, match="worker w1"):
        require_role(WorkerPrincipal("w1"), Role.SUBMIT)
