"""Hostile or broken client input: an RFC 6749 §5.2 error with Athenz code/message, never a 500."""

from __future__ import annotations

import base64
import json

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from lab.oauth.jose import b64url, make_client_assertion
from lab.oauth.tokens import CLIENT_ASSERTION_TYPE_JWT_BEARER, GRANT_JWT_BEARER
from tests.pdp.conftest import AGENT, LEARNER, PdpLab


def _assert_error(response, status: int, error: str) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error
    assert body["code"] == status and body["message"]
    assert "Traceback" not in response.text
    return body


def _unsigned(claims: dict, header: dict) -> str:
    return f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}."


def test_missing_grant_type(world: PdpLab) -> None:
    body = _assert_error(world.token({}, client=LEARNER), 400, "invalid_request")
    assert body["message"] == "Invalid request: no grant type provided"


def test_unknown_grant_type(world: PdpLab) -> None:
    body = _assert_error(
        world.token({"grant_type": "password"}, client=LEARNER), 400, "unsupported_grant_type"
    )
    assert body["message"] == "Invalid grant request: password"


def test_missing_scope(world: PdpLab) -> None:
    body = _assert_error(
        world.token({"grant_type": "client_credentials"}, client=LEARNER), 400, "invalid_request"
    )
    assert body["message"] == "Invalid request: no scope provided"


def test_multiple_domains_in_scope(world: PdpLab) -> None:
    response = world.client_credentials(LEARNER, "api:role.docs-getter ai:role.x")
    assert _assert_error(response, 400, "invalid_scope")["message"] == "Multiple domains in scope"


def test_missing_assertion_and_subject_token(world: PdpLab) -> None:
    _assert_error(
        world.token({"grant_type": GRANT_JWT_BEARER}, client=AGENT), 400, "invalid_request"
    )
    exchange = world.token(
        {"grant_type": "urn:ietf:params:oauth:grant-type:token-exchange"}, client=AGENT
    )
    assert (
        _assert_error(exchange, 400, "invalid_request")["message"]
        == "Invalid request: no subject token provided"
    )


def test_alg_none_client_assertion(world: PdpLab) -> None:
    token = _unsigned(
        {"iss": LEARNER, "sub": LEARNER, "aud": world.zts, "jti": "x", "iat": 1, "exp": 2**31},
        {"alg": "none"},
    )
    form = {
        "grant_type": "client_credentials",
        "scope": "api:role.docs-getter",
        "client_assertion_type": CLIENT_ASSERTION_TYPE_JWT_BEARER,
        "client_assertion": token,
    }
    body = _assert_error(world.token(form), 401, "invalid_client")
    assert body["message"].startswith("Invalid client assertion")


