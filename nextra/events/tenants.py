"""Events of the tenant aggregate: who uses Nextra, and on which tier."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar, Literal

import msgspec

from nextra.events.base import Event

__all__ = ("TenantCreated", "TenantRenamed", "TenantTierChanged", "Tier")

Tier = Literal["free", "paid", "pro", "enterprise"]
TenantName = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class TenantCreated(Event, frozen=True, kw_only=True):
    """A tenant came into being with a display name and a tier."""

    type_name: ClassVar[str] = "tenant.created"

    name: TenantName
    tier: Tier = "free"


class TenantRenamed(Event, frozen=True, kw_only=True):
    """A tenant's display name changed."""

    type_name: ClassVar[str] = "tenant.renamed"

    name: TenantName


class TenantTierChanged(Event, frozen=True, kw_only=True):
    """A tenant moved to another tier (billing or an operator decided it)."""

    type_name: ClassVar[str] = "tenant.tier_changed"

    tier: Tier


Role = Literal["owner", "admin", "member"]


class MemberAdded(Event, frozen=True, kw_only=True):
    """A person joined the tenant with a role."""

    type_name: ClassVar[str] = "tenant.member_added"

    user_id: str
    role: Role
    email: str = ""


class MemberRoleChanged(Event, frozen=True, kw_only=True):
    """A member's role changed."""

    type_name: ClassVar[str] = "tenant.member_role_changed"

    user_id: str
    role: Role


class MemberRemoved(Event, frozen=True, kw_only=True):
    """A person left the tenant."""

    type_name: ClassVar[str] = "tenant.member_removed"

    user_id: str


class ApiKeyCreated(Event, frozen=True, kw_only=True):
    """An API key was issued; only its hash is kept, the secret was shown once."""

    type_name: ClassVar[str] = "tenant.api_key_created"

    key_id: str
    name: str
    key_hash: str
    role: Role
    expires_at: datetime | None = None


class ApiKeyRevoked(Event, frozen=True, kw_only=True):
    """An API key stopped working."""

    type_name: ClassVar[str] = "tenant.api_key_revoked"

    key_id: str


class FlowRegistered(Event, frozen=True, kw_only=True):
    """A flow of the tenant came into being; it counts against the tier's limit."""

    type_name: ClassVar[str] = "tenant.flow_registered"

    flow_id: str


class FlowReleased(Event, frozen=True, kw_only=True):
    """A flow of the tenant was deleted; its place under the limit is free again."""

    type_name: ClassVar[str] = "tenant.flow_released"

    flow_id: str
