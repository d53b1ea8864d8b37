"""Events of the tenant aggregate: who uses Nextra, and on which tier."""

from __future__ import annotations

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
