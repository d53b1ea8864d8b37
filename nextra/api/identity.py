"""Who is calling: every /api request resolves to one principal of one tenant."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
from litestar import Request, WebSocket
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency

from nextra.api.context import ApiContext
from nextra.auth.api_keys import parse_api_key, verify_api_key
from nextra.auth.errors import AuthenticationError
from nextra.auth.jwt import JwksVerifier
from nextra.kernel.errors import NextraError
from nextra.readmodels.access import read_api_key, read_member

__all__ = (
    "Forbidden",
    "Principal",
    "authenticate",
    "provide_principal",
    "socket_token",
    "still_allowed",
)


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """The caller of one request.

    Attributes:
        actor: How events record the caller: ``user:<id>`` or ``api-key:<id>``.
    """

    tenant_id: str
    actor: str
    role: str


class Forbidden(NextraError):
    """Authenticated, but not allowed to act for this tenant."""

    code = "forbidden"


def _bearer(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    header = connection.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        message = "send an API key or a session token as 'Authorization: Bearer ...'"
        raise AuthenticationError(message, reason="missing-header")
    return token.strip()


async def provide_principal(
    request: Request[Any, Any, Any], context: NamedDependency[ApiContext]
) -> Principal:
    """Authenticate the request and scope it to one tenant.

    Raises:
        AuthenticationError: No credentials, or credentials that do not verify.
        Forbidden: A valid session of a user who is not a member of its tenant.
    """
    return await authenticate(_bearer(request), context)


def socket_token(socket: WebSocket[Any, Any, Any]) -> str:
    """The token a WebSocket caller sent.

    ``Authorization: Bearer`` as on HTTP routes, or else ``?access_token=``:
    browsers cannot set headers on a WebSocket. Only WebSocket routes read the
    query, and nothing logs it (request logs carry the path alone).
    """
    if "authorization" in socket.headers:
        return _bearer(socket)
    token = socket.query_params.get("access_token", "").strip()
    if not token:
        message = (
            "send an API key or a session token as 'Authorization: Bearer ...' "
            "or as ?access_token=..."
        )
        raise AuthenticationError(message, reason="missing-header")
    return token


async def authenticate(token: str, context: ApiContext) -> Principal:
    """The principal a bearer token stands for.

    Raises:
        AuthenticationError: Credentials that do not verify.
        Forbidden: A valid session of a user who is not a member of its tenant.
    """
    if token.startswith("nx_"):
        return await _from_api_key(token, context)
    if context.sessions is None:
        message = "this deployment accepts API keys only"
        raise AuthenticationError(message, reason="malformed")
    return await _from_session(token, context.sessions, context)


async def _from_api_key(token: str, context: ApiContext) -> Principal:
    known = context.tenant_cache.api_key(token)
    if known is not None:
        tenant_id, key_id, role = known
        return Principal(tenant_id=tenant_id, actor=f"api-key:{key_id}", role=role)

    parsed = parse_api_key(token)
    async with context.engine.connect() as connection:
        key = await read_api_key(connection, parsed.prefix)

    # One answer for every failure, so that keys cannot be probed.
    refused = AuthenticationError(
        "the API key is not valid", reason="bad-signature", where="authorization"
    )
    if key is None or not verify_api_key(parsed.secret, key.key_hash):
        raise refused
    if key.revoked_at is not None:
        raise refused
    if key.expires_at is not None and key.expires_at <= datetime.now(UTC):
        message = "the API key has expired"
        raise AuthenticationError(message, reason="expired", where="authorization")
    context.tenant_cache.keep_api_key(
        token,
        tenant_id=key.tenant_id,
        key_id=key.key_id,
        role=key.role,
        expires_at=key.expires_at,
    )
    return Principal(
        tenant_id=key.tenant_id, actor=f"api-key:{key.key_id}", role=key.role
    )


async def _from_session(
    token: str, sessions: JwksVerifier, context: ApiContext
) -> Principal:
    claims = await sessions.verify(token)
    # A Clerk organisation is a tenant; a user without one works in their own.
    tenant_id = claims.org_id or claims.subject
    role = await _member_role(tenant_id, claims.subject, context)
    return Principal(tenant_id=tenant_id, actor=f"user:{claims.subject}", role=role)


async def _member_role(tenant_id: str, user_id: str, context: ApiContext) -> str:
    role = context.tenant_cache.member_role(tenant_id, user_id)
    if role is None:
        async with context.engine.connect() as connection:
            member = await read_member(connection, tenant_id, user_id)
        if member is None:
            message = f"user {user_id} is not a member of tenant {tenant_id}"
            raise Forbidden(message, where="tenant")
        role = member.role
        context.tenant_cache.keep_member_role(tenant_id, user_id, role)
    return role


async def still_allowed(token: str, principal: Principal, context: ApiContext) -> None:
    """Check again that a long-lived connection's caller may still act.

    An API key is checked in full: revoked or expired, it is refused. A session
    is checked for its membership only: its token was verified when the
    connection opened, and a Clerk session token expires within a minute or
    so, while a connection may last for hours.

    Raises:
        AuthenticationError: The API key was revoked or has expired.
        Forbidden: The user is no longer a member of the tenant.
    """
    if token.startswith("nx_"):
        await _from_api_key(token, context)
        return
    await _member_role(
        principal.tenant_id, principal.actor.removeprefix("user:"), context
    )
