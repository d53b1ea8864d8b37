"""API keys and members of the caller's tenant."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, delete, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody, PathParameter

from nextra.api.consistency import projected
from nextra.api.context import ApiContext
from nextra.api.flows import ID_PATTERN
from nextra.api.identity import Forbidden, Principal
from nextra.auth.api_keys import generate_api_key
from nextra.events.envelope import CommandContext
from nextra.kernel.errors import ValidationError
from nextra.readmodels.access import read_api_keys, read_members

__all__ = ("AccessController",)


class ApiKeyInput(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    role: Literal["admin", "member"] = "member"
    expires_at: datetime | None = None


class ApiKeyOut(msgspec.Struct, kw_only=True):
    """An API key as listed: never its secret."""

    id: str
    name: str
    role: str
    created_at: datetime | None
    expires_at: datetime | None
    revoked: bool


class NewApiKeyOut(msgspec.Struct, kw_only=True):
    """A new key: ``secret`` is shown now and never again."""

    id: str
    name: str
    role: str
    expires_at: datetime | None
    secret: str


class MemberOut(msgspec.Struct, kw_only=True):
    user_id: str
    role: str
    email: str
    added_at: datetime


def _require_admin(principal: Principal) -> None:
    if principal.role not in {"owner", "admin"}:
        message = "managing API keys needs the owner or admin role"
        raise Forbidden(message, expected="owner or admin", got=principal.role)


class AccessController(Controller):
    path = "/api"
    tags = ["access"]
    security = [{"bearer": []}]

    @get("/keys")
    async def list_keys(
        self,
        context: NamedDependency[ApiContext],
        principal: NamedDependency[Principal],
    ) -> list[ApiKeyOut]:
        """The tenant's API keys by id and name, revoked ones included."""
        async with context.engine.connect() as connection:
            keys = await read_api_keys(connection, principal.tenant_id)
        return [
            ApiKeyOut(
                id=key.key_id,
                name=key.name,
                role=key.role,
                created_at=key.created_at,
                expires_at=key.expires_at,
                revoked=key.revoked_at is not None,
            )
            for key in keys
        ]

    @post("/keys")
    async def create_key(
        self,
        request: Request[Any, Any, Any],
        context: NamedDependency[ApiContext],
        principal: NamedDependency[Principal],
        data: JSONBody[ApiKeyInput],
    ) -> NewApiKeyOut:
        """Issue an API key. Its secret is in this response only."""
        _require_admin(principal)
        if data.expires_at is not None and data.expires_at <= datetime.now(UTC):
            message = "expires_at must be in the future"
            raise ValidationError(message, got=data.expires_at, where="expires_at")
        key = generate_api_key()
        result = await context.tenants.create_api_key(
            principal.tenant_id,
            key_id=key.prefix,
            key_hash=key.hash,
            name=data.name,
            role=data.role,
            expires_at=data.expires_at,
            context=CommandContext(actor=principal.actor),
        )
        await projected(context, "access", result)
        return NewApiKeyOut(
            id=key.prefix,
            name=data.name,
            role=data.role,
            expires_at=data.expires_at,
            secret=key.secret,
        )

    @delete("/keys/{key_id:str}", status_code=204)
    async def revoke_key(
        self,
        context: NamedDependency[ApiContext],
        principal: NamedDependency[Principal],
        key_id: Annotated[str, PathParameter(pattern=ID_PATTERN)],
    ) -> None:
        """Revoke an API key; requests with it fail from then on."""
        _require_admin(principal)
        result = await context.tenants.revoke_api_key(
            principal.tenant_id, key_id, context=CommandContext(actor=principal.actor)
        )
        # Other API processes hear of it from the event; this one need not wait.
        context.tenant_cache.forget_tenant(principal.tenant_id)
        await projected(context, "access", result)

    @get("/members")
    async def list_members(
        self,
        context: NamedDependency[ApiContext],
        principal: NamedDependency[Principal],
    ) -> list[MemberOut]:
        async with context.engine.connect() as connection:
            members = await read_members(connection, principal.tenant_id)
        return [
            MemberOut(
                user_id=m.user_id, role=m.role, email=m.email, added_at=m.added_at
            )
            for m in members
        ]
