"""The JOSE policy every part relies on: allow-list, typ, kid, exp, 0600 keys."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import stat
import time

import jwt
import pytest

from lab.oauth import jose
from lab.oauth.jose import JwtValidationError, SigningKey, static_key_resolver, verify_jwt


@pytest.fixture(scope="module")
def signer() -> SigningKey:
    key = jose.generate_private_key("ES256")
    return SigningKey(key=key, kid=jose.key_id(key))


def _resolver(signer: SigningKey):
    return static_key_resolver({signer.kid: signer.key.public_key()})


def _claims(**extra):
    now = int(time.time())
    return {"iss": "https://as", "sub": "alice", "aud": "api", "iat": now, "exp": now + 60, **extra}


def test_valid_token_round_trips(signer):
    token = signer.sign(_claims(), typ="at+jwt")
    claims = verify_jwt(token, _resolver(signer), typ="at+jwt", issuer="https://as", audience="api")
    assert claims["sub"] == "alice"


def test_typ_is_compared_case_insensitively_without_application_prefix(signer):
    token = signer.sign(_claims(), typ="application/AT+JWT")
    assert verify_jwt(token, _resolver(signer), typ="at+jwt")["sub"] == "alice"


def test_wrong_typ_is_refused(signer):
    token = signer.sign(_claims(), typ="JWT")
    with pytest.raises(JwtValidationError, match="token type"):
        verify_jwt(token, _resolver(signer), typ="oauth-id-jag+jwt")


def test_alg_none_is_refused(signer):
    token = jwt.encode(_claims(), None, algorithm="none", headers={"kid": signer.kid})
    with pytest.raises(JwtValidationError, match="not allowed"):
        verify_jwt(token, _resolver(signer))


def test_hs256_signed_with_public_key_is_refused(signer):
    header = {"alg": "HS256", "typ": "at+jwt", "kid": signer.kid}
    pub = jose.public_pem(signer.key)

    def enc(obj):
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=")

    signing_input = enc(header) + b"." + enc(_claims())
    sig = base64.urlsafe_b64encode(hmac.new(pub, signing_input, hashlib.sha256).digest()).rstrip(
        b"="
    )
    with pytest.raises(JwtValidationError, match="not allowed"):
        verify_jwt((signing_input + b"." + sig).decode(), _resolver(signer))


def test_unknown_kid_is_refused(signer):
    other = SigningKey(key=jose.generate_private_key("ES256"), kid="other")
    with pytest.raises(JwtValidationError, match="unknown signing key"):
        verify_jwt(other.sign(_claims()), _resolver(signer))


def test_bad_signature_is_refused(signer):
    token = signer.sign(_claims())
    head, payload, sig = token.split(".")
    tampered_payload = jose.b64url(json.dumps(_claims(sub="mallory")).encode())
    with pytest.raises(JwtValidationError, match="signature"):
        verify_jwt(f"{head}.{tampered_payload}.{sig}", _resolver(signer))


def test_expired_token_is_refused(signer):
    now = int(time.time())
    token = signer.sign(_claims(iat=now - 3600, exp=now - 600))
    with pytest.raises(JwtValidationError, match="expired"):
        verify_jwt(token, _resolver(signer))


def test_wrong_audience_is_refused(signer):
    with pytest.raises(JwtValidationError, match="audience"):
        verify_jwt(signer.sign(_claims()), _resolver(signer), audience="http://mcp")


def test_garbage_is_refused(signer):
    for garbage in ["", "abc", "a.b.c", "x" * 20000, "eyJhbGciOiJFUzI1NiJ9.%%%.$$$"]:
        with pytest.raises(JwtValidationError):
            verify_jwt(garbage, _resolver(signer))


def test_private_keys_are_written_0600(tmp_path):
    path = tmp_path / "keys" / "svc.pem"
    key = jose.ensure_private_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert jose.key_id(jose.ensure_private_key(path)) == jose.key_id(key)  # loaded, not replaced
    assert path.with_suffix(".pub.pem").read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")


def test_ybase64_round_trip():
    data = bytes(range(256))
    encoded = jose.ybase64_encode(data)
    assert not set(encoded) & set("+/=")
    assert jose.ybase64_decode(encoded) == data


def test_unverified_reads_hand_out_copies_of_one_parse() -> None:
    from lab.oauth.jose import unverified_claims, unverified_header

    key = SigningKey(jose.generate_private_key("ES256"), "k1")
    token = key.sign({"sub": "a", "iss": "b"}, typ="at+jwt")
    claims = unverified_claims(token)
    claims["sub"] = "changed by a caller"
    unverified_header(token)["kid"] = "changed"
    assert unverified_claims(token)["sub"] == "a"
    assert unverified_header(token)["kid"] == "k1"


def test_a_token_whose_payload_is_not_json_has_a_header_but_no_claims() -> None:
    from lab.oauth.jose import unverified_claims, unverified_header

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    token = ".".join([b64(json.dumps({"alg": "ES256", "kid": "k"}).encode()), b64(b"[1]"), "sig"])
    assert unverified_header(token)["kid"] == "k"
    for _ in range(2):  # the refusal is not remembered as a success
        with pytest.raises(JwtValidationError, match="malformed token"):
            unverified_claims(token)
    with pytest.raises(JwtValidationError, match="malformed token"):
        unverified_header("not-a-token")
