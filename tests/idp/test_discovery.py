"""Discovery, JWKS, realm info and health: the metadata a Keycloak client reads first."""

from __future__ import annotations

import socket
import stat
from collections.abc import Callable

import httpx
import jwt

from lab.config import Settings
from lab.oauth.jose import public_key_from_jwk
from tests.idp.helpers import Idp, serve_idp


def test_discovery_document_names_keycloak_endpoints_under_the_realm(idp: Idp) -> None:
    response = httpx.get(f"{idp.issuer}/.well-known/openid-configuration")
    assert response.status_code == 200
    doc = response.json()
    oidc = f"{idp.issuer}/protocol/openid-connect"
    assert doc["issuer"] == idp.issuer
    assert idp.issuer.endswith("/realms/idjag")
    assert doc["authorization_endpoint"] == f"{oidc}/auth"
    assert doc["token_endpoint"] == f"{oidc}/token"
    assert doc["jwks_uri"] == f"{oidc}/certs"
    assert doc["userinfo_endpoint"] == f"{oidc}/userinfo"
    assert doc["end_session_endpoint"] == f"{oidc}/logout"
    assert "S256" in doc["code_challenge_methods_supported"]
    assert doc["id_token_signing_alg_values_supported"] == ["RS256"]
    assert {"authorization_code", "password", "refresh_token", "client_credentials"} <= set(
        doc["grant_types_supported"]
    )


def test_jwks_publishes_the_rs256_key_that_signs_tokens(idp: Idp) -> None:
    keys = httpx.get(f"{idp.issuer}/protocol/openid-connect/certs").json()["keys"]
    assert len(keys) == 1
    jwk = keys[0]
    assert (jwk["kty"], jwk["alg"], jwk["use"]) == ("RSA", "RS256", "sig")
    id_token = idp.password_grant().json()["id_token"]
    header = jwt.get_unverified_header(id_token)
    assert header["kid"] == jwk["kid"]
    assert header["alg"] == "RS256"
    claims = jwt.decode(
        id_token, public_key_from_jwk(jwk), algorithms=["RS256"], audience="ai.agent"
    )
    assert claims["iss"] == idp.issuer


def test_signing_key_persists_in_lab_home_across_restarts(
    lab_settings: Settings, reserved_sockets: dict[str, socket.socket], serve: Callable[..., str]
) -> None:
    first = serve_idp(lab_settings, reserved_sockets["idp"], serve)
    kid_before = httpx.get(f"{first.issuer}/protocol/openid-connect/certs").json()["keys"][0]["kid"]
    key_file = lab_settings.keys_dir / "idp-signing.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    second = serve_idp(lab_settings, reserved_sockets["zms"], serve)  # a restart: same $LAB_HOME
    kid_after = httpx.get(f"{second.url}/realms/idjag/protocol/openid-connect/certs").json()[
        "keys"
    ][0]["kid"]
    assert kid_after == kid_before


def test_realm_endpoint_publishes_the_public_key_like_keycloak(idp: Idp) -> None:
    body = httpx.get(idp.issuer).json()
    assert body["realm"] == "idjag"
    assert body["public_key"].startswith("MII")  # base64 DER SubjectPublicKeyInfo
    assert body["token-service"] == f"{idp.issuer}/protocol/openid-connect"


def test_health_endpoints_answer_ready(idp: Idp) -> None:
    assert httpx.get(f"{idp.url}/health/ready").json()["status"] == "UP"
    assert httpx.get(f"{idp.url}/healthz").json() == {
        "status": "ok",
        "part": "idp",
        "server": "lab embedded IdP (Keycloak-compatible)",  # `lab verify --json` served_by
    }


def test_unknown_realm_is_a_keycloak_style_404(idp: Idp) -> None:
    response = httpx.get(f"{idp.url}/realms/master/.well-known/openid-configuration")
    assert response.status_code == 404
    assert response.json()["error"] == "Realm does not exist"
