"""Who may act for a tenant: members and API keys, as the API checks and lists them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import msgspec
from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from nextra.events.envelope import RecordedEvent
from nextra.events.tenants import (
    ApiKeyCreated,
    ApiKeyRevoked,
    MemberAdded,
    MemberRemoved,
    MemberRoleChanged,
)
from nextra.readmodels.projection import Projection
from nextra.readmodels.tables import api_keys, tenant_members

__all__ = (
    "AccessProjection",
    "ApiKeySummary",
    "Member",
    "read_api_key",
    "read_api_keys",
    "read_member",
    "read_members",
)


class Member(msgspec.Struct, frozen=True, kw_only=True):
    tenant_id: str
    user_id: str
    role: str
    email: str
    added_at: datetime


class ApiKeySummary(msgspec.Struct, frozen=True, kw_only=True):
    key_id: str
    tenant_id: str
    name: str
    key_hash: str
    role: str
    expires_at: datetime | None
    created_at: datetime
    created_by: str
    revoked_at: datetime | None


class AccessProjection(Projection):
    tables = (tenant_members, api_keys)

    async def apply(
        self, connection: AsyncConnection, events: Sequence[RecordedEvent]
    ) -> None:
        for recorded in events:
            event = recorded.event
            tenant_id = recorded.aggregate.tenant_id
            if isinstance(event, MemberAdded):
                await connection.execute(
                    insert(tenant_members)
                    .values(
                        tenant_id=tenant_id,
                        user_id=event.user_id,
                        role=event.role,
                        email=event.email,
                        added_at=recorded.recorded_at,
                    )
                    .on_conflict_do_update(
                        index_elements=["tenant_id", "user_id"],
                        set_={"role": event.role, "email": event.email},
                    )
                )
            elif isinstance(event, MemberRoleChanged):
                await connection.execute(
                    update(tenant_members)
                    .where(
                        tenant_members.c.tenant_id == tenant_id,
                        tenant_members.c.user_id == event.user_id,
                    )
                    .values(role=event.role)
                )
            elif isinstance(event, MemberRemoved):
                await connection.execute(
                    delete(tenant_members).where(
                        tenant_members.c.tenant_id == tenant_id,
                        tenant_members.c.user_id == event.user_id,
                    )
                )
            elif isinstance(event, ApiKeyCreated):
                await connection.execute(
                    insert(api_keys)
                    .values(
                        key_id=event.key_id,
                        tenant_id=tenant_id,
                        name=event.name,
                        key_hash=event.key_hash,
                        role=event.role,
                        expires_at=event.expires_at,
                        created_at=recorded.recorded_at,
                        created_by=recorded.actor,
                    )
                    .on_conflict_do_nothing()
                )
            elif isinstance(event, ApiKeyRevoked):
                await connection.execute(
                    update(api_keys)
                    .where(
                        api_keys.c.tenant_id == tenant_id,
                        api_keys.c.key_id == event.key_id,
                    )
                    .values(revoked_at=recorded.recorded_at)
                )


async def read_api_key(
    connection: AsyncConnection, key_id: str
) -> ApiKeySummary | None:
    """The key with this public prefix, whichever tenant holds it (for auth)."""
    row = (
        await connection.execute(select(api_keys).where(api_keys.c.key_id == key_id))
    ).first()
    return ApiKeySummary(**row._mapping) if row else None


async def read_api_keys(
    connection: AsyncConnection, tenant_id: str
) -> list[ApiKeySummary]:
    rows = await connection.execute(
        select(api_keys)
        .where(api_keys.c.tenant_id == tenant_id)
        .order_by(api_keys.c.created_at, api_keys.c.key_id)
    )
    return [ApiKeySummary(**row._mapping) for row in rows]


async def read_member(
    connection: AsyncConnection, tenant_id: str, user_id: str
) -> Member | None:
    row = (
        await connection.execute(
            select(tenant_members).where(
                tenant_members.c.tenant_id == tenant_id,
                tenant_members.c.user_id == user_id,
            )
        )
    ).first()
    return Member(**row._mapping) if row else None


async def read_members(connection: AsyncConnection, tenant_id: str) -> list[Member]:
    rows = await connection.execute(
        select(tenant_members)
        .where(tenant_members.c.tenant_id == tenant_id)
        .order_by(tenant_members.c.added_at, tenant_members.c.user_id)
    )
    return [Member(**row._mapping) for row in rows]
