"""``verify_jwt(..., cache=VerifiedTokens())``: a token verified before is answered from the
cache only when a full verification would accept it now (issue #21: subject tokens presented
again and again skip the parse and the signature check, never a check)."""

from __future__ import annotations

import time
from typing import Any

import pytest

import lab.oauth.jose as jose
from lab.oauth.jose import (
    JwtValidationError,
    SigningKey,
    VerifiedTokens,
    generate_private_key,
    key_id,
    static_key_resolver,
    verify_jwt,
)

ISSUER = "https://idp.test"


def signing_key() -> SigningKey:
    private = generate_private_key("ES256")
    return SigningKey(private, key_id(private))


def token(key: SigningKey, **claims: Any) -> str:
    issued = int(time.time())
    body = {"iss": ISSUER, "sub": "alice", "aud": "zts", "iat": issued, "exp": issued + 300}
    return key.sign({**body, **claims}, typ="JWT")


def verify(
    value: str, keys: dict[str, Any], cache: VerifiedTokens, **kwargs: Any
) -> dict[str, Any]:
    options: dict[str, Any] = {"issuer": ISSUER, "audience": "zts", **kwargs}
    return verify_jwt(value, static_key_resolver(keys), cache=cache, **options)


def test_a_token_verified_before_is_answered_without_a_second_verification(
    decodes: list[str],
) -> None:
    key, cache = signing_key(), VerifiedTokens()
    keys = {key.kid: key.key.public_key()}
    value = token(key)
    first = verify(value, keys, cache)
    second = verify(value, keys, cache)
    assert first == second and second["sub"] == "alice"
    assert decodes == [value]


def test_a_token_with_another_signature_is_verified_in_full_and_refused(
    decodes: list[str],
) -> None:
    key, cache = signing_key(), VerifiedTokens()
    keys = {key.kid: key.key.public_key()}
    value = token(key)
    verify(value, keys, cache)
    header, payload, signature = value.split(".")
    changed = "A" if signature[10] != "A" else "B"  # still canonical base64url: pyjwt decides
    tampered = f"{header}.{payload}.{signature[:10]}{changed}{signature[11:]}"
    with pytest.raises(JwtValidationError) as refused:
        verify(tampered, keys, cache)
    assert refused.value.reason == "token signature is invalid"
    assert decodes[-1] == tampered


def test_a_new_key_set_means_a_new_verification_and_a_foreign_key_refuses() -> None:
    key, cache = signing_key(), VerifiedTokens()
    keys = {key.kid: key.key.public_key()}
    value = token(key)
    verify(value, keys, cache)
    # The issuer rotated: the same kid now names another key (a JWKS refresh builds new objects).
    keys[key.kid] = generate_private_key("ES256").public_key()
    with pytest.raises(JwtValidationError) as refused:
        verify(value, keys, cache)
    assert refused.value.reason == "token signature is invalid"


def test_a_key_removed_from_the_key_set_refuses_a_cached_token() -> None:
    key, cache = signing_key(), VerifiedTokens()
    keys = {key.kid: key.key.public_key()}
    value = token(key)
    verify(value, keys, cache)
    with pytest.raises(JwtValidationError) as refused:
        verify(value, {"other": generate_private_key("ES256").public_key()}, cache)
    assert refused.value.reason == f"unknown signing key id {key.kid!r}"


def test_the_same_key_reloaded_is_verified_again(decodes: list[str]) -> None:
    key, cache = signing_key(), VerifiedTokens()
    value = token(key)
    verify(value, {key.kid: key.key.public_key()}, cache)
    verify(value, {key.kid: key.key.public_key()}, cache)  # an equal key, another object
    assert decodes == [value, value]


def test_other_checks_asked_for_are_checked_in_full(decodes: list[str]) -> None:
    key, cache = signing_key(), VerifiedTokens()
    keys = {key.kid: key.key.public_key()}
    value = token(key)
    verify(value, keys, cache)
    with pytest.raises(JwtValidationError) as refused:
        verify(value, keys, cache, audience="someone-else")
    assert refused.value.reason == "token audience is not accepted here"
    with pytest.raises(JwtValidationError) as typed:
        verify(value, keys, cache, typ="at+jwt")
    assert "token type" in typed.value.reason
    with pytest.raises(JwtValidationError) as required:
        verify(value, keys, cache, required=("exp", "iat", "jti"))
    assert required.value.reason == "token is missing the 'jti' claim"


def test_past_its_exp_a_cached_token_is_not_answered_from_the_cache(
    decodes: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    key, cache = signing_key(), VerifiedTokens()
    keys = {key.kid: key.key.public_key()}
    issued = int(time.time())
    value = token(key, iat=issued - 100, exp=issued - 10)  # expired, inside the 30 s leeway
    verify(value, keys, cache)
    later = time.time() + 25  # now beyond exp + leeway, as the cache sees it
    monkeypatch.setattr(jose.time, "time", lambda: later)
    verify(value, keys, cache)  # pyjwt's own clock still accepts it: what matters is who decided
    assert decodes == [value, value]
    assert len(cache) == 1  # verified again and kept again


def test_an_expired_token_is_refused_even_when_it_was_cached() -> None:
    key, cache = signing_key(), VerifiedTokens()
    keys = {key.kid: key.key.public_key()}
    issued = int(time.time())
    value = token(key, iat=issued - 10, exp=issued + 1)
    verify(value, keys, cache, leeway=0)
    time.sleep(max(0.0, issued + 1.05 - time.time()))
    with pytest.raises(JwtValidationError) as refused:
        verify(value, keys, cache, leeway=0)
    assert refused.value.reason == "token has expired"


def test_claims_handed_out_are_copies() -> None:
    key, cache = signing_key(), VerifiedTokens()
    keys = {key.kid: key.key.public_key()}
    value = token(key, scp=["docs-getter"], act={"sub": "ai.agent"})
    first = verify(value, keys, cache)
    first["scp"].append("admin")
    first["act"]["sub"] = "mallory"
    first["sub"] = "mallory"
    again = verify(value, keys, cache)
    assert again["scp"] == ["docs-getter"]
    assert again["act"] == {"sub": "ai.agent"}
    assert again["sub"] == "alice"


def test_the_cache_is_bounded_least_recently_used_first(decodes: list[str]) -> None:
    key, cache = signing_key(), VerifiedTokens(size=2)
    keys = {key.kid: key.key.public_key()}
    one, two, three = (token(key, jti=str(n)) for n in range(3))
    for value in (one, two, one, three):
        verify(value, keys, cache)
    assert len(cache) == 2
    decodes.clear()
    verify(one, keys, cache)  # kept: used after two
    verify(two, keys, cache)  # dropped for three
    assert decodes == [two]
