"""The verified-token cache (``VerifiedTokens``, ``verify_jwt(cache=...)``), for mutants the
``jose_fast`` run found alive (docs/dev/mutation.md).

A cache hit must answer exactly what a full verification answers: every check asked for
(issuer, ``typ``, lifetime) is part of the cache key and still made on a first presentation;
checks spelled two ways are one entry; the ``kid`` is resolved again on each hit; tokens that
nothing bounds are never kept; expired entries are dropped; handed-out claims are copies down
to nested values.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from lab.oauth.jose import (
    JwtValidationError,
    SigningKey,
    VerifiedTokens,
    generate_private_key,
    static_key_resolver,
    verify_jwt,
)

ISSUER = "https://idp.test"
KEY = SigningKey(key=generate_private_key("ES256"), kid="k-1")
SECOND = SigningKey(key=generate_private_key("ES256"), kid="k-2")
RESOLVE = static_key_resolver({"k-1": KEY.key.public_key(), "k-2": SECOND.key.public_key()})


def _token(typ: str = "JWT", lifetime: int = 300, **claims: Any) -> str:
    issued = int(time.time())
    body = {"iss": ISSUER, "sub": "alice", "aud": "zts", "iat": issued, "exp": issued + lifetime}
    body.update(claims)
    return KEY.sign({k: v for k, v in body.items() if v is not None}, typ=typ)


def _refusal(token: str, cache: VerifiedTokens, **checks: Any) -> str:
    with pytest.raises(JwtValidationError) as refused:
        verify_jwt(token, RESOLVE, cache=cache, **checks)
    return refused.value.reason


def test_the_first_presentation_is_checked_for_issuer_and_lifetime() -> None:
    cache = VerifiedTokens()
    assert _refusal(_token(), cache, issuer="https://other.test") == (
        "token issuer is not accepted here"
    )
    assert _refusal(_token(lifetime=86400), cache, max_lifetime=300) == (
        "token lifetime exp - iat exceeds 300 seconds"
    )
    assert len(cache) == 0


def test_a_token_cached_for_one_issuer_or_typ_is_checked_again_for_another() -> None:
    cache, token = VerifiedTokens(), _token()
    verify_jwt(token, RESOLVE, cache=cache, issuer=ISSUER, typ="JWT")
    assert _refusal(token, cache, issuer="https://other.test", typ="JWT") == (
        "token issuer is not accepted here"
    )
    assert _refusal(token, cache, issuer=ISSUER, typ="at+jwt").startswith(
        "token type 'JWT' is not accepted here"
    )


def test_the_same_checks_spelled_two_ways_are_one_entry(decodes: list[str]) -> None:
    cache, token = VerifiedTokens(), _token()
    verify_jwt(token, RESOLVE, cache=cache, typ="JWT", issuer=[ISSUER], audience=("zts",))
    verify_jwt(token, RESOLVE, cache=cache, typ=["jwt"], issuer=(ISSUER,), audience=["zts"])
    verify_jwt(token, RESOLVE, cache=cache, typ={"application/JWT"}, issuer=(ISSUER,))
    assert decodes == [token, token]  # the last one asks no audience check: another entry


def test_checks_not_asked_for_are_a_cache_key_too(decodes: list[str]) -> None:
    cache, token = VerifiedTokens(), _token()
    first = verify_jwt(token, RESOLVE, cache=cache)
    assert verify_jwt(token, RESOLVE, cache=cache) == first
    assert decodes == [token]


def test_the_expected_types_are_named_in_order_even_with_none_among_them() -> None:
    reason = _refusal(_token(typ="JWT"), VerifiedTokens(), typ=["at+jwt", None])
    assert reason == "token type 'JWT' is not accepted here (expected None or 'at+jwt')"


def test_a_hit_resolves_the_kid_the_token_was_verified_with(decodes: list[str]) -> None:
    # With two keys a lookup by any other kid (or none) fails: the hit must use "k-1".
    cache, token = VerifiedTokens(), _token()
    verify_jwt(token, RESOLVE, cache=cache)
    verify_jwt(token, RESOLVE, cache=cache)
    assert decodes == [token]


def test_a_token_inside_the_leeway_after_exp_is_still_a_hit(decodes: list[str]) -> None:
    cache, token = VerifiedTokens(), _token(lifetime=10)
    verify_jwt(token, RESOLVE, cache=cache, leeway=30)
    verify_jwt(token, RESOLVE, cache=cache, leeway=30)
    assert decodes == [token]


def test_a_token_without_exp_is_never_kept(decodes: list[str]) -> None:
    cache = VerifiedTokens()
    token = KEY.sign({"iss": ISSUER, "sub": "alice"}, typ="JWT")
    assert verify_jwt(token, RESOLVE, cache=cache, required=())["sub"] == "alice"
    assert verify_jwt(token, RESOLVE, cache=cache, required=())["sub"] == "alice"
    assert len(cache) == 0 and decodes == [token, token]


def test_an_expired_entry_is_dropped_when_looked_up() -> None:
    cache, token, public = VerifiedTokens(), _token(), KEY.key.public_key()
    cache.store(token, "checks", public, {"exp": time.time() - 60})
    assert len(cache) == 1
    assert cache.lookup(token, "checks", RESOLVE, 30) is None
    assert len(cache) == 0


def test_an_entry_whose_key_is_gone_is_dropped() -> None:
    cache, token = VerifiedTokens(), _token()
    verify_jwt(token, RESOLVE, cache=cache)
    others = static_key_resolver({"k-2": SECOND.key.public_key()})
    with pytest.raises(JwtValidationError):
        verify_jwt(token, others, cache=cache)
    assert len(cache) == 0


def test_dropping_an_entry_already_gone_is_harmless() -> None:
    VerifiedTokens()._drop(b"\0" * 32)  # a concurrent lookup may have dropped it first


def test_nested_claims_handed_out_are_copies(decodes: list[str]) -> None:
    cache = VerifiedTokens()
    token = _token(act={"sub": "ai.agent", "act": {"sub": "mcp.api-mcp"}})
    first = verify_jwt(token, RESOLVE, cache=cache)
    first["act"]["act"]["sub"] = "human.mallory"
    second = verify_jwt(token, RESOLVE, cache=cache)
    assert second["act"] == {"sub": "ai.agent", "act": {"sub": "mcp.api-mcp"}}
    assert decodes == [token]


def test_the_cache_keeps_256_tokens_by_default() -> None:
    cache = VerifiedTokens()
    assert cache.size == 256
    for n in range(257):
        verify_jwt(_token(jti=f"t{n}"), RESOLVE, cache=cache)
    assert len(cache) == 256
