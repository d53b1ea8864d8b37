"""The tenant aggregate: its state, folded from events, and the decisions on it."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from nextra.events.base import Event
from nextra.events.tenants import TenantCreated, TenantRenamed, TenantTierChanged, Tier
from nextra.kernel.errors import ConflictError, NotFoundError

__all__ = (
    "KIND",
    "ChangeTier",
    "Command",
    "CreateTenant",
    "RenameTenant",
    "TenantState",
    "decide",
    "evolve",
    "fold",
)

KIND = "tenant"


class TenantState(msgspec.Struct, frozen=True, kw_only=True):
    exists: bool = False
    name: str = ""
    tier: Tier = "free"


class CreateTenant(msgspec.Struct, frozen=True, kw_only=True):
    tenant_id: str
    name: str
    tier: Tier = "free"


class RenameTenant(msgspec.Struct, frozen=True, kw_only=True):
    tenant_id: str
    name: str


class ChangeTier(msgspec.Struct, frozen=True, kw_only=True):
    tenant_id: str
    tier: Tier


Command = CreateTenant | RenameTenant | ChangeTier


def evolve(state: TenantState, event: Event) -> TenantState:
    if isinstance(event, TenantCreated):
        return TenantState(exists=True, name=event.name, tier=event.tier)
    if isinstance(event, TenantRenamed):
        return msgspec.structs.replace(state, name=event.name)
    if isinstance(event, TenantTierChanged):
        return msgspec.structs.replace(state, tier=event.tier)
    return state


def fold(events: Iterable[Event]) -> TenantState:
    state = TenantState()
    for event in events:
        state = evolve(state, event)
    return state


def decide(state: TenantState, command: Command) -> list[Event]:
    """The events a command produces; an empty list when it changes nothing.

    Raises:
        ConflictError: Creating a tenant that exists.
        NotFoundError: Changing a tenant that does not.
    """
    if isinstance(command, CreateTenant):
        if state.exists:
            message = f"tenant {command.tenant_id} already exists"
            raise ConflictError(message, where=f"tenant/{command.tenant_id}")
        return [TenantCreated(name=command.name, tier=command.tier)]

    if not state.exists:
        message = f"tenant {command.tenant_id} does not exist"
        raise NotFoundError(message, where=f"tenant/{command.tenant_id}")
    if isinstance(command, RenameTenant):
        return [] if command.name == state.name else [TenantRenamed(name=command.name)]
    return [] if command.tier == state.tier else [TenantTierChanged(tier=command.tier)]
