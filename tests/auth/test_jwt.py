"""Session JWTs: signatures and claims checked against a JWKS served on loopback."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from jwt.warnings import InsecureKeyLengthWarning

from nextra.auth import (
    AuthenticationError,
    AuthenticationUnavailable,
    JwksVerifier,
    SessionClaims,
)
from nextra.kernel.errors import ConfigurationError
from tests.auth.jwks_server import JwksServer, jwks_server

ISSUER = "https://clerk.nextra.test"


@dataclass
class SigningKey:
    kid: str
    alg: str
    private: Any

    @property
    def jwk(self) -> dict[str, Any]:
        public = self.private.public_key()
        algorithm = RSAAlgorithm if self.alg.startswith("RS") else ECAlgorithm
        jwk: dict[str, Any] = algorithm.to_jwk(public, as_dict=True)
        return {**jwk, "kid": self.kid, "alg": self.alg, "use": "sig"}

    def sign(self, claims: dict[str, Any], **header: Any) -> str:
        return jwt.encode(
            claims,
            self.private,
            algorithm=self.alg,
            headers={"kid": self.kid, **header},
        )


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="module")
def rsa_key() -> SigningKey:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return SigningKey("rsa-1", "RS256", private)


@pytest.fixture(scope="module")
def rsa_key_2() -> SigningKey:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return SigningKey("rsa-2", "RS256", private)


@pytest.fixture(scope="module")
def ec_key() -> SigningKey:
    return SigningKey("ec-1", "ES256", ec.generate_private_key(ec.SECP256R1()))


@pytest.fixture
async def server(rsa_key: SigningKey, ec_key: SigningKey) -> AsyncIterator[JwksServer]:
    async with jwks_server() as served:
        served.keys = [rsa_key.jwk, ec_key.jwk]
        yield served


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def verifier(server: JwksServer, clock: FakeClock) -> JwksVerifier:
    return JwksVerifier(server.url, issuer=ISSUER, audience=None, clock=clock)


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "user_2abc",
        "sid": "sess_123",
        "iat": now - 10,
        "nbf": now - 10,
        "exp": now + 60,
    }
    base.update(overrides)
    return {key: value for key, value in base.items() if value is not None}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(header: dict[str, Any], payload: dict[str, Any]) -> str:
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"


async def refused(verifier: JwksVerifier, token: str, reason: str) -> None:
    with pytest.raises(AuthenticationError) as caught:
        await verifier.verify(token)
    assert caught.value.reason == reason, caught.value.message
    assert caught.value.code == "unauthenticated"
    # A refusal never repeats the credential, whole or in part.
    for part in token.split("."):
        if len(part) > 8:
            assert part not in str(caught.value)
            assert part not in repr(caught.value.fields())


# Accepted tokens


async def test_valid_rs256_token_gives_its_claims(
    verifier: JwksVerifier, rsa_key: SigningKey
) -> None:
    token = rsa_key.sign(
        claims(org_id="org_9", org_role="org:admin", azp="https://app.nextra.test")
    )

    session = await verifier.verify(token)

    assert isinstance(session, SessionClaims)
    assert session.subject == "user_2abc"
    assert session.session_id == "sess_123"
    assert session.org_id == "org_9"
    assert session.org_role == "org:admin"
    assert session.authorized_party == "https://app.nextra.test"
    assert session.expires_at > session.issued_at  # type: ignore[operator]
    assert session.raw_claims["sid"] == "sess_123"


async def test_valid_es256_token_is_accepted(
    verifier: JwksVerifier, ec_key: SigningKey
) -> None:
    session = await verifier.verify(ec_key.sign(claims()))

    assert session.subject == "user_2abc"
    assert session.org_id is None
    assert session.org_role is None


async def test_clerk_v2_token_reads_the_nested_organisation(
    verifier: JwksVerifier, rsa_key: SigningKey
) -> None:
    token = rsa_key.sign(claims(v=2, o={"id": "org_7", "rol": "admin", "slg": "acme"}))

    session = await verifier.verify(token)

    assert (session.org_id, session.org_role, session.org_slug) == (
        "org_7",
        "org:admin",
        "acme",
    )


async def test_expiry_within_the_leeway_is_accepted(
    verifier: JwksVerifier, rsa_key: SigningKey
) -> None:
    now = int(time.time())
    session = await verifier.verify(rsa_key.sign(claims(exp=now - 2)))

    assert session.expires_at == now - 2


async def test_audience_is_checked_when_configured(
    server: JwksServer, rsa_key: SigningKey, clock: FakeClock
) -> None:
    verifier = JwksVerifier(server.url, issuer=ISSUER, audience="nextra", clock=clock)

    await verifier.verify(rsa_key.sign(claims(aud="nextra")))
    await refused(verifier, rsa_key.sign(claims(aud="someone-else")), "wrong-audience")
    await refused(verifier, rsa_key.sign(claims()), "missing-claim")


# Refused tokens


async def test_expired_token_is_refused(
    verifier: JwksVerifier, rsa_key: SigningKey
) -> None:
    await refused(verifier, rsa_key.sign(claims(exp=int(time.time()) - 30)), "expired")


async def test_token_not_valid_yet_is_refused(
    verifier: JwksVerifier, rsa_key: SigningKey
) -> None:
    later = int(time.time()) + 60
    await refused(verifier, rsa_key.sign(claims(nbf=later)), "not-yet-valid")
    await refused(verifier, rsa_key.sign(claims(iat=later)), "not-yet-valid")


async def test_nbf_within_the_leeway_is_accepted(
    verifier: JwksVerifier, rsa_key: SigningKey
) -> None:
    await verifier.verify(rsa_key.sign(claims(nbf=int(time.time()) + 2)))


async def test_wrong_issuer_is_refused(
    verifier: JwksVerifier, rsa_key: SigningKey
) -> None:
    token = rsa_key.sign(claims(iss="https://clerk.attacker.test"))

    await refused(verifier, token, "wrong-issuer")


async def test_missing_exp_or_sub_is_refused(
    verifier: JwksVerifier, rsa_key: SigningKey
) -> None:
    await refused(verifier, rsa_key.sign(claims(exp=None)), "missing-claim")
    await refused(verifier, rsa_key.sign(claims(sub=None)), "missing-claim")
    await refused(verifier, rsa_key.sign(claims(iss=None)), "missing-claim")


async def test_unauthorized_party_is_refused(
    server: JwksServer, rsa_key: SigningKey, clock: FakeClock
) -> None:
    verifier = JwksVerifier(
        server.url,
        issuer=ISSUER,
        audience=None,
        authorized_parties=["https://app.nextra.test"],
        clock=clock,
    )

    await verifier.verify(rsa_key.sign(claims(azp="https://app.nextra.test")))
    await refused(
        verifier,
        rsa_key.sign(claims(azp="https://evil.nextra.test")),
        "unauthorized-party",
    )


async def test_alg_none_is_refused_without_fetching_keys(
    verifier: JwksVerifier, server: JwksServer, rsa_key: SigningKey
) -> None:
    token = unsigned({"alg": "none", "kid": rsa_key.kid}, claims()) + "."

    await refused(verifier, token, "algorithm-not-allowed")
    assert server.requests == 0


async def test_hs256_signed_with_the_public_key_is_refused(
    verifier: JwksVerifier, server: JwksServer, rsa_key: SigningKey
) -> None:
    # The algorithm-confusion attack: HMAC keyed with the published public key.
    public_pem = rsa_key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = unsigned(
        {"alg": "HS256", "typ": "JWT", "kid": rsa_key.kid}, claims()
    )
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()

    await refused(verifier, f"{signing_input}.{b64(mac)}", "algorithm-not-allowed")
    assert server.requests == 0


async def test_algorithm_must_match_the_key_it_names(
    verifier: JwksVerifier, ec_key: SigningKey, rsa_key: SigningKey
) -> None:
    # An ES256 signature presented under the RSA key's kid.
    token = jwt.encode(
        claims(), ec_key.private, algorithm="ES256", headers={"kid": rsa_key.kid}
    )

    await refused(verifier, token, "algorithm-not-allowed")


async def test_token_signed_by_another_key_under_a_known_kid_is_refused(
    verifier: JwksVerifier, rsa_key: SigningKey, rsa_key_2: SigningKey
) -> None:
    forged = SigningKey(rsa_key.kid, "RS256", rsa_key_2.private)

    await refused(verifier, forged.sign(claims()), "bad-signature")


async def test_tampered_payload_is_refused(
    verifier: JwksVerifier, rsa_key: SigningKey
) -> None:
    header, _, signature = rsa_key.sign(claims()).split(".")
    payload = b64(json.dumps(claims(sub="user_admin")).encode())

    await refused(verifier, f"{header}.{payload}.{signature}", "bad-signature")


@pytest.mark.parametrize(
    "token",
    [
        "",
        "not-a-jwt",
        "a.b.c",
        "a.b",
        "x" * 20_000,
        f"{b64(b'{not json')}.{b64(b'{}')}.{b64(b'sig')}",
        f"{b64(b'[1, 2]')}.{b64(b'{}')}.{b64(b'sig')}",
    ],
)
async def test_malformed_tokens_are_refused(verifier: JwksVerifier, token: str) -> None:
    await refused(verifier, token, "malformed")


async def test_token_without_kid_is_refused(
    verifier: JwksVerifier, rsa_key: SigningKey, server: JwksServer
) -> None:
    token = jwt.encode(claims(), rsa_key.private, algorithm="RS256")

    await refused(verifier, token, "malformed")
    assert server.requests == 0


async def test_non_json_payload_is_refused(
    verifier: JwksVerifier, rsa_key: SigningKey
) -> None:
    header = b64(json.dumps({"alg": "RS256", "kid": rsa_key.kid}).encode())
    payload = b64(b"not json")
    signing_input = f"{header}.{payload}".encode()
    signature = RSAAlgorithm(RSAAlgorithm.SHA256).sign(signing_input, rsa_key.private)

    await refused(verifier, f"{header}.{payload}.{b64(signature)}", "malformed")


# The key set: caching, refresh, rotation, outages


async def test_keys_are_fetched_once_and_cached(
    verifier: JwksVerifier, server: JwksServer, rsa_key: SigningKey, ec_key: SigningKey
) -> None:
    for _ in range(5):
        await verifier.verify(rsa_key.sign(claims()))
        await verifier.verify(ec_key.sign(claims()))

    assert server.requests == 1
    assert verifier.key_ids == {rsa_key.kid, ec_key.kid}


async def test_unknown_kid_refreshes_once_then_accepts_the_rotated_key(
    verifier: JwksVerifier,
    server: JwksServer,
    clock: FakeClock,
    rsa_key: SigningKey,
    rsa_key_2: SigningKey,
) -> None:
    await verifier.verify(rsa_key.sign(claims()))
    assert server.requests == 1
    server.keys = [rsa_key.jwk, rsa_key_2.jwk]  # the issuer rotates
    clock.advance(31)

    session = await verifier.verify(rsa_key_2.sign(claims()))

    assert session.subject == "user_2abc"
    assert server.requests == 2
    await verifier.verify(rsa_key_2.sign(claims()))
    assert server.requests == 2


async def test_unknown_kid_twice_quickly_fetches_once(
    verifier: JwksVerifier,
    server: JwksServer,
    clock: FakeClock,
    rsa_key: SigningKey,
    rsa_key_2: SigningKey,
) -> None:
    await verifier.verify(rsa_key.sign(claims()))
    stranger = SigningKey("not-in-the-set", "RS256", rsa_key_2.private)
    clock.advance(31)

    await refused(verifier, stranger.sign(claims()), "unknown-key")
    await refused(verifier, stranger.sign(claims()), "unknown-key")
    assert server.requests == 2

    # Many forged kids at once, after the interval: still one fetch.
    clock.advance(31)
    tokens = [
        SigningKey(f"forged-{n}", "RS256", rsa_key_2.private).sign(claims())
        for n in range(20)
    ]
    results = await asyncio.gather(
        *(verifier.verify(token) for token in tokens), return_exceptions=True
    )
    assert all(
        isinstance(result, AuthenticationError) and result.reason == "unknown-key"
        for result in results
    )
    assert server.requests == 3


async def test_first_fetch_failing_is_unavailable_not_invalid(
    verifier: JwksVerifier, server: JwksServer, rsa_key: SigningKey
) -> None:
    server.status = 503

    with pytest.raises(AuthenticationUnavailable) as caught:
        await verifier.verify(rsa_key.sign(claims()))

    assert caught.value.code == "authentication-unavailable"
    assert not isinstance(caught.value, AuthenticationError)


async def test_unreachable_endpoint_is_unavailable(rsa_key: SigningKey) -> None:
    async with jwks_server() as gone:
        url = gone.url
    verifier = JwksVerifier(url, issuer=ISSUER, audience=None)

    with pytest.raises(AuthenticationUnavailable):
        await verifier.verify(rsa_key.sign(claims()))


async def test_endpoint_that_never_answers_times_out(
    server: JwksServer, rsa_key: SigningKey
) -> None:
    server.hang = True
    verifier = JwksVerifier(server.url, issuer=ISSUER, audience=None, http_timeout=0.3)

    started = time.monotonic()
    with pytest.raises(AuthenticationUnavailable):
        await verifier.verify(rsa_key.sign(claims()))
    assert time.monotonic() - started < 2


@pytest.mark.parametrize(
    "document", [b"not json", b"[]", b'{"keys": "no"}', b'{"keys": [{"kty": "oct"}]}']
)
async def test_a_broken_key_set_is_unavailable(
    rsa_key: SigningKey, document: bytes
) -> None:
    async def answer(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
            % (len(document), document)
        )
        await writer.drain()
        writer.close()

    served = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = served.sockets[0].getsockname()[1]
    try:
        verifier = JwksVerifier(
            f"http://127.0.0.1:{port}/jwks", issuer=ISSUER, audience=None
        )
        with pytest.raises(AuthenticationUnavailable):
            await verifier.verify(rsa_key.sign(claims()))
    finally:
        served.close()
        await served.wait_closed()


async def test_cached_keys_keep_working_while_the_endpoint_is_down(
    verifier: JwksVerifier,
    server: JwksServer,
    clock: FakeClock,
    rsa_key: SigningKey,
    rsa_key_2: SigningKey,
) -> None:
    await verifier.verify(rsa_key.sign(claims()))
    server.status = 503
    clock.advance(3600)  # well past the cache's time to live

    await verifier.verify(rsa_key.sign(claims()))  # the refresh fails quietly
    assert server.requests == 2

    stranger = SigningKey("rsa-new", "RS256", rsa_key_2.private)
    clock.advance(31)
    with pytest.raises(AuthenticationUnavailable):
        await verifier.verify(stranger.sign(claims()))
    # Within the interval the failure is remembered rather than retried.
    with pytest.raises(AuthenticationUnavailable):
        await verifier.verify(stranger.sign(claims()))
    assert server.requests == 3

    server.status = 200
    clock.advance(31)
    await refused(verifier, stranger.sign(claims()), "unknown-key")


async def test_keys_removed_from_the_set_stop_working_after_the_ttl(
    verifier: JwksVerifier,
    server: JwksServer,
    clock: FakeClock,
    rsa_key: SigningKey,
    ec_key: SigningKey,
) -> None:
    await verifier.verify(rsa_key.sign(claims()))
    server.keys = [ec_key.jwk]  # rsa-1 is revoked
    clock.advance(601)

    await refused(verifier, rsa_key.sign(claims()), "unknown-key")
    await verifier.verify(ec_key.sign(claims()))


async def test_weak_and_symmetric_keys_in_the_set_are_ignored(
    server: JwksServer, clock: FakeClock, rsa_key: SigningKey
) -> None:
    weak = SigningKey(
        "weak", "RS256", rsa.generate_private_key(public_exponent=65537, key_size=1024)
    )
    server.keys = [
        rsa_key.jwk,
        weak.jwk,
        {"kty": "oct", "kid": "secret", "k": b64(b"x" * 32)},
    ]
    verifier = JwksVerifier(server.url, issuer=ISSUER, audience=None, clock=clock)

    await verifier.verify(rsa_key.sign(claims()))
    assert verifier.key_ids == {rsa_key.kid}
    with pytest.warns(InsecureKeyLengthWarning):
        token = weak.sign(claims())
    await refused(verifier, token, "unknown-key")


# Configuration


@pytest.mark.parametrize("algorithms", [("HS256",), ("RS256", "HS256"), ("none",), ()])
def test_symmetric_or_no_algorithms_are_a_configuration_error(
    algorithms: tuple[str, ...],
) -> None:
    with pytest.raises(ConfigurationError):
        JwksVerifier(
            "https://clerk.nextra.test/.well-known/jwks.json",
            issuer=ISSUER,
            audience=None,
            allowed_algorithms=algorithms,
        )


@pytest.mark.parametrize(
    "url",
    ["http://clerk.nextra.test/jwks", "ftp://127.0.0.1/jwks", "https:///jwks", "jwks"],
)
def test_key_set_url_must_be_https_except_on_loopback(url: str) -> None:
    with pytest.raises(ConfigurationError):
        JwksVerifier(url, issuer=ISSUER, audience=None)
