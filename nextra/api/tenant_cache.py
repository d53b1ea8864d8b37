"""What an API process remembers of tenants between requests: callers and tiers.

Without it every request asks Postgres who its API key belongs to, and every
trigger asks for the tenant's tier. Entries live for a few seconds at most, and
any event of the tenant's own aggregate (a key revoked, a member removed, a tier
changed) drops all of that tenant's entries in every API process that follows
the events, so a revocation takes effect at once rather than after the TTL.
The TTL bounds how long a missed event can matter: the follower is a core NATS
subscription, which sees nothing while the process is disconnected.

The event arrives before the projection that answers from Postgres has applied
it, so for one TTL after a tenant's event nothing of that tenant is kept: a
request in that window reads Postgres, possibly before the change, but its
answer is not remembered past it.
"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime
from typing import Generic, TypeVar

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from nextra.domain.tenants import KIND
from nextra.events.tenants import Tier
from nextra.eventstore.subjects import kind_filter, parse_aggregate_subject
from nextra.kernel.errors import ValidationError
from nextra.kernel.logging import get_logger

__all__ = ("TenantCache",)

log = get_logger(__name__)

_Value = TypeVar("_Value")


class _Entries(Generic[_Value]):
    """Values by key, each tied to a tenant and a monotonic deadline."""

    def __init__(self, ttl: float, size: int) -> None:
        self._ttl = ttl
        self._size = size
        self._values: dict[str | bytes, tuple[float, str, _Value]] = {}
        self._by_tenant: dict[str, set[str | bytes]] = {}

    def get(self, key: str | bytes) -> _Value | None:
        entry = self._values.get(key)
        if entry is None:
            return None
        until, tenant_id, value = entry
        if time.monotonic() >= until:
            self._drop(key, tenant_id)
            return None
        return value

    def put(
        self, key: str | bytes, tenant_id: str, value: _Value, *, ttl: float | None
    ) -> None:
        lifetime = self._ttl if ttl is None else min(ttl, self._ttl)
        if lifetime <= 0:
            return
        if len(self._values) >= self._size and key not in self._values:
            # Rare and cheap to refill: start over rather than track recency.
            self._values.clear()
            self._by_tenant.clear()
        self._values[key] = (time.monotonic() + lifetime, tenant_id, value)
        self._by_tenant.setdefault(tenant_id, set()).add(key)

    def forget_tenant(self, tenant_id: str) -> None:
        for key in self._by_tenant.pop(tenant_id, ()):
            self._values.pop(key, None)

    def _drop(self, key: str | bytes, tenant_id: str) -> None:
        self._values.pop(key, None)
        keys = self._by_tenant.get(tenant_id)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_tenant[tenant_id]


class TenantCache:
    """Verified API keys, members' roles and tiers, for ``ttl`` seconds at most.

    API keys are held by a digest of the whole key, never the key itself, and
    only once they have verified: a wrong key is checked against Postgres every
    time, so guessing cannot fill the cache.

    Args:
        ttl: Longest an entry is used; ``0`` turns the cache off.
        size: Entries of each kind kept before the cache starts over.
    """

    def __init__(self, ttl: float = 5.0, size: int = 10_000) -> None:
        self.ttl = ttl
        self._keys: _Entries[tuple[str, str, str]] = _Entries(ttl, size)
        self._members: _Entries[str] = _Entries(ttl, size)
        self._tiers: _Entries[Tier] = _Entries(ttl, size)
        self._size = size
        self._changed: dict[str, float] = {}

    def api_key(self, token: str) -> tuple[str, str, str] | None:
        """The ``(tenant, key id, role)`` a verified key stands for, if known."""
        return self._keys.get(_digest(token))

    def keep_api_key(
        self,
        token: str,
        *,
        tenant_id: str,
        key_id: str,
        role: str,
        expires_at: datetime | None,
    ) -> None:
        ttl = None
        if expires_at is not None:
            # Never past the key's own expiry.
            ttl = (expires_at - datetime.now(UTC)).total_seconds()
        if not self._settled(tenant_id):
            return
        self._keys.put(_digest(token), tenant_id, (tenant_id, key_id, role), ttl=ttl)

    def member_role(self, tenant_id: str, user_id: str) -> str | None:
        return self._members.get(f"{tenant_id}/{user_id}")

    def keep_member_role(self, tenant_id: str, user_id: str, role: str) -> None:
        if not self._settled(tenant_id):
            return
        self._members.put(f"{tenant_id}/{user_id}", tenant_id, role, ttl=None)

    def tier(self, tenant_id: str) -> Tier | None:
        return self._tiers.get(tenant_id)

    def keep_tier(self, tenant_id: str, tier: Tier) -> None:
        if not self._settled(tenant_id):
            return
        self._tiers.put(tenant_id, tenant_id, tier, ttl=None)

    def forget_tenant(self, tenant_id: str) -> None:
        """Drop everything known of the tenant, and keep nothing of it for a TTL."""
        now = time.monotonic()
        if len(self._changed) >= self._size:
            self._changed = {t: at for t, at in self._changed.items() if at > now}
        self._changed[tenant_id] = now + self.ttl
        self._keys.forget_tenant(tenant_id)
        self._members.forget_tenant(tenant_id)
        self._tiers.forget_tenant(tenant_id)

    def _settled(self, tenant_id: str) -> bool:
        until = self._changed.get(tenant_id)
        if until is None:
            return True
        if time.monotonic() < until:
            return False
        del self._changed[tenant_id]
        return True

    async def follow(self, nc: NatsClient) -> Subscription:
        """Forget a tenant whenever one of its tenant events is published."""

        async def on_event(msg: Msg) -> None:
            try:
                tenant_id = parse_aggregate_subject(msg.subject).tenant_id
            except ValidationError:
                return
            self.forget_tenant(tenant_id)
            log.debug("tenant_cache.forgotten", tenant_id=tenant_id)

        return await nc.subscribe(kind_filter(KIND), cb=on_event)


def _digest(token: str) -> bytes:
    return hashlib.blake2b(token.encode(), digest_size=32).digest()
