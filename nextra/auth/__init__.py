"""Authentication primitives: session JWTs, signed webhooks and API keys."""

from __future__ import annotations

from nextra.auth.api_keys import (
    NewApiKey,
    ParsedApiKey,
    generate_api_key,
    hash_api_key,
    parse_api_key,
    verify_api_key,
)
from nextra.auth.errors import (
    AuthenticationError,
    AuthenticationReason,
    AuthenticationUnavailable,
)
from nextra.auth.jwt import JwksVerifier, SessionClaims
from nextra.auth.svix import InMemoryReplayGuard, ReplayGuard, SvixVerifier

__all__ = (
    "AuthenticationError",
    "AuthenticationReason",
    "AuthenticationUnavailable",
    "InMemoryReplayGuard",
    "JwksVerifier",
    "NewApiKey",
    "ParsedApiKey",
    "ReplayGuard",
    "SessionClaims",
    "SvixVerifier",
    "generate_api_key",
    "hash_api_key",
    "parse_api_key",
    "verify_api_key",
)
