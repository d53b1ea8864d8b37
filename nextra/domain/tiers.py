"""What each tier allows: the one table of limits, read by every check."""

from __future__ import annotations

import msgspec

from nextra.events.tenants import Tier

__all__ = ("TIERS", "TierLimits", "limits_for")

UNLIMITED = None


class TierLimits(msgspec.Struct, frozen=True, kw_only=True):
    """Limits of one tier; ``None`` means unlimited.

    Account limits (flows, executions, modules, memory, members) come from the
    original design's tier model; run limits bound every run (DESIGN.md, "Runs").
    """

    flows: int | None
    executions_per_month: int | None
    wasm_modules: int | None
    project_memory_bytes: int | None
    members: int | None
    # Run limits, enforced by the runtime.
    max_hops_per_run: int
    handler_timeout_seconds: float
    run_deadline_seconds: float
    max_payload_bytes: int
    max_fan_out: int
    max_llm_tokens_per_run: int
    max_concurrent_steps_per_flow: int


_MB = 1024 * 1024

TIERS: dict[Tier, TierLimits] = {
    "free": TierLimits(
        flows=1,
        executions_per_month=1_000,
        wasm_modules=0,
        project_memory_bytes=0,
        members=1,
        max_hops_per_run=100,
        handler_timeout_seconds=30,
        run_deadline_seconds=300,
        max_payload_bytes=64 * 1024,
        max_fan_out=10,
        max_llm_tokens_per_run=50_000,
        max_concurrent_steps_per_flow=2,
    ),
    "paid": TierLimits(
        flows=10,
        executions_per_month=10_000,
        wasm_modules=0,
        project_memory_bytes=10 * _MB,
        members=1,
        max_hops_per_run=500,
        handler_timeout_seconds=60,
        run_deadline_seconds=900,
        max_payload_bytes=256 * 1024,
        max_fan_out=25,
        max_llm_tokens_per_run=200_000,
        max_concurrent_steps_per_flow=5,
    ),
    "pro": TierLimits(
        flows=UNLIMITED,
        executions_per_month=100_000,
        wasm_modules=10,
        project_memory_bytes=100 * _MB,
        members=1,
        max_hops_per_run=2_000,
        handler_timeout_seconds=300,
        run_deadline_seconds=3_600,
        max_payload_bytes=512 * 1024,
        max_fan_out=100,
        max_llm_tokens_per_run=1_000_000,
        max_concurrent_steps_per_flow=20,
    ),
    "enterprise": TierLimits(
        flows=UNLIMITED,
        executions_per_month=UNLIMITED,
        wasm_modules=UNLIMITED,
        project_memory_bytes=UNLIMITED,
        members=UNLIMITED,
        max_hops_per_run=10_000,
        handler_timeout_seconds=900,
        run_deadline_seconds=86_400,
        max_payload_bytes=1024 * 1024,
        max_fan_out=500,
        max_llm_tokens_per_run=10_000_000,
        max_concurrent_steps_per_flow=100,
    ),
}


def limits_for(tier: Tier) -> TierLimits:
    return TIERS[tier]
