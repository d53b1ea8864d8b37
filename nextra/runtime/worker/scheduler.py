"""Weighted fair choice of the next flow to serve: across tenants, then flows.

Stride scheduling. Every tenant with work has a *pass*; serving it ``n`` events
advances its pass by ``n / weight``, and the tenant with the lowest pass goes
next. A tenant that wakes up starts at the lowest pass among those waiting, so
idle time is not banked into a burst later. Within a tenant its flows take turns
the same way with equal weights, so one flow's flood does not starve another
flow of the same tenant.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from nextra.events.tenants import Tier

__all__ = ("TIER_WEIGHTS", "FairScheduler")

TIER_WEIGHTS: Mapping[Tier, float] = {
    "free": 1.0,
    "paid": 2.0,
    "pro": 4.0,
    "enterprise": 8.0,
}
"""Each tier's share of the workers when tenants compete."""


class _Tenant:
    __slots__ = ("flows", "pass_", "weight")

    def __init__(self, weight: float, start: float) -> None:
        self.weight = weight
        self.pass_ = start
        self.flows: dict[str, float] = {}


class FairScheduler:
    """Which (tenant, flow) a worker should pull from next."""

    def __init__(self, weights: Mapping[Tier, float] = TIER_WEIGHTS) -> None:
        self._weights = weights
        self._tenants: dict[str, _Tenant] = {}
        self._tiers: dict[str, Tier] = {}

    def __len__(self) -> int:
        return sum(len(tenant.flows) for tenant in self._tenants.values())

    def wake(self, tenant_id: str, flow_id: str, tier: Tier | None = None) -> None:
        """The flow has (or may have) work waiting."""
        if tier is not None:
            self._tiers[tenant_id] = tier
        weight = self._weights.get(self._tiers.get(tenant_id, "free"), 1.0)
        tenant = self._tenants.get(tenant_id)
        if tenant is None:
            tenant = _Tenant(weight, self._lowest())
            self._tenants[tenant_id] = tenant
        tenant.weight = weight
        if flow_id not in tenant.flows:
            floor = min(tenant.flows.values(), default=0.0)
            tenant.flows[flow_id] = floor

    def next(self, exclude: Collection[tuple[str, str]] = ()) -> tuple[str, str] | None:
        """The flow to serve now, or ``None`` when nothing is waiting.

        Flows in ``exclude`` (being pulled from already) are passed over.
        """
        best: tuple[float, float, str, str] | None = None
        for tenant_id, tenant in self._tenants.items():
            if best is not None and tenant.pass_ >= best[0]:
                continue
            for flow_id, flow_pass in tenant.flows.items():
                if (tenant_id, flow_id) in exclude:
                    continue
                candidate = (tenant.pass_, flow_pass, tenant_id, flow_id)
                if best is None or candidate[:2] < best[:2]:
                    best = candidate
        return None if best is None else (best[2], best[3])

    def served(self, tenant_id: str, flow_id: str, count: int) -> None:
        """``count`` events of the flow were handed to this worker."""
        tenant = self._tenants.get(tenant_id)
        if tenant is None or flow_id not in tenant.flows:
            return
        tenant.pass_ += count / tenant.weight
        tenant.flows[flow_id] += count

    def idle(self, tenant_id: str, flow_id: str) -> None:
        """The flow had nothing to hand out; forget it until it wakes again."""
        tenant = self._tenants.get(tenant_id)
        if tenant is None:
            return
        tenant.flows.pop(flow_id, None)
        if not tenant.flows:
            del self._tenants[tenant_id]

    def _lowest(self) -> float:
        return min((tenant.pass_ for tenant in self._tenants.values()), default=0.0)
