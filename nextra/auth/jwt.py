"""Verification of Clerk-compatible session JWTs against a JSON Web Key Set."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
import msgspec
from jwt.exceptions import (
    ExpiredSignatureError,
    ImmatureSignatureError,
    InvalidAlgorithmError,
    InvalidAudienceError,
    InvalidIssuerError,
    InvalidKeyError,
    InvalidSignatureError,
    MissingRequiredClaimError,
    PyJWKError,
    PyJWTError,
)
from jwt.types import Options

from nextra.auth.errors import (
    AuthenticationError,
    AuthenticationReason,
    AuthenticationUnavailable,
)
from nextra.kernel.errors import ConfigurationError

__all__ = ("JwksVerifier", "SessionClaims")

# Asymmetric algorithms only: a JWKS publishes public keys, and accepting an HMAC
# algorithm would let anyone who can read the JWKS sign tokens (algorithm confusion).
_ASYMMETRIC = frozenset(
    {
        "RS256",
        "RS384",
        "RS512",
        "PS256",
        "PS384",
        "PS512",
        "ES256",
        "ES384",
        "ES512",
        "EdDSA",
    }
)
_MAX_TOKEN_CHARS = 16_384
_MAX_JWKS_BYTES = 262_144
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
_NOT_A_JWT = "the session token is not a well-formed JWT"
# The first entry whose error class matches wins: subclasses come before bases.
_REFUSALS: tuple[
    tuple[type[PyJWTError], AuthenticationReason, str, str | None], ...
] = (
    (
        ExpiredSignatureError,
        "expired",
        "the session token has expired; sign in again or refresh it",
        "exp",
    ),
    (
        ImmatureSignatureError,
        "not-yet-valid",
        "the session token is not valid yet; check the clocks",
        "nbf",
    ),
    (
        InvalidIssuerError,
        "wrong-issuer",
        "the session token was issued by someone else",
        "iss",
    ),
    (
        InvalidAudienceError,
        "wrong-audience",
        "the session token is meant for another audience",
        "aud",
    ),
    (
        MissingRequiredClaimError,
        "missing-claim",
        "the session token lacks the required claim",
        None,
    ),
    (
        InvalidSignatureError,
        "bad-signature",
        "the session token's signature does not match its content",
        None,
    ),
    (
        InvalidAlgorithmError,
        "algorithm-not-allowed",
        "the session token is signed with an algorithm that is not allowed",
        "alg",
    ),
    (
        InvalidKeyError,
        "weak-key",
        "the session token's signing key is too weak to be trusted",
        None,
    ),
)


class SessionClaims(msgspec.Struct, frozen=True, kw_only=True):
    """Who a verified session token speaks for.

    Organisation fields follow Clerk: version 2 tokens (``"v": 2``) nest them under
    ``o`` (``o.id``, ``o.rol``, ``o.slg``) and are read as Clerk's SDKs read them,
    with the role given the ``org:`` prefix; older tokens carry ``org_id``,
    ``org_role`` and ``org_slug`` at the top level.

    Attributes:
        subject: The user id (``sub``).
        expires_at: Unix seconds after which the token is refused (``exp``).
        issued_at: Unix seconds when the token was issued (``iat``), if given.
        session_id: The Clerk session id (``sid``), if given.
        org_id: The active organisation, if any.
        org_role: The user's role in it, such as ``org:admin``.
        org_slug: The active organisation's slug.
        authorized_party: The origin the token was requested from (``azp``).
        raw_claims: Every claim of the verified payload.
    """

    subject: str
    expires_at: int
    issued_at: int | None = None
    session_id: str | None = None
    org_id: str | None = None
    org_role: str | None = None
    org_slug: str | None = None
    authorized_party: str | None = None
    raw_claims: dict[str, Any] = msgspec.field(default_factory=dict)


class JwksVerifier:
    """Verifies session JWTs signed by keys that a JWKS endpoint publishes.

    Keys are cached by ``kid``. A token naming an unknown ``kid`` triggers one
    refresh of the set, at most one per ``refresh_min_interval`` seconds whatever
    the number of callers, so forged ``kid`` values cannot cause a storm of
    fetches. When the endpoint is down, cached keys keep working and anything that
    needs a fetch raises :class:`AuthenticationUnavailable` rather than calling the
    token invalid. Cached keys are re-fetched after ``cache_ttl`` seconds so that
    keys removed from the set stop being accepted.

    Args:
        jwks_url: Where the key set is served, such as
            ``https://clerk.example.com/.well-known/jwks.json``. Plain ``http`` is
            only accepted for loopback hosts.
        issuer: The exact ``iss`` every token must carry (Clerk's Frontend API URL).
        audience: The ``aud`` every token must carry; ``None`` skips the check
            (Clerk session tokens carry no ``aud``).
        authorized_parties: Origins allowed in ``azp``; a token whose ``azp`` is
            not one of them is refused. ``None`` skips the check; as in Clerk's
            SDKs, a token without ``azp`` passes.
        leeway_seconds: Clock skew tolerated on ``exp``, ``nbf`` and ``iat``.
        allowed_algorithms: Signature algorithms accepted; asymmetric ones only.
        refresh_min_interval: Least number of seconds between two fetches.
        cache_ttl: Seconds after which cached keys are re-fetched on next use.
        http_timeout: Seconds allowed for one fetch of the key set.
        clock: Monotonic seconds, for the refresh timing; tests replace it.

    Raises:
        ConfigurationError: A setting is unsafe or impossible.
    """

    def __init__(
        self,
        jwks_url: str,
        *,
        issuer: str,
        audience: str | None,
        authorized_parties: Iterable[str] | None = None,
        leeway_seconds: float = 5,
        allowed_algorithms: Iterable[str] = ("RS256", "ES256"),
        refresh_min_interval: float = 30.0,
        cache_ttl: float = 600.0,
        http_timeout: float = 3.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        _check_url(jwks_url)
        algorithms = tuple(allowed_algorithms)
        unsafe = sorted(set(algorithms) - _ASYMMETRIC)
        if not algorithms or unsafe:
            message = "JWT verification accepts only asymmetric signature algorithms"
            raise ConfigurationError(
                message,
                expected=sorted(_ASYMMETRIC),
                got=unsafe or list(algorithms),
                where="allowed_algorithms",
            )
        if not issuer:
            message = "JWT verification needs the issuer that every token must name"
            raise ConfigurationError(message, where="issuer")
        if leeway_seconds < 0 or refresh_min_interval < 0 or http_timeout <= 0:
            message = (
                "leeway and refresh interval cannot be negative, the timeout must "
                "be positive"
            )
            raise ConfigurationError(
                message,
                got={
                    "leeway_seconds": leeway_seconds,
                    "refresh_min_interval": refresh_min_interval,
                    "http_timeout": http_timeout,
                },
            )
        self._url = jwks_url
        self._issuer = issuer
        self._audience = audience
        self._parties = (
            None if authorized_parties is None else frozenset(authorized_parties)
        )
        self._leeway = leeway_seconds
        self._algorithms = frozenset(algorithms)
        self._refresh_min_interval = refresh_min_interval
        self._cache_ttl = cache_ttl
        self._http_timeout = http_timeout
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._last_fetch_failed = False
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"JwksVerifier({self._url!r}, issuer={self._issuer!r})"

    @property
    def key_ids(self) -> frozenset[str]:
        """The ``kid`` of every key currently cached."""
        return frozenset(self._keys)

    async def refresh(self) -> None:
        """Fetch the key set now, whatever the interval; for use at start-up.

        Raises:
            AuthenticationUnavailable: The endpoint failed or served no usable key.
        """
        async with self._lock:
            await self._fetch()

    async def verify(self, token: str) -> SessionClaims:
        """Check a session token's signature and claims.

        Args:
            token: The compact JWT, without any ``Bearer`` prefix.

        Returns:
            The claims of the verified token.

        Raises:
            AuthenticationError: The token is refused; ``reason`` says why.
            AuthenticationUnavailable: The key set could not be fetched to decide.
        """
        if not isinstance(token, str) or not token or len(token) > _MAX_TOKEN_CHARS:
            message = "the session token is empty or too long"
            raise AuthenticationError(message, reason="malformed")
        try:
            header = jwt.get_unverified_header(token)
        except PyJWTError as exc:
            raise AuthenticationError(_NOT_A_JWT, reason="malformed") from exc
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in self._algorithms:
            message = (
                "the session token is signed with an algorithm that is not allowed"
            )
            raise AuthenticationError(
                message,
                reason="algorithm-not-allowed",
                expected=sorted(self._algorithms),
                where="alg",
            )
        key_id = header.get("kid")
        if not isinstance(key_id, str) or not key_id:
            message = "the session token does not name its signing key (kid)"
            raise AuthenticationError(
                message,
                reason="malformed",
                where="kid",
            )
        key = await self._signing_key(key_id)
        # The key decides the algorithm, never the token: the token's choice is
        # only accepted when it is the key's own.
        if key.algorithm_name != algorithm:
            message = "the session token's algorithm does not match its signing key"
            raise AuthenticationError(
                message,
                reason="algorithm-not-allowed",
                where="alg",
            )
        payload = self._decode(token, key)
        self._check_party(payload)
        return _session_claims(payload)

    def _decode(self, token: str, key: jwt.PyJWK) -> dict[str, Any]:
        required = ["exp", "iss", "sub"]
        if self._audience is not None:
            required.append("aud")
        options: Options = {
            "require": required,
            "verify_aud": self._audience is not None,
            "enforce_minimum_key_length": True,
        }
        try:
            payload: dict[str, Any] = jwt.decode(
                token,
                key=key.key,
                algorithms=[key.algorithm_name],
                options=options,
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway,
            )
        except PyJWTError as exc:
            raise self._refusal(exc) from exc
        if not isinstance(payload.get("sub"), str) or not payload["sub"]:
            message = "the session token's subject is not a user id"
            raise AuthenticationError(
                message,
                reason="malformed",
                where="sub",
            )
        return payload

    def _refusal(self, error: PyJWTError) -> AuthenticationError:
        """The refusal that a PyJWT error stands for, in Nextra's words."""
        reason, message, where = next(
            (
                (reason, message, where)
                for kind, reason, message, where in _REFUSALS
                if isinstance(error, kind)
            ),
            ("malformed", _NOT_A_JWT, None),
        )
        expected: str | None = None
        if reason == "wrong-issuer":
            expected = self._issuer
        elif reason == "wrong-audience":
            expected = self._audience
        elif isinstance(error, MissingRequiredClaimError):
            where = error.claim
            message = f"{message} {error.claim!r}"
        return AuthenticationError(
            message, reason=reason, expected=expected, where=where
        )

    def _check_party(self, payload: Mapping[str, Any]) -> None:
        party = payload.get("azp")
        if self._parties is None or party is None:
            return
        if not isinstance(party, str) or party not in self._parties:
            message = (
                "the session token was requested from an origin that is not allowed"
            )
            raise AuthenticationError(
                message,
                reason="unauthorized-party",
                expected=sorted(self._parties),
                where="azp",
            )

    async def _signing_key(self, key_id: str) -> jwt.PyJWK:
        key = self._keys.get(key_id)
        if key is not None:
            if self._stale() and self._may_fetch() and not self._lock.locked():
                await self._refresh_stale()
                key = self._keys.get(key_id)
                if key is None:
                    raise _unknown_key()
            return key
        async with self._lock:
            # Another caller may have fetched while this one waited.
            key = self._keys.get(key_id)
            if key is not None:
                return key
            if self._may_fetch():
                await self._fetch()
            elif self._last_fetch_failed:
                message = (
                    "the signing keys could not be fetched recently; try again shortly"
                )
                raise AuthenticationUnavailable(
                    message,
                    where=self._url,
                )
            key = self._keys.get(key_id)
            if key is None:
                raise _unknown_key()
            return key

    def _stale(self) -> bool:
        return (
            self._fetched_at is not None
            and self._clock() - self._fetched_at >= self._cache_ttl
        )

    def _may_fetch(self) -> bool:
        return (
            self._attempted_at is None
            or self._clock() - self._attempted_at >= self._refresh_min_interval
        )

    async def _refresh_stale(self) -> None:
        async with self._lock:
            if not (self._stale() and self._may_fetch()):
                return
            try:
                await self._fetch()
            except AuthenticationUnavailable:
                return  # Keep serving from the cached keys.

    async def _fetch(self) -> None:
        self._attempted_at = self._clock()
        self._last_fetch_failed = True
        try:
            async with (
                asyncio.timeout(self._http_timeout),
                httpx.AsyncClient(
                    timeout=self._http_timeout, follow_redirects=False
                ) as client,
                client.stream(
                    "GET", self._url, headers={"Accept": "application/json"}
                ) as response,
            ):
                if response.status_code != 200:
                    message = (
                        "the signing keys could not be fetched: the key set endpoint "
                        f"answered {response.status_code}"
                    )
                    raise AuthenticationUnavailable(
                        message,
                        expected=200,
                        got=response.status_code,
                        where=self._url,
                    )
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > _MAX_JWKS_BYTES:
                        message = "the key set is larger than any real one"
                        raise AuthenticationUnavailable(
                            message,
                            expected=f"at most {_MAX_JWKS_BYTES} bytes",
                            where=self._url,
                        )
        except (httpx.HTTPError, TimeoutError) as exc:
            message = (
                "the signing keys could not be fetched: the key set endpoint did not "
                f"answer ({type(exc).__name__})"
            )
            raise AuthenticationUnavailable(
                message,
                where=self._url,
            ) from exc
        self._keys = self._parse(bytes(body))
        self._fetched_at = self._clock()
        self._last_fetch_failed = False

    def _parse(self, body: bytes) -> dict[str, jwt.PyJWK]:
        try:
            document = json.loads(body)
        except ValueError as exc:
            message = "the key set endpoint did not answer with JSON"
            raise AuthenticationUnavailable(message, where=self._url) from exc
        entries = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(entries, list):
            message = "the key set has no list of keys"
            raise AuthenticationUnavailable(message, where=self._url)
        keys: dict[str, jwt.PyJWK] = {}
        for entry in entries:
            key = self._usable_key(entry)
            if key is not None and key.key_id is not None:
                keys.setdefault(key.key_id, key)
        if not keys:
            message = "the key set holds no usable signing key"
            raise AuthenticationUnavailable(
                message,
                expected=sorted(self._algorithms),
                where=self._url,
            )
        return keys

    def _usable_key(self, entry: object) -> jwt.PyJWK | None:
        if not isinstance(entry, dict):
            return None
        if not isinstance(entry.get("kid"), str) or entry.get("use", "sig") != "sig":
            return None
        if entry.get("kty") == "oct":
            return None  # A secret key has no business in a public key set.
        try:
            key = jwt.PyJWK(entry)
        except (PyJWKError, InvalidKeyError, ValueError, TypeError):
            return None
        if key.algorithm_name not in self._algorithms:
            return None
        if key.Algorithm.check_key_length(key.key) is not None:
            return None
        return key


def _unknown_key() -> AuthenticationError:
    return AuthenticationError(
        "the session token is signed by a key that is not in the key set",
        reason="unknown-key",
        where="kid",
    )


def _check_url(url: str) -> None:
    parts = urlsplit(url)
    secure = parts.scheme == "https" or (
        parts.scheme == "http" and parts.hostname in _LOOPBACK_HOSTS
    )
    if not secure or not parts.hostname:
        message = "the JWKS URL must use https (plain http only on loopback)"
        raise ConfigurationError(
            message,
            expected="https://…",
            got=url,
            where="jwks_url",
        )


def _optional_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _optional_int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


def _session_claims(payload: dict[str, Any]) -> SessionClaims:
    org_id: str | None = None
    org_role: str | None = None
    org_slug: str | None = None
    if payload.get("v") == 2:
        org = payload.get("o")
        if isinstance(org, dict):
            org_id = _optional_str(org.get("id"))
            org_slug = _optional_str(org.get("slg"))
            role = _optional_str(org.get("rol"))
            org_role = None if role is None else f"org:{role}"
    else:
        org_id = _optional_str(payload.get("org_id"))
        org_role = _optional_str(payload.get("org_role"))
        org_slug = _optional_str(payload.get("org_slug"))
    expires_at = _optional_int(payload.get("exp"))
    if expires_at is None:  # PyJWT has checked it is a number; this is for mypy.
        message = "the session token's expiry is not a number"
        raise AuthenticationError(message, reason="malformed")
    return SessionClaims(
        subject=payload["sub"],
        expires_at=expires_at,
        issued_at=_optional_int(payload.get("iat")),
        session_id=_optional_str(payload.get("sid")),
        org_id=org_id,
        org_role=org_role,
        org_slug=org_slug,
        authorized_party=_optional_str(payload.get("azp")),
        raw_claims=payload,
    )
