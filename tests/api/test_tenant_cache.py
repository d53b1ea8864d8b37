"""The API's cache of callers and tiers: used, bounded, and dropped by tenant events."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta

from nextra.api import create_app
from nextra.api.tenant_cache import TenantCache
from nextra.events.envelope import CommandContext
from tests.api.conftest import Running
from tests.support.http import serve


def test_keys_are_kept_by_digest_and_forgotten_per_tenant() -> None:
    cache = TenantCache(ttl=600)
    cache.keep_api_key(
        "nx_a_secret", tenant_id="a", key_id="k1", role="owner", expires_at=None
    )
    cache.keep_api_key(
        "nx_b_secret", tenant_id="b", key_id="k2", role="member", expires_at=None
    )
    cache.keep_tier("a", "pro")

    cache.forget_tenant("a")

    assert cache.api_key("nx_a_secret") is None
    assert cache.tier("a") is None
    assert cache.api_key("nx_b_secret") == ("b", "k2", "member")
    assert cache.api_key("nx_b_secretX") is None


def test_nothing_of_a_changed_tenant_is_kept_until_its_read_model_can_follow() -> None:
    # A request that read Postgres just before the change was projected must
    # not make its answer outlive the change.
    cache = TenantCache(ttl=600)
    cache.forget_tenant("a")

    cache.keep_api_key(
        "nx_a", tenant_id="a", key_id="k1", role="owner", expires_at=None
    )
    cache.keep_tier("a", "pro")
    cache.keep_member_role("a", "user_1", "admin")
    cache.keep_api_key(
        "nx_b", tenant_id="b", key_id="k2", role="owner", expires_at=None
    )

    assert cache.api_key("nx_a") is None
    assert cache.tier("a") is None
    assert cache.member_role("a", "user_1") is None
    assert cache.api_key("nx_b") == ("b", "k2", "owner")


def test_a_key_is_not_kept_past_its_expiry_and_ttl_zero_keeps_nothing() -> None:
    cache = TenantCache(ttl=600)
    expired = datetime.now(UTC) - timedelta(seconds=1)
    cache.keep_api_key(
        "nx_old", tenant_id="a", key_id="k", role="owner", expires_at=expired
    )
    off = TenantCache(ttl=0)
    off.keep_api_key("nx_any", tenant_id="a", key_id="k", role="owner", expires_at=None)
    off.keep_tier("a", "pro")

    assert cache.api_key("nx_old") is None
    assert off.api_key("nx_any") is None
    assert off.tier("a") is None


async def test_a_key_revoked_through_one_api_process_stops_working_in_another(
    running: Running,
) -> None:
    # The second process keeps callers for ten minutes: only the revocation
    # event can make it refuse the key within this test.
    caller = await running.tenant()
    created = await running.http.post(
        "/api/keys", json={"name": "ci"}, headers=caller.headers
    )
    other = dataclasses.replace(
        running.platform.api_context(), tenant_cache=TenantCache(ttl=600)
    )
    secret = {"Authorization": f"Bearer {created.json()['secret']}"}

    async with serve(create_app(other)) as second:
        before = await second.get("/api/flows", headers=secret)
        assert other.tenant_cache.api_key(created.json()["secret"]) is not None
        revoked = await running.http.delete(
            f"/api/keys/{created.json()['id']}", headers=caller.headers
        )
        for _ in range(100):
            if other.tenant_cache.api_key(created.json()["secret"]) is None:
                break
            await asyncio.sleep(0.05)
        after = await second.get("/api/flows", headers=secret)

    assert before.status_code == 200
    assert revoked.status_code == 204
    assert after.status_code == 401


async def test_a_tier_change_drops_the_kept_tier(running: Running) -> None:
    caller = await running.tenant(tier="free")
    context = running.platform.api_context()
    context.tenant_cache.keep_tier(caller.tenant_id, "free")
    following = await context.tenant_cache.follow(running.platform.nc)

    try:
        await context.tenants.change_tier(
            caller.tenant_id, "pro", context=CommandContext()
        )
        for _ in range(100):
            if context.tenant_cache.tier(caller.tenant_id) is None:
                break
            await asyncio.sleep(0.05)
    finally:
        await following.unsubscribe()

    assert context.tenant_cache.tier(caller.tenant_id) is None