def test_hs256_signed_with_the_public_key(world: PdpLab) -> None:
    public = (
        world.key(LEARNER)
        .key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    claims = {"iss": LEARNER, "sub": LEARNER, "aud": world.zts, "jti": "y", "iat": 1, "exp": 2**31}
    header = {"alg": "HS256", "kid": world.key(LEARNER).kid}
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    import hashlib
    import hmac

    signature = b64url(hmac.new(public, signing_input.encode(), hashlib.sha256).digest())
    form = {
        "grant_type": "client_credentials",
        "scope": "api:role.docs-getter",
        "client_assertion_type": CLIENT_ASSERTION_TYPE_JWT_BEARER,
        "client_assertion": f"{signing_input}.{signature}",
    }
    _assert_error(world.token(form), 401, "invalid_client")


def test_unknown_kid_in_client_assertion(world: PdpLab) -> None:
    key = world.key(LEARNER)
    token = jwt.encode(
        {"iss": LEARNER, "sub": LEARNER, "aud": world.zts, "jti": "z", "iat": 1, "exp": 2**31},
        key.key,
        algorithm="ES256",
        headers={"kid": "nope"},
    )
    form = {
        "grant_type": "client_credentials",
        "scope": "api:role.docs-getter",
        "client_assertion_type": CLIENT_ASSERTION_TYPE_JWT_BEARER,
        "client_assertion": token,
    }
    assert "unknown key id" in _assert_error(world.token(form), 401, "invalid_client")["message"]


@pytest.mark.parametrize(
    "garbage", ["", "a.b.c", "!!!.???.***", "x" * 20000, base64.b64encode(b"\xff" * 40).decode()]
)
def test_garbage_tokens_everywhere(world: PdpLab, garbage: str) -> None:
    form = {
        "grant_type": "client_credentials",
        "scope": "api:role.docs-getter",
        "client_assertion_type": CLIENT_ASSERTION_TYPE_JWT_BEARER,
        "client_assertion": garbage,
    }
    assert world.token(form).status_code in (400, 401)
    jag = world.redeem(garbage)
    assert jag.status_code == 400 and jag.json()["error"] in ("invalid_grant", "invalid_request")
    exchange = world.exchange(garbage)
    assert exchange.status_code == 400 and exchange.json()["error"] in (
        "invalid_grant",
        "invalid_request",
    )
    id_jag = world.request_id_jag(garbage)
    assert id_jag.status_code == 400 and id_jag.json()["error"] in (
        "invalid_grant",
        "invalid_request",
    )


def test_garbage_basic_credentials(world: PdpLab) -> None:
    response = world.token(
        {"grant_type": "client_credentials", "scope": "api:role.docs-getter"},
        headers={"Authorization": "Basic %%%notbase64"},
    )
    _assert_error(response, 401, "invalid_client")


def test_wrong_token_typ_for_subject_token(world: PdpLab) -> None:
    jag = world.request_id_jag(world.id_token()).json()["access_token"]
    body = _assert_error(world.exchange(jag), 400, "invalid_grant")
    assert "token type" in body["message"]


def test_id_token_with_wrong_typ_header(world: PdpLab) -> None:
    claims = jwt.decode(world.id_token(), options={"verify_signature": False})
    token = world.idp_key.sign(claims, typ="at+jwt")
    _assert_error(world.request_id_jag(token), 400, "invalid_grant")


def test_oversized_body(world: PdpLab) -> None:
    response = world.http.post(
        world.zts + "/oauth2/token", data={"grant_type": "client_credentials", "pad": "x" * 200_000}
    )
    assert response.status_code == 413
    assert response.json()["error"] == "invalid_request"


def test_wrong_content_type(world: PdpLab) -> None:
    response = world.http.post(
        world.zts + "/oauth2/token", json={"grant_type": "client_credentials"}
    )
    _assert_error(response, 400, "invalid_request")


def test_two_client_authentication_methods(world: PdpLab) -> None:
    form = {
        "grant_type": "client_credentials",
        "scope": "api:role.docs-getter",
        "client_secret": "s",
        **world.client_assertion(LEARNER),
    }
    _assert_error(world.token(form), 400, "invalid_request")


def test_client_assertion_for_another_audience(world: PdpLab) -> None:
    form = {
        "grant_type": "client_credentials",
        "scope": "api:role.docs-getter",
        "client_assertion_type": CLIENT_ASSERTION_TYPE_JWT_BEARER,
        "client_assertion": make_client_assertion(LEARNER, world.key(LEARNER), "http://elsewhere"),
    }
    _assert_error(world.token(form), 401, "invalid_client")


def test_bad_expires_in(world: PdpLab) -> None:
    response = world.token(
        {"grant_type": "client_credentials", "scope": "api:role.docs-getter", "expires_in": "soon"},
        client=LEARNER,
    )
    _assert_error(response, 400, "invalid_request")


def test_bad_zms_paths_and_bodies(world: PdpLab) -> None:
    for method, path, body in [
        ("GET", "/domain/" + "a" * 300, None),
        ("PUT", "/domain/api/role/x", [1, 2]),
        ("PUT", "/domain/api/role/x", {"roleMembers": "nope"}),
        (
            "PUT",
            "/domain/api/role/x",
            {"roleMembers": [{"memberName": "user.a", "expiration": "tomorrow"}]},
        ),
        ("PUT", "/domain/api/service/s", {"publicKeys": [{"id": 1}]}),
        ("GET", "/access/get/nodomain", None),
    ]:
        response = world.zms_call(method, path, body)
        assert 400 <= response.status_code < 500, (path, response.text)
        assert "error" in response.json()
