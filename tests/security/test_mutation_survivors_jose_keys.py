"""Key handling in ``lab/oauth/jose.py``: RFC 7638 thumbprints, JWKs of both key types, key ids,
client assertions; for mutants the in-process ``jose_fast`` run found alive (the RSA paths were
covered only by server tests, docs/dev/mutation.md)."""

from __future__ import annotations

from pathlib import Path

import jwt

from lab.oauth.jose import (
    SigningKey,
    algorithm_for,
    generate_private_key,
    jwk_thumbprint,
    jwks,
    key_id,
    make_client_assertion,
    public_jwk,
    public_key_from_jwk,
)

# RFC 7517 Appendix A.1's public keys and their RFC 7638 thumbprints (RFC 7638 §3.1 gives the
# RSA one; both are the vectors used by other JOSE libraries' tests).
EC_JWK = {
    "kty": "EC",
    "crv": "P-256",
    "x": "MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4",
    "y": "4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM",
    "use": "enc",
    "kid": "1",
}
RSA_JWK = {
    "kty": "RSA",
    "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbf"
    "AAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknj"
    "hMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65"
    "YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQ"
    "vRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lF"
    "d2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzK"
    "nqDKgw",
    "e": "AQAB",
    "alg": "RS256",
    "kid": "2011-04-29",
}
RSA_KEY = SigningKey(key=generate_private_key("RS256"), kid="k-rsa")


def test_thumbprints_are_rfc_7638s_for_both_key_types() -> None:
    assert jwk_thumbprint(EC_JWK) == "cn-I_WNMClehiVp51i_0VpOENW1upEerA8sEam5hn-s"
    assert jwk_thumbprint(RSA_JWK) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_an_rsa_key_is_rs256_and_its_jwk_round_trips() -> None:
    public = RSA_KEY.key.public_key()
    assert algorithm_for(RSA_KEY.key) == algorithm_for(public) == "RS256"
    jwk = public_jwk(RSA_KEY.key)
    assert public_jwk(public) == jwk
    assert {"kty", "n", "e", "alg", "use"} <= set(jwk)
    assert (jwk["kty"], jwk["alg"], jwk["use"], jwk["e"]) == ("RSA", "RS256", "sig", "AQAB")
    assert public_key_from_jwk(jwk).public_numbers() == public.public_numbers()  # type: ignore[union-attr]
    assert public_key_from_jwk(RSA_JWK).public_numbers().e == 65537  # type: ignore[union-attr]


def test_a_key_id_is_the_first_16_characters_of_the_thumbprint() -> None:
    thumbprint = jwk_thumbprint(public_jwk(RSA_KEY.key))
    assert key_id(RSA_KEY.key) == thumbprint[:16]
    assert len(key_id(RSA_KEY.key)) == 16


def test_a_key_set_lists_each_key_with_its_kid() -> None:
    assert jwks([(RSA_KEY.key, "k-rsa")]) == {"keys": [{**public_jwk(RSA_KEY.key), "kid": "k-rsa"}]}
    assert RSA_KEY.jwk() == {**public_jwk(RSA_KEY.key), "kid": "k-rsa"}


def test_a_signing_key_is_created_with_the_algorithm_asked_for(tmp_path: Path) -> None:
    created = SigningKey.load_or_create(tmp_path / "rsa.pem", "RS256")
    assert created.alg == "RS256"
    assert created.kid == key_id(created.key)


def test_a_client_assertion_carries_a_fresh_jti() -> None:
    first = make_client_assertion("ai.agent", RSA_KEY, "https://zts.test")
    second = make_client_assertion("ai.agent", RSA_KEY, "https://zts.test")
    claims = jwt.decode(first, options={"verify_signature": False})
    assert set(claims) == {"iss", "sub", "aud", "jti", "iat", "exp"}
    assert claims["jti"] != jwt.decode(second, options={"verify_signature": False})["jti"]


def test_an_ec_key_is_es256_in_its_jwk() -> None:
    ec_key = generate_private_key("ES256")
    jwk = public_jwk(ec_key, "k-ec")
    assert (jwk["kty"], jwk["crv"], jwk["alg"], jwk["use"], jwk["kid"]) == (
        "EC",
        "P-256",
        "ES256",
        "sig",
        "k-ec",
    )
