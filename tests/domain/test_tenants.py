"""Tenant decisions: members and roles, API keys, and the tier's flow limit."""

from __future__ import annotations

import pytest

from nextra.domain import tenants as t
from nextra.domain.tiers import TIERS
from nextra.events.tenants import (
    ApiKeyCreated,
    FlowRegistered,
    FlowReleased,
    MemberAdded,
    MemberRoleChanged,
    TenantCreated,
)
from nextra.kernel.errors import ConflictError, LimitExceeded, NotFoundError


def state(*commands: t.Command) -> t.TenantState:
    current = t.TenantState()
    for command in commands:
        for event in t.decide(current, command):
            current = t.evolve(current, event)
    return current


def created(tier: str = "free") -> t.TenantState:
    return state(t.CreateTenant(tenant_id="a", name="A", tier=tier, owner="u1"))  # type: ignore[arg-type]


def test_creating_with_an_owner_adds_the_owner() -> None:
    events = t.decide(
        t.TenantState(), t.CreateTenant(tenant_id="a", name="A", owner="u1")
    )

    assert events == [
        TenantCreated(name="A", tier="free"),
        MemberAdded(user_id="u1", role="owner"),
    ]


def test_free_tier_allows_one_flow_and_names_the_limit() -> None:
    current = state(
        t.CreateTenant(tenant_id="a", name="A"),
        t.RegisterFlow(tenant_id="a", flow_id="f1"),
    )

    with pytest.raises(LimitExceeded) as caught:
        t.decide(current, t.RegisterFlow(tenant_id="a", flow_id="f2"))

    assert caught.value.where == "tier.flows"
    assert (caught.value.expected, caught.value.got) == (TIERS["free"].flows, 2)
    assert "free tier allows 1 flow;" in caught.value.message


def test_releasing_a_flow_frees_its_place() -> None:
    current = state(
        t.CreateTenant(tenant_id="a", name="A"),
        t.RegisterFlow(tenant_id="a", flow_id="f1"),
        t.ReleaseFlow(tenant_id="a", flow_id="f1"),
    )

    assert t.decide(current, t.RegisterFlow(tenant_id="a", flow_id="f2")) == [
        FlowRegistered(flow_id="f2")
    ]
    assert t.decide(current, t.ReleaseFlow(tenant_id="a", flow_id="f1")) == []


def test_registering_the_same_flow_twice_changes_nothing() -> None:
    current = state(
        t.CreateTenant(tenant_id="a", name="A", tier="pro"),
        t.RegisterFlow(tenant_id="a", flow_id="f1"),
    )

    assert t.decide(current, t.RegisterFlow(tenant_id="a", flow_id="f1")) == []
    assert t.decide(current, t.ReleaseFlow(tenant_id="a", flow_id="f1")) == [
        FlowReleased(flow_id="f1")
    ]


def test_unlimited_tiers_do_not_count() -> None:
    current = created("pro")
    for number in range(50):
        current = t.evolve(current, FlowRegistered(flow_id=f"f{number}"))

    assert t.decide(current, t.RegisterFlow(tenant_id="a", flow_id="next"))


def test_member_limit_follows_the_tier() -> None:
    with pytest.raises(LimitExceeded, match="allows 1 member;"):
        t.decide(created("free"), t.AddMember(tenant_id="a", user_id="u2"))

    assert t.decide(created("enterprise"), t.AddMember(tenant_id="a", user_id="u2"))


def test_the_last_owner_cannot_leave_or_be_demoted() -> None:
    current = created("enterprise")

    with pytest.raises(ConflictError, match="last owner"):
        t.decide(current, t.RemoveMember(tenant_id="a", user_id="u1"))
    with pytest.raises(ConflictError, match="last owner"):
        t.decide(current, t.ChangeMemberRole(tenant_id="a", user_id="u1", role="admin"))

    with_two = t.evolve(current, MemberAdded(user_id="u2", role="owner"))
    assert t.decide(
        with_two, t.ChangeMemberRole(tenant_id="a", user_id="u1", role="admin")
    ) == [MemberRoleChanged(user_id="u1", role="admin")]


def test_api_keys_are_created_once_and_revoked_once() -> None:
    current = created()
    create = t.CreateApiKey(tenant_id="a", key_id="k1", name="ci", key_hash="h")

    [event] = t.decide(current, create)
    assert event == ApiKeyCreated(key_id="k1", name="ci", key_hash="h", role="member")
    current = t.evolve(current, event)

    with pytest.raises(ConflictError):
        t.decide(current, create)
    [revoked] = t.decide(current, t.RevokeApiKey(tenant_id="a", key_id="k1"))
    current = t.evolve(current, revoked)
    assert current.api_keys["k1"].revoked
    assert t.decide(current, t.RevokeApiKey(tenant_id="a", key_id="k1")) == []
    with pytest.raises(NotFoundError):
        t.decide(current, t.RevokeApiKey(tenant_id="a", key_id="nope"))


def test_commands_on_a_missing_tenant_are_not_found() -> None:
    with pytest.raises(NotFoundError):
        t.decide(t.TenantState(), t.RegisterFlow(tenant_id="a", flow_id="f"))
