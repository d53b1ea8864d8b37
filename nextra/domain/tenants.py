"""The tenant aggregate: its state, folded from events, and the decisions on it."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import msgspec

from nextra.domain.tiers import limits_for
from nextra.events.base import Event
from nextra.events.tenants import (
    ApiKeyCreated,
    ApiKeyRevoked,
    FlowRegistered,
    FlowReleased,
    MemberAdded,
    MemberRemoved,
    MemberRoleChanged,
    Role,
    TenantCreated,
    TenantRenamed,
    TenantTierChanged,
    Tier,
)
from nextra.kernel.errors import ConflictError, LimitExceeded, NotFoundError

__all__ = (
    "KIND",
    "AddMember",
    "ApiKeyState",
    "ChangeMemberRole",
    "ChangeTier",
    "Command",
    "CreateApiKey",
    "CreateTenant",
    "RegisterFlow",
    "ReleaseFlow",
    "RemoveMember",
    "RenameTenant",
    "RevokeApiKey",
    "TenantState",
    "decide",
    "evolve",
    "fold",
)

KIND = "tenant"


class ApiKeyState(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    key_hash: str
    role: Role
    expires_at: datetime | None = None
    revoked: bool = False


class TenantState(msgspec.Struct, frozen=True, kw_only=True):
    exists: bool = False
    name: str = ""
    tier: Tier = "free"
    members: dict[str, Role] = {}
    api_keys: dict[str, ApiKeyState] = {}
    flows: frozenset[str] = frozenset()


class CreateTenant(msgspec.Struct, frozen=True, kw_only=True):
    tenant_id: str
    name: str
    tier: Tier = "free"
    owner: str | None = None
    """User id of the first owner, when a person creates the tenant."""


class RenameTenant(msgspec.Struct, frozen=True, kw_only=True):
    tenant_id: str
    name: str


class ChangeTier(msgspec.Struct, frozen=True, kw_only=True):
    tenant_id: str
    tier: Tier


class AddMember(msgspec.Struct, frozen=True, kw_only=True):
    tenant_id: str
    user_id: str
    role: Role = "member"
    email: str = ""


class ChangeMemberRole(msgspec.Struct, frozen=True, kw_only=True):
    tenant_id: str
    user_id: str
    role: Role


class RemoveMember(msgspec.Struct, frozen=True, kw_only=True):
    tenant_id: str
    user_id: str


class CreateApiKey(msgspec.Struct, frozen=True, kw_only=True):
    tenant_id: str
    key_id: str
    name: str
    key_hash: str
    role: Role = "member"
    expires_at: datetime | None = None


class RevokeApiKey(msgspec.Struct, frozen=True, kw_only=True):
    tenant_id: str
    key_id: str


class RegisterFlow(msgspec.Struct, frozen=True, kw_only=True):
    tenant_id: str
    flow_id: str


class ReleaseFlow(msgspec.Struct, frozen=True, kw_only=True):
    tenant_id: str
    flow_id: str


Command = (
    CreateTenant
    | RenameTenant
    | ChangeTier
    | AddMember
    | ChangeMemberRole
    | RemoveMember
    | CreateApiKey
    | RevokeApiKey
    | RegisterFlow
    | ReleaseFlow
)


def evolve(state: TenantState, event: Event) -> TenantState:
    replace = msgspec.structs.replace
    if isinstance(event, TenantCreated):
        return TenantState(exists=True, name=event.name, tier=event.tier)
    if isinstance(event, TenantRenamed):
        return replace(state, name=event.name)
    if isinstance(event, TenantTierChanged):
        return replace(state, tier=event.tier)
    if isinstance(event, MemberAdded | MemberRoleChanged):
        return replace(state, members={**state.members, event.user_id: event.role})
    if isinstance(event, MemberRemoved):
        members = {k: v for k, v in state.members.items() if k != event.user_id}
        return replace(state, members=members)
    if isinstance(event, ApiKeyCreated):
        key = ApiKeyState(
            name=event.name,
            key_hash=event.key_hash,
            role=event.role,
            expires_at=event.expires_at,
        )
        return replace(state, api_keys={**state.api_keys, event.key_id: key})
    if isinstance(event, ApiKeyRevoked):
        revoked = replace(state.api_keys[event.key_id], revoked=True)
        return replace(state, api_keys={**state.api_keys, event.key_id: revoked})
    if isinstance(event, FlowRegistered):
        return replace(state, flows=state.flows | {event.flow_id})
    if isinstance(event, FlowReleased):
        return replace(state, flows=state.flows - {event.flow_id})
    return state


def fold(events: Iterable[Event]) -> TenantState:
    # Flows are gathered in one mutable set: evolving a frozen set per event
    # would copy it every time, quadratic in a tenant's flows.
    state = TenantState()
    flows: set[str] = set()
    for event in events:
        if isinstance(event, FlowRegistered):
            flows.add(event.flow_id)
        elif isinstance(event, FlowReleased):
            flows.discard(event.flow_id)
        else:
            state = evolve(state, event)
    return msgspec.structs.replace(state, flows=frozenset(flows))


def decide(state: TenantState, command: Command) -> list[Event]:
    """The events a command produces; an empty list when it changes nothing.

    Raises:
        ConflictError: The command contradicts the state (a tenant that exists,
            a member already there, removing the last owner).
        NotFoundError: The tenant, member or key does not exist.
        LimitExceeded: The tier allows no more flows or members.
    """
    where = f"tenant/{command.tenant_id}"
    if isinstance(command, CreateTenant):
        if state.exists:
            message = f"tenant {command.tenant_id} already exists"
            raise ConflictError(message, where=where)
        created: list[Event] = [TenantCreated(name=command.name, tier=command.tier)]
        if command.owner:
            created.append(MemberAdded(user_id=command.owner, role="owner"))
        return created

    if not state.exists:
        message = f"tenant {command.tenant_id} does not exist"
        raise NotFoundError(message, where=where)
    limits = limits_for(state.tier)

    if isinstance(command, RenameTenant):
        return [] if command.name == state.name else [TenantRenamed(name=command.name)]
    if isinstance(command, ChangeTier):
        return (
            [] if command.tier == state.tier else [TenantTierChanged(tier=command.tier)]
        )

    if isinstance(command, AddMember):
        if command.user_id in state.members:
            message = f"{command.user_id} is already a member of {command.tenant_id}"
            raise ConflictError(message, where=where)
        _within(limits.members, len(state.members) + 1, "members", state.tier)
        return [
            MemberAdded(user_id=command.user_id, role=command.role, email=command.email)
        ]
    if isinstance(command, ChangeMemberRole | RemoveMember):
        current = state.members.get(command.user_id)
        if current is None:
            message = f"{command.user_id} is not a member of {command.tenant_id}"
            raise NotFoundError(message, where=where)
        new_role = command.role if isinstance(command, ChangeMemberRole) else None
        if current == "owner" and new_role != "owner":
            owners = [u for u, role in state.members.items() if role == "owner"]
            if owners == [command.user_id]:
                message = f"{command.user_id} is the last owner of {command.tenant_id}"
                raise ConflictError(message, where=where)
        if new_role is None:
            return [MemberRemoved(user_id=command.user_id)]
        return (
            []
            if new_role == current
            else [MemberRoleChanged(user_id=command.user_id, role=new_role)]
        )

    if isinstance(command, CreateApiKey):
        if command.key_id in state.api_keys:
            message = f"API key {command.key_id} already exists"
            raise ConflictError(message, where=where)
        return [
            ApiKeyCreated(
                key_id=command.key_id,
                name=command.name,
                key_hash=command.key_hash,
                role=command.role,
                expires_at=command.expires_at,
            )
        ]
    if isinstance(command, RevokeApiKey):
        key = state.api_keys.get(command.key_id)
        if key is None:
            message = f"API key {command.key_id} does not exist"
            raise NotFoundError(message, where=where)
        return [] if key.revoked else [ApiKeyRevoked(key_id=command.key_id)]

    if isinstance(command, RegisterFlow):
        if command.flow_id in state.flows:
            return []
        _within(limits.flows, len(state.flows) + 1, "flows", state.tier)
        return [FlowRegistered(flow_id=command.flow_id)]
    if command.flow_id not in state.flows:
        return []
    return [FlowReleased(flow_id=command.flow_id)]


def _within(limit: int | None, wanted: int, resource: str, tier: Tier) -> None:
    if limit is not None and wanted > limit:
        allowed = f"{limit} {resource.removesuffix('s') if limit == 1 else resource}"
        message = (
            f"the {tier} tier allows {allowed}; this would make {wanted}. "
            "Remove one or move to a larger tier"
        )
        raise LimitExceeded(
            message, expected=limit, got=wanted, where=f"tier.{resource}"
        )
