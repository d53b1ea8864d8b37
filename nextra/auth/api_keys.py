"""API keys: generated once, shown once, stored only as a hash."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from typing import Any, NamedTuple

import msgspec

from nextra.auth.errors import AuthenticationError

__all__ = (
    "NewApiKey",
    "ParsedApiKey",
    "generate_api_key",
    "hash_api_key",
    "parse_api_key",
    "verify_api_key",
)

_SCHEME = "nx"
_PREFIX_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
_PREFIX_CHARS = 12  # about 62 bits: unique enough to look a key up by it
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SECRET_BYTES = 32
_SECRET_CHARS = 43  # 62**43 > 2**256: every 32-byte value fits, padded to this width
_KEY = re.compile(
    rf"(?P<prefix>{_SCHEME}_[0-9a-z]{{{_PREFIX_CHARS}}})_[0-9A-Za-z]{{{_SECRET_CHARS}}}"
)


class NewApiKey(msgspec.Struct, frozen=True, kw_only=True):
    """A freshly generated API key.

    Show ``secret`` to its owner once, then forget it; store ``prefix`` and
    ``hash``. The representation hides the secret so that it cannot reach a log
    by accident.

    Attributes:
        secret: The whole key, ``nx_<prefix id>_<43 base62 characters>``.
        prefix: Its public part, ``nx_<prefix id>``: safe to list and to look up by.
        hash: What to store: :func:`hash_api_key` of the secret.
    """

    secret: str
    prefix: str
    hash: str

    def __repr__(self) -> str:
        return f"NewApiKey(prefix={self.prefix!r}, secret='…')"

    def __rich_repr__(self) -> list[tuple[str, Any]]:
        # msgspec's own would list the secret to rich and to loggers that use it.
        return [("prefix", self.prefix), ("secret", "…")]


class ParsedApiKey(NamedTuple):
    """An API key split into the part to look up by and the whole secret."""

    prefix: str
    secret: str


def generate_api_key(*, pepper: bytes | None = None) -> NewApiKey:
    """Make a new API key from 256 random bits and a random public prefix.

    Args:
        pepper: The server-side secret to hash with, if the deployment has one.

    Returns:
        The key, its prefix and its hash.
    """
    prefix_id = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(_PREFIX_CHARS))
    prefix = f"{_SCHEME}_{prefix_id}"
    secret = f"{prefix}_{_base62(secrets.token_bytes(_SECRET_BYTES))}"
    return NewApiKey(
        secret=secret, prefix=prefix, hash=hash_api_key(secret, pepper=pepper)
    )


def hash_api_key(secret: str, *, pepper: bytes | None = None) -> str:
    """The hex digest to store for an API key.

    Args:
        secret: The whole key as shown to its owner.
        pepper: A server-side secret kept outside the database; when given the
            digest is HMAC-SHA256 keyed with it, so a leaked table alone cannot be
            used to test guesses.

    Returns:
        64 lower-case hex characters.
    """
    # A single SHA-256 is enough here, unlike for passwords: the key carries 256
    # random bits, so no dictionary or brute-force search over the digest can
    # succeed, and a slow hash (bcrypt, Argon2) would only add latency to every
    # API request. The whole key is hashed, prefix included, binding the two.
    data = secret.encode()
    if pepper is not None:
        return hmac.new(pepper, data, hashlib.sha256).hexdigest()
    return hashlib.sha256(data).hexdigest()


def parse_api_key(secret: str) -> ParsedApiKey:
    """Check an API key's shape and split off its public prefix.

    Args:
        secret: The key as presented, without any ``Bearer`` prefix.

    Returns:
        The prefix to look the stored hash up by, and the key itself.

    Raises:
        AuthenticationError: The value is not an API key (reason ``malformed``).
    """
    match = _KEY.fullmatch(secret) if isinstance(secret, str) else None
    if match is None:
        message = f"the API key is not in the form {_SCHEME}_<id>_<secret>"
        raise AuthenticationError(
            message,
            reason="malformed",
            expected=f"{_SCHEME}_ + {_PREFIX_CHARS} characters + _ + "
            f"{_SECRET_CHARS} characters",
        )
    return ParsedApiKey(prefix=match["prefix"], secret=secret)


def verify_api_key(
    secret: str, stored_hash: str, *, pepper: bytes | None = None
) -> bool:
    """Whether a presented key matches a stored hash, compared in constant time.

    Args:
        secret: The key as presented.
        stored_hash: The hash stored when the key was made.
        pepper: The same pepper the hash was made with, if any.

    Returns:
        True when the key hashes to ``stored_hash``.
    """
    try:
        computed = hash_api_key(secret, pepper=pepper)
    except UnicodeEncodeError:  # lone surrogates: not a key we could have made
        return False
    return hmac.compare_digest(computed.encode(), stored_hash.encode())


def _base62(data: bytes) -> str:
    value = int.from_bytes(data, "big")
    chars = []
    for _ in range(_SECRET_CHARS):
        value, index = divmod(value, 62)
        chars.append(_BASE62[index])
    return "".join(reversed(chars))
