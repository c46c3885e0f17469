"""``signature_check`` (``lab/oauth/jose.py``): the signature verdict shown beside a token.

The same steps as ``verify_jwt`` up to the signature, with every claim check off; each refusal
gives its reason and the verdict always names the header's ``kid``/``alg`` and the key set.
Written for mutants ``make mutate`` found alive (docs/dev/mutation.md).
"""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest

from lab.oauth.jose import (
    JwtValidationError,
    SigningKey,
    generate_private_key,
    signature_check,
    static_key_resolver,
)

KEY = SigningKey(key=generate_private_key("ES256"), kid="k-es")
OTHER = SigningKey(key=generate_private_key("ES256"), kid="k-es")
RSA = SigningKey(key=generate_private_key("RS256"), kid="k-rsa")
RESOLVE = static_key_resolver({"k-es": KEY.key.public_key(), "k-rsa": RSA.key.public_key()})


def _token(key: SigningKey = KEY, **claims: Any) -> str:
    return key.sign({"iss": "https://idp.test", "sub": "alice", **claims}, typ="JWT")


def test_a_good_signature_is_valid_and_names_kid_alg_and_keys() -> None:
    verdict = signature_check(_token(), RESOLVE, "the PDP's JWKS")
    assert verdict == {"valid": True, "kid": "k-es", "alg": "ES256", "keys": "the PDP's JWKS"}


def test_claims_are_not_checked_only_the_signature() -> None:
    past, future = int(time.time()) - 7200, int(time.time()) + 7200
    token = _token(exp=past, iat=future, nbf=future, aud="elsewhere")
    assert signature_check(token, RESOLVE, "k")["valid"] is True
    assert signature_check(_token(RSA), RESOLVE, "k")["valid"] is True


def test_a_signature_by_another_key_does_not_match() -> None:
    verdict = signature_check(_token(OTHER), RESOLVE, "k")
    assert verdict == {
        "valid": False,
        "kid": "k-es",
        "alg": "ES256",
        "keys": "k",
        "reason": "the signature does not match the key",
    }


def test_an_algorithm_outside_rs256_and_es256_is_not_allowed() -> None:
    token = jwt.encode({"sub": "alice"}, "s" * 32, algorithm="HS256", headers={"kid": "k-es"})
    verdict = signature_check(token, RESOLVE, "k")
    assert (verdict["valid"], verdict["alg"], verdict["kid"]) == (False, "HS256", "k-es")
    assert verdict["reason"] == "algorithm 'HS256' is not allowed"


def test_a_key_of_another_algorithm_does_not_match() -> None:
    resolve = static_key_resolver({"k-es": RSA.key.public_key()})
    verdict = signature_check(_token(), resolve, "k")
    assert (verdict["valid"], verdict["reason"]) == (
        False,
        "algorithm 'ES256' does not match the key",
    )


def test_an_unknown_key_gives_the_resolvers_reason() -> None:
    def unknown(kid: str | None) -> Any:
        raise JwtValidationError(f"no key {kid}")

    verdict = signature_check(_token(), unknown, "k")
    assert (verdict["valid"], verdict["kid"], verdict["reason"]) == (False, "k-es", "no key k-es")


@pytest.mark.parametrize(
    ("token", "reason"),
    [("", "token is empty or too large"), ("abc", "malformed token: Not enough segments")],
)
def test_an_unreadable_token_has_no_kid_or_alg(token: str, reason: str) -> None:
    verdict = signature_check(token, RESOLVE, "k")
    assert verdict == {"valid": False, "kid": None, "alg": None, "keys": "k", "reason": reason}


def test_a_signed_payload_that_is_no_json_object_is_invalid_with_pyjwts_reason() -> None:
    token = jwt.api_jws.encode(b"[1, 2]", KEY.key, algorithm="ES256", headers={"kid": "k-es"})
    verdict = signature_check(token, RESOLVE, "k")
    assert (verdict["valid"], verdict["kid"]) == (False, "k-es")
    assert verdict["reason"] == "token is invalid: Invalid payload string: must be a json object"
