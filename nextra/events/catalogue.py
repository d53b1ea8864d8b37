"""The registry of every event type Nextra records."""

from __future__ import annotations

from nextra.events import flows, runs, tenants
from nextra.events.registry import EventRegistry

__all__ = ("REGISTRY",)

REGISTRY = EventRegistry(
    [
        tenants.TenantCreated,
        tenants.TenantRenamed,
        tenants.TenantTierChanged,
        tenants.MemberAdded,
        tenants.MemberRoleChanged,
        tenants.MemberRemoved,
        tenants.ApiKeyCreated,
        tenants.ApiKeyRevoked,
        tenants.FlowRegistered,
        tenants.FlowReleased,
        flows.FlowCreated,
        flows.FlowRevised,
        flows.FlowStarted,
        flows.FlowStopped,
        flows.FlowDeleted,
        runs.RunTriggered,
        runs.StepCompleted,
        runs.StepRetried,
        runs.RunCompleted,
        runs.RunFailed,
        runs.RunCancelled,
    ]
)
