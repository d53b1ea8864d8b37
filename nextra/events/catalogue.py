"""The registry of every event type Nextra records."""

from __future__ import annotations

from nextra.events.registry import EventRegistry
from nextra.events.tenants import TenantCreated, TenantRenamed, TenantTierChanged

__all__ = ("REGISTRY",)

REGISTRY = EventRegistry([TenantCreated, TenantRenamed, TenantTierChanged])
