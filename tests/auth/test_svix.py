"""Svix webhooks: signatures made by the real svix library, checked by ours."""

from __future__ import annotations

import base64
import json
import os
import time
from datetime import UTC, datetime

import pytest
from svix.webhooks import Webhook, WebhookVerificationError

from nextra.auth import (
    AuthenticationError,
    InMemoryReplayGuard,
    ReplayGuard,
    SvixVerifier,
)
from nextra.kernel.errors import ConfigurationError

NOW = 1_760_000_000
BODY = b'{"type":"user.created","data":{"id":"user_2abc","email":"a@example.test"}}'


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


SECRET = new_secret()


def signed(
    body: bytes = BODY,
    *,
    secret: str = SECRET,
    message_id: str = "msg_2abcDEF",
    timestamp: int = NOW,
) -> dict[str, str]:
    when = datetime.fromtimestamp(timestamp, tz=UTC)
    signature = Webhook(secret).sign(message_id, when, body.decode())
    return {
        "svix-id": message_id,
        "svix-timestamp": str(timestamp),
        "svix-signature": signature,
    }


def verifier(secret: str | list[str] = SECRET) -> SvixVerifier:
    return SvixVerifier(secret, clock=lambda: float(NOW))


def refused(
    check: SvixVerifier, headers: dict[str, str], body: bytes, reason: str
) -> AuthenticationError:
    with pytest.raises(AuthenticationError) as caught:
        check.verify(headers, body)
    assert caught.value.reason == reason, caught.value.message
    signature = headers.get("svix-signature", "")
    for entry in signature.split():
        encoded = entry.partition(",")[2]
        assert not encoded or encoded not in str(caught.value)
    assert SECRET.removeprefix("whsec_") not in str(caught.value)
    return caught.value


def test_valid_delivery_gives_its_message_id() -> None:
    assert verifier().verify(signed(), BODY) == "msg_2abcDEF"


def test_the_real_library_and_ours_agree_on_a_live_delivery() -> None:
    now = int(time.time())
    headers = signed(timestamp=now)

    Webhook(SECRET).verify(BODY, headers)
    assert SvixVerifier(SECRET).verify(headers, BODY) == "msg_2abcDEF"

    tampered = BODY.replace(b"user_2abc", b"user_9xyz")
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(tampered, headers)
    with pytest.raises(AuthenticationError):
        SvixVerifier(SECRET).verify(headers, tampered)


def test_secret_without_prefix_is_accepted() -> None:
    check = SvixVerifier(SECRET.removeprefix("whsec_"), clock=lambda: float(NOW))

    assert check.verify(signed(), BODY) == "msg_2abcDEF"


def test_tampered_body_is_refused() -> None:
    flipped = bytearray(BODY)
    flipped[10] ^= 0x01

    refused(verifier(), signed(), bytes(flipped), "bad-signature")


def test_reserialized_json_is_refused() -> None:
    reserialized = json.dumps(json.loads(BODY), indent=2).encode()

    refused(verifier(), signed(), reserialized, "bad-signature")


def test_wrong_secret_is_refused() -> None:
    refused(verifier(), signed(secret=new_secret()), BODY, "bad-signature")


def test_changed_message_id_or_timestamp_is_refused() -> None:
    headers = signed()

    refused(verifier(), {**headers, "svix-id": "msg_other"}, BODY, "bad-signature")
    refused(
        verifier(), {**headers, "svix-timestamp": str(NOW + 1)}, BODY, "bad-signature"
    )


@pytest.mark.parametrize("offset", [-301, 301, -86_400, 86_400])
def test_timestamps_beyond_five_minutes_are_refused(offset: int) -> None:
    error = refused(verifier(), signed(timestamp=NOW + offset), BODY, "stale-timestamp")

    assert ("future" in error.message) == (offset > 0)


@pytest.mark.parametrize("offset", [-299, 0, 299])
def test_timestamps_within_five_minutes_are_accepted(offset: int) -> None:
    assert verifier().verify(signed(timestamp=NOW + offset), BODY) == "msg_2abcDEF"


def test_one_matching_signature_among_several_is_enough() -> None:
    headers = signed()
    other = signed(secret=new_secret())["svix-signature"]
    headers["svix-signature"] = (
        f"v2,{base64.b64encode(b'x' * 32).decode()} {other} "
        f"v1,not-base64!! {headers['svix-signature']}"
    )

    assert verifier().verify(headers, BODY) == "msg_2abcDEF"


