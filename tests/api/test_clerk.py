"""Clerk: webhooks keep tenants and members in sync; session tokens authenticate."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from svix.webhooks import Webhook

from nextra.api.identity import Forbidden, authenticate, still_allowed
from nextra.events.envelope import CommandContext
from nextra.kernel.settings import load_settings
from nextra.readmodels.checkpoints import wait_projected
from tests.api.conftest import Running, platform_running
from tests.auth.jwks_server import JwksServer, jwks_server
from tests.auth.test_jwt import SigningKey

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ISSUER = "https://clerk.example.test"


@pytest.fixture
async def jwks(rsa_key: SigningKey) -> AsyncIterator[JwksServer]:
    async with jwks_server() as server:
        server.keys = [rsa_key.jwk]
        yield server


def new_key(kid: str) -> SigningKey:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return SigningKey(kid, "RS256", private)


@pytest.fixture(scope="module")
def rsa_key() -> SigningKey:
    return new_key("clerk-test")


@pytest.fixture
async def clerk(
    nats_url: str, database_url: str, events_stream: str, jwks: JwksServer
) -> AsyncIterator[Running]:
    settings = load_settings(
        {},
        nats_url=nats_url,
        database_url=database_url,
        clerk_jwks_url=jwks.url,
        clerk_issuer=ISSUER,
        clerk_webhook_secret=SECRET,
        read_your_writes_timeout=10,
    )
    async with platform_running(settings) as running:
        yield running


def signed(
    event_type: str, data: dict[str, Any], delivery: str
) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"type": event_type, "object": "event", "data": data}).encode()
    now = datetime.now(UTC)
    signature = Webhook(SECRET).sign(delivery, now, body.decode())
    headers = {
        "svix-id": delivery,
        "svix-timestamp": str(int(now.timestamp())),
        "svix-signature": signature,
        "content-type": "application/json",
    }
    return body, headers


def session(key: SigningKey, user: str, org: str | None) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": user, "iat": now, "exp": now + 60, "sid": "sess_1"}
    if org:
        claims["org_id"] = org
    return key.sign(claims)


async def deliver(
    clerk: Running, event_type: str, data: dict[str, Any], delivery: str
) -> Any:
    body, headers = signed(event_type, data, delivery)
    return await clerk.http.post("/webhooks/clerk", content=body, headers=headers)


async def test_an_organisation_and_its_members_follow_clerk(
    clerk: Running, rsa_key: SigningKey
) -> None:
    created = await deliver(
        clerk,
        "organization.created",
        {"id": "org_acme", "name": "Acme", "created_by": "user_ann"},
        "msg_1",
    )
    refused = await deliver(
        clerk,
        "organizationMembership.created",
        {
            "organization": {"id": "org_acme"},
            "public_user_data": {"user_id": "user_eve"},
            "role": "org:member",
        },
        "msg_free",
    )
    # What billing will do when the organisation upgrades:
    await clerk.platform.api_context().tenants.change_tier(
        "org_acme", "enterprise", context=CommandContext()
    )
    joined = await deliver(
        clerk,
        "organizationMembership.created",
        {
            "organization": {"id": "org_acme"},
            "public_user_data": {"user_id": "user_bob", "identifier": "bob@acme.test"},
            "role": "org:member",
        },
        "msg_2",
    )
    assert created.status_code == joined.status_code == 200
    assert refused.json()["status"] == "refused"
    assert "free tier allows 1 member;" in refused.json()["reason"]
    newest = await clerk.platform.store.last_sequence("nx.ev.org_acme.tenant.org_acme")
    await wait_projected(clerk.platform.engine, "access", newest, timeout=10)

    as_ann = {"Authorization": f"Bearer {session(rsa_key, 'user_ann', 'org_acme')}"}
    members = await clerk.http.get("/api/members", headers=as_ann)
    flows = await clerk.http.get(
        "/api/flows",
        headers={"Authorization": f"Bearer {session(rsa_key, 'user_bob', 'org_acme')}"},
    )

    assert {(m["user_id"], m["role"]) for m in members.json()} == {
        ("user_ann", "owner"),
        ("user_bob", "member"),
    }
    assert flows.status_code == 200


async def test_a_delivery_that_arrives_twice_changes_nothing(clerk: Running) -> None:
    data = {"id": "org_twice", "name": "Twice", "created_by": "user_tom"}

    first = await deliver(clerk, "organization.created", data, "msg_twice")
    again = await deliver(clerk, "organization.created", data, "msg_twice")

    assert first.json() == {"status": "processed"}
    assert again.status_code == 200
    assert again.json() == {"status": "already processed"}
    events = [
        e
        async for e in clerk.platform.store.read(
            subject="nx.ev.org_twice.tenant.org_twice"
        )
    ]
    assert [e.event_type for e in events] == ["tenant.created", "tenant.member_added"]


async def test_forged_and_stale_deliveries_are_refused(clerk: Running) -> None:
    body, headers = signed(
        "organization.created", {"id": "org_x", "name": "X"}, "msg_x"
    )

    tampered = await clerk.http.post(
        "/webhooks/clerk", content=body.replace(b"org_x", b"org_y"), headers=headers
    )
    stale = await clerk.http.post(
        "/webhooks/clerk",
        content=body,
        headers={**headers, "svix-timestamp": str(int(time.time()) - 3600)},
    )

    assert tampered.status_code == stale.status_code == 401
    assert tampered.headers["content-type"].startswith("application/problem+json")
    assert await clerk.platform.store.last_sequence("nx.ev.org_x.tenant.org_x") == 0


async def test_sessions_of_non_members_and_bad_tokens_are_refused(
    clerk: Running, rsa_key: SigningKey
) -> None:
    await deliver(
        clerk,
        "organization.created",
        {"id": "org_a", "name": "A", "created_by": "user_a"},
        "msg_a",
    )
    newest = await clerk.platform.store.last_sequence("nx.ev.org_a.tenant.org_a")
    await wait_projected(clerk.platform.engine, "access", newest, timeout=10)

    stranger = await clerk.http.get(
        "/api/flows",
        headers={"Authorization": f"Bearer {session(rsa_key, 'user_z', 'org_a')}"},
    )
    other_key = new_key("clerk-test")
    forged = await clerk.http.get(
        "/api/flows",
        headers={"Authorization": f"Bearer {session(other_key, 'user_a', 'org_a')}"},
    )

    assert stranger.status_code == 403
    assert forged.status_code == 401


async def test_a_long_connection_outlives_its_session_token_but_not_membership(
    clerk: Running, rsa_key: SigningKey
) -> None:
    await deliver(
        clerk,
        "organization.created",
        {"id": "org_live", "name": "Live", "created_by": "user_ann"},
        "msg_live",
    )
    await clerk.platform.api_context().tenants.change_tier(
        "org_live", "enterprise", context=CommandContext()
    )
    member = {
        "organization": {"id": "org_live"},
        "public_user_data": {"user_id": "user_bob"},
        "role": "org:member",
    }
    await deliver(clerk, "organizationMembership.created", member, "msg_bob")
    newest = await clerk.platform.store.last_sequence("nx.ev.org_live.tenant.org_live")
    await wait_projected(clerk.platform.engine, "access", newest, timeout=10)
    context = clerk.platform.api_context()
    # As in the API: the cache forgets a tenant when its events arrive.
    following = await context.tenant_cache.follow(clerk.platform.nc)
    principal = await authenticate(session(rsa_key, "user_bob", "org_live"), context)
    # The token the connection opened with has long expired since.
    now = int(time.time())
    expired = rsa_key.sign(
        {"iss": ISSUER, "sub": "user_bob", "org_id": "org_live", "exp": now - 600}
    )

    await still_allowed(expired, principal, context)
    await deliver(clerk, "organizationMembership.deleted", member, "msg_bob_out")
    newest = await clerk.platform.store.last_sequence("nx.ev.org_live.tenant.org_live")
    await wait_projected(clerk.platform.engine, "access", newest, timeout=10)

    try:
        with pytest.raises(Forbidden):
            await still_allowed(expired, principal, context)
    finally:
        await following.unsubscribe()
