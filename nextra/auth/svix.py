"""Verification of webhooks signed with the Svix scheme (Clerk, Standard Webhooks)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol, runtime_checkable

from nextra.auth.errors import AuthenticationError
from nextra.kernel.errors import ConfigurationError

__all__ = ("InMemoryReplayGuard", "ReplayGuard", "SvixVerifier")

_SECRET_PREFIX = "whsec_"  # noqa: S105 - the scheme's marker, not a secret
_MESSAGE_ID = re.compile(r"[\x21-\x7e]{1,256}")  # visible ASCII, no spaces
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_MAX_SIGNATURE_HEADER = 4096
# Svix may rename its headers to the Standard Webhooks names; both are accepted.
_HEADER_NAMES = {
    "id": ("svix-id", "webhook-id"),
    "timestamp": ("svix-timestamp", "webhook-timestamp"),
    "signature": ("svix-signature", "webhook-signature"),
}


@runtime_checkable
class ReplayGuard(Protocol):
    """Remembers webhook message ids so that a delivery is acted on once."""

    async def seen(self, message_id: str) -> bool:
        """Whether the id was seen before; records it when it was not."""
        ...

    async def forget(self, message_id: str) -> None:
        """Drop a recorded id, so that the sender's retry is accepted.

        Call it when the message was verified but acting on it failed: otherwise
        the retry would be refused as a replay and the message lost.
        """
        ...


class InMemoryReplayGuard:
    """A replay guard held in this process's memory, bounded in size and time.

    An id is remembered for ``retention_seconds``. A message is accepted while its
    timestamp is within the tolerance on either side of the clock, that is for
    twice the tolerance, so the retention must cover that: the default does for
    the default 5-minute tolerance. When ``max_entries`` ids are held the oldest
    is dropped first. Being per-process, it does not protect a fleet of API
    replicas; a shared store (JetStream) does.

    Args:
        retention_seconds: How long an id is remembered.
        max_entries: How many ids are remembered at most.
        clock: Monotonic seconds; tests replace it.
    """

    def __init__(
        self,
        *,
        retention_seconds: float = 660.0,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if retention_seconds <= 0 or max_entries <= 0:
            message = "a replay guard needs a positive retention and capacity"
            raise ConfigurationError(
                message,
                got={
                    "retention_seconds": retention_seconds,
                    "max_entries": max_entries,
                },
            )
        self.retention_seconds = retention_seconds
        self._max_entries = max_entries
        self._clock = clock
        self._seen_at: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen_at)

    async def seen(self, message_id: str) -> bool:
        """Whether the id was seen within the retention; records it when not."""
        now = self._clock()
        self._expire(now)
        if message_id in self._seen_at:
            return True
        self._seen_at[message_id] = now
        while len(self._seen_at) > self._max_entries:
            self._seen_at.popitem(last=False)
        return False

    async def forget(self, message_id: str) -> None:
        """Drop a recorded id; nothing happens when it is not held."""
        self._seen_at.pop(message_id, None)

    def _expire(self, now: float) -> None:
        # Ids are recorded in clock order, so the expired ones are at the front.
        horizon = now - self.retention_seconds
        while self._seen_at:
            oldest = next(iter(self._seen_at.values()))
            if oldest > horizon:
                return
            self._seen_at.popitem(last=False)


class SvixVerifier:
    """Verifies a webhook signed with the Svix scheme, as Clerk sends them.

    The signed content is ``{id}.{timestamp}.{raw body}`` under HMAC-SHA256, keyed
    with the base64 part of the ``whsec_`` secret. The ``svix-signature`` header
    holds space-separated ``v1,<base64>`` entries, several while a secret is being
    rotated; one match is enough. Timestamps further than the tolerance from the
    clock, in either direction, are refused.

    Args:
        secret: The endpoint's signing secret, ``whsec_<base64>``; or several,
            while the endpoint's own secret is being rotated, any of which may
            have signed.
        tolerance_seconds: How far the timestamp may be from the clock.
        clock: Unix seconds; tests replace it.

    Raises:
        ConfigurationError: A secret is empty or not base64, or none is given.
    """

    def __init__(
        self,
        secret: str | Sequence[str],
        *,
        tolerance_seconds: float = 300,
        clock: Callable[[], float] = time.time,
    ) -> None:
        secrets = [secret] if isinstance(secret, str) else list(secret)
        if not secrets:
            message = "the webhook verifier needs at least one signing secret"
            raise ConfigurationError(message, expected="whsec_<base64>", where="secret")
        self._keys = tuple(_decode_secret(each) for each in secrets)
        if tolerance_seconds < 0:
            message = "the timestamp tolerance cannot be negative"
            raise ConfigurationError(
                message,
                got=tolerance_seconds,
                where="tolerance_seconds",
            )
        self.tolerance_seconds = tolerance_seconds
        self._clock = clock

    def __repr__(self) -> str:
        return f"SvixVerifier(tolerance_seconds={self.tolerance_seconds})"

    def verify(self, headers: Mapping[str, str], body: bytes) -> str:
        """Check a delivery's signature and timestamp.

        Replays within the tolerance pass this check; use :meth:`verify_once` to
        refuse them.

        Args:
            headers: The request headers; names are matched without regard to case.
            body: The raw request body, exactly as received.

        Returns:
            The message id (``svix-id``), the same on every redelivery.

        Raises:
            AuthenticationError: The delivery is refused; ``reason`` says why.
        """
        message_id, timestamp, signatures = _read_headers(headers)
        if not _MESSAGE_ID.fullmatch(message_id):
            message = (
                "the webhook message id is not a printable token of at most 256 "
                "characters"
            )
            raise AuthenticationError(
                message,
                reason="malformed",
                where="svix-id",
            )
        if not _TIMESTAMP.fullmatch(timestamp):
            message = "the webhook timestamp is not whole Unix seconds"
            raise AuthenticationError(
                message,
                reason="malformed",
                where="svix-timestamp",
            )
        skew = int(timestamp) - self._clock()
        if abs(skew) > self.tolerance_seconds:
            direction = "in the future" if skew > 0 else "in the past"
            message = (
                f"the webhook timestamp is {abs(int(skew))} seconds {direction}, "
                f"more than the {self.tolerance_seconds:g} allowed"
            )
            raise AuthenticationError(
                message,
                reason="stale-timestamp",
                expected=f"within {self.tolerance_seconds:g} seconds of now",
                got=int(skew),
                where="svix-timestamp",
            )
        content = f"{message_id}.{timestamp}.".encode() + body
        expected = [
            hmac.new(key, content, hashlib.sha256).digest() for key in self._keys
        ]
        if not any(
            hmac.compare_digest(digest, given)
            for digest in expected
            for given in signatures
        ):
            message = "no webhook signature matches the body and the endpoint's secret"
            raise AuthenticationError(
                message,
                reason="bad-signature",
                where="svix-signature",
            )
        return message_id

    async def verify_once(
        self, headers: Mapping[str, str], body: bytes, guard: ReplayGuard
    ) -> str:
        """Check a delivery and refuse one whose message id was already accepted.

        The guard records the id only after the signature holds, so forged
        deliveries cannot spend ids. A sender's retry of a delivery that was acted
        on is refused too: answer it with a 2xx so that the sender stops. If acting
        on the message fails, call ``guard.forget(message_id)``.

        Args:
            headers: The request headers.
            body: The raw request body.
            guard: Where accepted message ids are remembered.

        Returns:
            The message id.

        Raises:
            AuthenticationError: The delivery is refused; ``reason`` is
                ``replayed`` for a message id already accepted.
        """
        message_id = self.verify(headers, body)
        if await guard.seen(message_id):
            message = "this webhook message was already received"
            raise AuthenticationError(
                message,
                reason="replayed",
                where="svix-id",
            )
        return message_id


def _decode_secret(secret: str) -> bytes:
    encoded = secret.removeprefix(_SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        message = "the webhook signing secret is not whsec_ followed by base64"
        raise ConfigurationError(
            message,
            expected="whsec_<base64>",
            where="secret",
        ) from exc
    if not key:
        message = "the webhook signing secret is empty"
        raise ConfigurationError(
            message,
            expected="whsec_<base64>",
            where="secret",
        )
    return key


def _read_headers(headers: Mapping[str, str]) -> tuple[str, str, list[bytes]]:
    lowered = {name.lower(): value for name, value in headers.items()}
    values: dict[str, str] = {}
    for part, names in _HEADER_NAMES.items():
        value = next((lowered[name] for name in names if lowered.get(name)), "")
        if not value.strip():
            message = f"the webhook lacks the {names[0]} header"
            raise AuthenticationError(
                message,
                reason="missing-header",
                where=names[0],
            )
        values[part] = value.strip()
    header = values["signature"]
    if len(header) > _MAX_SIGNATURE_HEADER:
        message = "the webhook signature header is too long"
        raise AuthenticationError(
            message,
            reason="malformed",
            where="svix-signature",
        )
    return values["id"], values["timestamp"], _signatures(header)


def _signatures(header: str) -> list[bytes]:
    """The decoded ``v1`` signatures; other versions and broken entries are skipped."""
    found = []
    for entry in header.split():
        version, _, encoded = entry.partition(",")
        if version != "v1" or not encoded:
            continue
        try:
            found.append(base64.b64decode(encoded, validate=True))
        except (binascii.Error, ValueError):
            continue
    return found