def test_only_non_matching_signatures_are_refused() -> None:
    headers = signed()
    headers["svix-signature"] = " ".join(
        signed(secret=new_secret())["svix-signature"] for _ in range(3)
    )

    refused(verifier(), headers, BODY, "bad-signature")


def test_rotation_accepts_either_configured_secret() -> None:
    old, new = new_secret(), new_secret()
    both = verifier([old, new])

    assert both.verify(signed(secret=old), BODY) == "msg_2abcDEF"
    assert both.verify(signed(secret=new), BODY) == "msg_2abcDEF"
    refused(verifier(new), signed(secret=old), BODY, "bad-signature")


@pytest.mark.parametrize("missing", ["svix-id", "svix-timestamp", "svix-signature"])
def test_missing_or_empty_headers_are_refused(missing: str) -> None:
    headers = signed()
    absent = {name: value for name, value in headers.items() if name != missing}

    refused(verifier(), absent, BODY, "missing-header")
    refused(verifier(), {**headers, missing: "  "}, BODY, "missing-header")


def test_header_names_are_matched_without_regard_to_case() -> None:
    headers = {name.upper(): value for name, value in signed().items()}

    assert verifier().verify(headers, BODY) == "msg_2abcDEF"


def test_standard_webhooks_header_names_are_accepted() -> None:
    headers = {
        name.replace("svix-", "webhook-"): value for name, value in signed().items()
    }

    assert verifier().verify(headers, BODY) == "msg_2abcDEF"


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("svix-timestamp", "soon"),
        ("svix-timestamp", "1760000000.5"),
        ("svix-timestamp", "-1760000000"),
        ("svix-id", "msg with spaces"),
        ("svix-id", "m" * 300),
        ("svix-signature", "v1," + "A" * 5000),
    ],
)
def test_malformed_headers_are_refused(header: str, value: str) -> None:
    refused(verifier(), {**signed(), header: value}, BODY, "malformed")


@pytest.mark.parametrize("secret", ["", "whsec_", "whsec_not base64!"])
def test_unusable_secret_is_a_configuration_error(secret: str) -> None:
    with pytest.raises(ConfigurationError):
        SvixVerifier(secret)


def test_verifier_representation_hides_the_secret() -> None:
    assert SECRET.removeprefix("whsec_") not in repr(verifier())


# Replays


async def test_replay_is_refused() -> None:
    guard = InMemoryReplayGuard()
    check = verifier()

    assert await check.verify_once(signed(), BODY, guard) == "msg_2abcDEF"
    with pytest.raises(AuthenticationError) as caught:
        await check.verify_once(signed(), BODY, guard)
    assert caught.value.reason == "replayed"
    assert await check.verify_once(signed(message_id="msg_next"), BODY, guard)


async def test_forged_delivery_does_not_spend_the_message_id() -> None:
    guard = InMemoryReplayGuard()
    check = verifier()

    with pytest.raises(AuthenticationError):
        await check.verify_once(signed(secret=new_secret()), BODY, guard)
    assert await check.verify_once(signed(), BODY, guard) == "msg_2abcDEF"


async def test_forgotten_message_id_is_accepted_again() -> None:
    guard = InMemoryReplayGuard()
    check = verifier()
    message_id = await check.verify_once(signed(), BODY, guard)

    await guard.forget(message_id)

    assert await check.verify_once(signed(), BODY, guard) == message_id


async def test_guard_remembers_ids_for_its_retention_only() -> None:
    now = [0.0]
    guard = InMemoryReplayGuard(retention_seconds=660, clock=lambda: now[0])
    assert isinstance(guard, ReplayGuard)

    assert not await guard.seen("a")
    now[0] = 600.0  # beyond a 2 x 300 s tolerance window, still remembered
    assert await guard.seen("a")
    assert not await guard.seen("b")
    now[0] = 661.0
    assert not await guard.seen("a")
    assert len(guard) == 2  # "a" again, and "b"


async def test_guard_is_bounded() -> None:
    guard = InMemoryReplayGuard(max_entries=3)

    for message_id in ["a", "b", "c", "d"]:
        assert not await guard.seen(message_id)

    assert len(guard) == 3
    assert await guard.seen("d")
    assert not await guard.seen("a")  # the oldest was dropped first
