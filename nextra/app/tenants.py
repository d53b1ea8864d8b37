"""Creating and changing tenants."""

from __future__ import annotations

from datetime import datetime

from nextra.domain import tenants as domain
from nextra.events.envelope import AggregateRef, CommandContext
from nextra.events.tenants import Role, Tier
from nextra.eventstore.base import AppendResult, EventStore
from nextra.kernel.errors import ConcurrencyError

__all__ = ("TenantCommands",)

_ATTEMPTS = 5


class TenantCommands:
    """The write side of tenants.

    Each method returns the :class:`AppendResult` (``None`` when nothing
    changed), whose ``last_sequence`` a caller can wait on to read its write.
    """

    def __init__(self, store: EventStore) -> None:
        self._store = store

    async def create(
        self,
        tenant_id: str,
        name: str,
        *,
        tier: Tier = "free",
        owner: str | None = None,
        context: CommandContext,
    ) -> AppendResult | None:
        command = domain.CreateTenant(
            tenant_id=tenant_id, name=name, tier=tier, owner=owner
        )
        return await self._handle(tenant_id, command, context)

    async def add_member(
        self,
        tenant_id: str,
        user_id: str,
        *,
        role: Role = "member",
        email: str = "",
        context: CommandContext,
    ) -> AppendResult | None:
        command = domain.AddMember(
            tenant_id=tenant_id, user_id=user_id, role=role, email=email
        )
        return await self._handle(tenant_id, command, context)

    async def change_member_role(
        self, tenant_id: str, user_id: str, role: Role, *, context: CommandContext
    ) -> AppendResult | None:
        command = domain.ChangeMemberRole(
            tenant_id=tenant_id, user_id=user_id, role=role
        )
        return await self._handle(tenant_id, command, context)

    async def remove_member(
        self, tenant_id: str, user_id: str, *, context: CommandContext
    ) -> AppendResult | None:
        command = domain.RemoveMember(tenant_id=tenant_id, user_id=user_id)
        return await self._handle(tenant_id, command, context)

    async def create_api_key(
        self,
        tenant_id: str,
        *,
        key_id: str,
        key_hash: str,
        name: str,
        role: Role = "member",
        expires_at: datetime | None = None,
        context: CommandContext,
    ) -> AppendResult | None:
        """Record an API key by its public id and hash; the secret is never seen."""
        command = domain.CreateApiKey(
            tenant_id=tenant_id,
            key_id=key_id,
            name=name,
            key_hash=key_hash,
            role=role,
            expires_at=expires_at,
        )
        return await self._handle(tenant_id, command, context)

    async def revoke_api_key(
        self, tenant_id: str, key_id: str, *, context: CommandContext
    ) -> AppendResult | None:
        command = domain.RevokeApiKey(tenant_id=tenant_id, key_id=key_id)
        return await self._handle(tenant_id, command, context)

    async def rename(
        self, tenant_id: str, name: str, *, context: CommandContext
    ) -> AppendResult | None:
        command = domain.RenameTenant(tenant_id=tenant_id, name=name)
        return await self._handle(tenant_id, command, context)

    async def change_tier(
        self, tenant_id: str, tier: Tier, *, context: CommandContext
    ) -> AppendResult | None:
        command = domain.ChangeTier(tenant_id=tenant_id, tier=tier)
        return await self._handle(tenant_id, command, context)

    async def _handle(
        self, tenant_id: str, command: domain.Command, context: CommandContext
    ) -> AppendResult | None:
        aggregate = AggregateRef(tenant_id, domain.KIND, tenant_id)
        for attempt in range(1, _ATTEMPTS + 1):
            history = await self._store.load(aggregate)
            earlier = [
                r.sequence for r in history if r.command_id == context.command_id
            ]
            if earlier:
                # A retry of a command that was stored: answer as the first time.
                return AppendResult(
                    first_sequence=earlier[0], last_sequence=earlier[-1], duplicate=True
                )
            state = domain.fold(recorded.event for recorded in history)
            version = history[-1].sequence if history else 0

            events = domain.decide(state, command)
            if not events:
                return None

            try:
                return await self._store.append(
                    aggregate, events, expected_version=version, context=context
                )
            except ConcurrencyError:
                # Someone changed the tenant between our load and append: decide
                # again on the newer state, a bounded number of times.
                if attempt == _ATTEMPTS:
                    raise
        msg = "unreachable"
        raise AssertionError(msg)
