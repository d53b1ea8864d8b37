"""API keys: made from random bits, stored as a hash, checked in constant time."""

from __future__ import annotations

import hashlib
import re

import pytest

from nextra.auth import (
    AuthenticationError,
    generate_api_key,
    hash_api_key,
    parse_api_key,
    verify_api_key,
)

KEY_SHAPE = re.compile(r"nx_[0-9a-z]{12}_[0-9A-Za-z]{43}")


def test_round_trip() -> None:
    key = generate_api_key()

    parsed = parse_api_key(key.secret)

    assert KEY_SHAPE.fullmatch(key.secret)
    assert parsed.prefix == key.prefix
    assert parsed.secret == key.secret
    assert key.hash == hash_api_key(key.secret)
    assert verify_api_key(parsed.secret, key.hash)


def test_hash_is_sha256_hex_of_the_whole_key() -> None:
    key = generate_api_key()

    assert key.hash == hashlib.sha256(key.secret.encode()).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", key.hash)


def test_wrong_key_does_not_verify() -> None:
    key, other = generate_api_key(), generate_api_key()
    last = key.secret[-1]
    typo = key.secret[:-1] + ("A" if last != "A" else "B")

    assert not verify_api_key(other.secret, key.hash)
    assert not verify_api_key(typo, key.hash)
    assert not verify_api_key(key.secret, other.hash)
    assert not verify_api_key(key.secret, "")
    assert not verify_api_key(key.secret, "é" * 64)
    assert not verify_api_key("\udcff", key.hash)


def test_pepper_changes_the_hash_and_must_match() -> None:
    pepper = b"server-side pepper"
    key = generate_api_key(pepper=pepper)

    assert key.hash != hash_api_key(key.secret)
    assert verify_api_key(key.secret, key.hash, pepper=pepper)
    assert not verify_api_key(key.secret, key.hash)
    assert not verify_api_key(key.secret, key.hash, pepper=b"another pepper")


def test_keys_are_unique() -> None:
    keys = [generate_api_key() for _ in range(500)]

    assert len({key.secret for key in keys}) == 500
    assert len({key.prefix for key in keys}) == 500
    assert len({key.hash for key in keys}) == 500


@pytest.mark.parametrize(
    "value",
    [
        "",
        "nx_",
        "nx_abc_def",
        "sk_live_0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJ",
        "nx_ABCDEFGHIJKL_" + "a" * 43,  # the prefix id is lower case
        "nx_abcdefghijkl_" + "a" * 42,
        "nx_abcdefghijkl_" + "a" * 44,
        "nx_abcdefghijkl_" + "a" * 42 + "-",
        " nx_abcdefghijkl_" + "a" * 43,
        "nx_abcdefghijkl_" + "a" * 43 + "\n",
        "nx_abcdefghijkl_" + "a" * 42 + "é",
        "Bearer nx_abcdefghijkl_" + "a" * 43,
    ],
)
def test_malformed_keys_are_refused_without_echoing_them(value: str) -> None:
    with pytest.raises(AuthenticationError) as caught:
        parse_api_key(value)

    assert caught.value.reason == "malformed"
    assert caught.value.code == "unauthenticated"
    if len(value.strip()) > 10:  # too short to tell an echo from the hint
        assert value.strip() not in str(caught.value)
        assert value.strip() not in repr(caught.value.fields())


def test_prefix_for_listing_never_reveals_the_secret() -> None:
    key = generate_api_key()
    random_part = key.secret.removeprefix(key.prefix + "_")

    assert key.secret == f"{key.prefix}_{random_part}"
    assert len(random_part) == 43
    assert random_part not in key.prefix
    assert random_part not in key.hash
    for shown in (
        repr(key),
        str(key),
        f"{key}",
        repr([key]),
        repr(key.__rich_repr__()),
    ):
        assert key.secret not in shown
        assert random_part not in shown
        assert key.prefix in shown or shown == repr(key.__rich_repr__())
