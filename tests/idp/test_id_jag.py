"""The IdP issues ID-JAGs (RFC 8693 token exchange, ID-JAG draft -04 §4.3), Keycloak's way:
confidential client, its own ID token from this realm, audience allow-listed, resource paired."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from lab.config import Settings
from lab.idp.id_jag import resolve_placeholders
from lab.oauth.jose import public_key_from_jwk
from lab.oauth.tokens import (
    GRANT_TOKEN_EXCHANGE,
    TOKEN_TYPE_ACCESS_TOKEN,
    TOKEN_TYPE_ID_JAG,
    TOKEN_TYPE_ID_TOKEN,
    TYP_ID_JAG,
)
from tests.idp.helpers import CLIENT_ID, CLIENT_SECRET, LEARNER_ID, Idp, serve_idp

EditRealm = Callable[[Callable[[dict[str, Any]], None]], Path]
OTHER_SECRET = "other-client-secret"


def _id_token(idp: Idp, client_id: str = CLIENT_ID, secret: str | None = CLIENT_SECRET) -> str:
    form = {
        "grant_type": "password",
        "username": "idjag-learner",
        "password": "password",
        "scope": "openid",
        "client_id": client_id,
    }
    if secret is not None:
        form["client_secret"] = secret
    response = httpx.post(idp.token_url, data=form)
    assert response.status_code == 200, response.text
    return str(response.json()["id_token"])


def _exchange(
    idp: Idp,
    subject_token: str,
    *,
    client: tuple[str, str | None] = (CLIENT_ID, CLIENT_SECRET),
    **overrides: str | None,
) -> httpx.Response:
    form: dict[str, str | None] = {
        "grant_type": GRANT_TOKEN_EXCHANGE,
        "requested_token_type": TOKEN_TYPE_ID_JAG,
        "subject_token": subject_token,
        "subject_token_type": TOKEN_TYPE_ID_TOKEN,
        "audience": idp.settings.endpoints.zts,
        "resource": idp.settings.endpoints.mcp,
        "scope": "api:role.docs-getter mcp:role.mcp-accessor",
        "client_id": client[0],
        "client_secret": client[1],
    }
    form.update(overrides)
    return httpx.post(idp.token_url, data={k: v for k, v in form.items() if v is not None})


def _error(response: httpx.Response, status: int, error: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error, body
    assert "access_token" not in body
    return str(body["error_description"])


def test_id_jag_is_typed_and_carries_the_draft_04_claims(idp: Idp) -> None:
    response = _exchange(idp, _id_token(idp))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["issued_token_type"] == TOKEN_TYPE_ID_JAG
    assert body["token_type"] == "N_A"  # not a bearer token (RFC 8693 §2.2.1)
    assert body["expires_in"] == 300
    assert "refresh_token" not in body
    token = body["access_token"]
    header = jwt.get_unverified_header(token)
    assert header["typ"] == TYP_ID_JAG and header["alg"] == "RS256"
    # The signature checks out against the realm's JWKS.
    jwk = httpx.get(f"{idp.issuer}/protocol/openid-connect/certs").json()["keys"][0]
    claims = jwt.decode(
        token,
        public_key_from_jwk(jwk),  # type: ignore[arg-type]
        algorithms=["RS256"],
        audience=idp.settings.endpoints.zts,
        issuer=idp.issuer,
    )
    assert claims["sub"] == LEARNER_ID
    assert claims["aud"] == idp.settings.endpoints.zts
    assert claims["client_id"] == CLIENT_ID  # id.jag.client.id: the agent's id at the PDP
    assert claims["resource"] == idp.settings.endpoints.mcp
    assert claims["scope"] == "api:role.docs-getter mcp:role.mcp-accessor"
    assert claims["email"] == "idjag-learner@example.com"
    assert claims["preferred_username"] == "idjag-learner"
    assert claims["exp"] - claims["iat"] == 300
    assert claims["jti"]


def test_discovery_lists_the_id_jag_token_type(idp: Idp) -> None:
    doc = httpx.get(f"{idp.issuer}/.well-known/openid-configuration").json()
    assert doc["identity_chaining_requested_token_types_supported"] == [TOKEN_TYPE_ID_JAG]
    assert GRANT_TOKEN_EXCHANGE in doc["grant_types_supported"]


def test_client_without_its_secret_is_refused(idp: Idp) -> None:
    response = _exchange(idp, _id_token(idp), client=(CLIENT_ID, None))
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized_client"


def test_public_client_is_refused(
    lab_settings: Settings,
    reserved_sockets: dict[str, socket.socket],
    serve: Callable[..., str],
    write_realm: EditRealm,
) -> None:
    def add_public_client(realm: dict[str, Any]) -> None:
        realm["clients"].append(
            {
                "clientId": "public.app",
                "publicClient": True,
                "directAccessGrantsEnabled": True,
                "attributes": {
                    "id.jag.issuance.enabled": "true",
                    "id.jag.allowed.audiences": "${LAB_ZTS_ISSUER}",
                },
            }
        )

    idp = serve_idp(lab_settings, reserved_sockets["idp"], serve, write_realm(add_public_client))
    token = _id_token(idp, "public.app", None)
    description = _error(
        _exchange(idp, token, client=("public.app", None), resource=None), 400, "invalid_client"
    )
    assert description == "Public client is not allowed to exchange token"


def test_id_token_issued_to_another_client_is_refused(
    lab_settings: Settings,
    reserved_sockets: dict[str, socket.socket],
    serve: Callable[..., str],
    write_realm: EditRealm,
) -> None:
    def add_other_client(realm: dict[str, Any]) -> None:
        realm["clients"].append(
            {
                "clientId": "other.app",
                "secret": OTHER_SECRET,
                "directAccessGrantsEnabled": True,
                "attributes": dict(realm["clients"][0]["attributes"]),
            }
        )

    idp = serve_idp(lab_settings, reserved_sockets["idp"], serve, write_realm(add_other_client))
    # other.app presents the agent's ID token: a stolen token must not buy an ID-JAG.
    response = _exchange(idp, _id_token(idp), client=("other.app", OTHER_SECRET))
    assert _error(response, 400, "invalid_request") == (
        "Invalid subject token: it was not issued to this client"
    )
    # Its own ID token works, so the refusal above was about the token, not the client.
    assert (
        _exchange(
            idp, _id_token(idp, "other.app", OTHER_SECRET), client=("other.app", OTHER_SECRET)
        ).status_code
        == 200
    )


def test_id_token_of_another_realm_is_refused(idp: Idp) -> None:
    forged = jwt.encode(
        {
            "iss": "http://127.0.0.1:1/realms/other",
            "sub": LEARNER_ID,
            "aud": CLIENT_ID,
            "typ": "ID",
            "iat": 1,
            "exp": 4_000_000_000,
        },
        "not-the-realm-key-but-long-enough-for-hs256",
        algorithm="HS256",
    )
    response = _exchange(idp, forged)
    assert _error(response, 400, "invalid_request").startswith("Invalid subject token")


def test_access_token_as_subject_token_is_refused(idp: Idp) -> None:
    response = httpx.post(
        idp.token_url,
        data={
            "grant_type": "password",
            "username": "idjag-learner",
            "password": "password",
            "scope": "openid",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        },
    )
    access_token = response.json()["access_token"]
    refused = _exchange(idp, access_token)
    assert _error(refused, 400, "invalid_request").startswith("Invalid subject token")
    wrong_type = _exchange(idp, _id_token(idp), subject_token_type=TOKEN_TYPE_ACCESS_TOKEN)
    assert "subject_token_type" in _error(wrong_type, 400, "invalid_request")


def test_audience_is_required(idp: Idp) -> None:
    response = _exchange(idp, _id_token(idp), audience=None)
    assert _error(response, 400, "invalid_request") == "Missing parameter: audience"


def test_audience_not_allow_listed_is_refused(idp: Idp) -> None:
    response = _exchange(
        idp, _id_token(idp), audience="https://as.elsewhere.example", resource=None
    )
    assert "is not allowed for client ai.agent" in _error(response, 400, "invalid_target")


def test_resource_not_paired_with_the_audience_is_refused(idp: Idp) -> None:
    response = _exchange(idp, _id_token(idp), resource=idp.settings.endpoints.docapi_protected)
    assert "is not a resource of audience" in _error(response, 400, "invalid_target")


def test_resource_is_optional(idp: Idp) -> None:
    response = _exchange(idp, _id_token(idp), resource=None)
    assert response.status_code == 200, response.text
    claims = jwt.decode(response.json()["access_token"], options={"verify_signature": False})
    assert "resource" not in claims


def test_other_requested_token_types_are_not_supported(idp: Idp) -> None:
    response = _exchange(idp, _id_token(idp), requested_token_type=TOKEN_TYPE_ACCESS_TOKEN)
    assert "is not supported" in _error(response, 400, "invalid_request")


def test_client_without_issuance_enabled_is_refused(
    lab_settings: Settings,
    reserved_sockets: dict[str, socket.socket],
    serve: Callable[..., str],
    write_realm: EditRealm,
) -> None:
    def disable(realm: dict[str, Any]) -> None:
        realm["clients"][0]["attributes"]["id.jag.issuance.enabled"] = "false"

    idp = serve_idp(lab_settings, reserved_sockets["idp"], serve, write_realm(disable))
    response = _exchange(idp, _id_token(idp))
    assert "id.jag.issuance.enabled" in _error(response, 400, "unauthorized_client")


def test_empty_allow_list_denies_every_audience(
    lab_settings: Settings,
    reserved_sockets: dict[str, socket.socket],
    serve: Callable[..., str],
    write_realm: EditRealm,
) -> None:
    def empty(realm: dict[str, Any]) -> None:
        realm["clients"][0]["attributes"].pop("id.jag.allowed.audiences")

    idp = serve_idp(lab_settings, reserved_sockets["idp"], serve, write_realm(empty))
    _error(_exchange(idp, _id_token(idp)), 400, "invalid_target")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("${LAB_ZTS_ISSUER}", "http://zts.test/zts/v1"),
        ("${UNSET_LAB_VAR_X:http://127.0.0.1:8443/zts/v1}", "http://127.0.0.1:8443/zts/v1"),
        ("${UNSET_LAB_VAR_X}", "${UNSET_LAB_VAR_X}"),
        ("a ${LAB_ZTS_ISSUER} b", "a http://zts.test/zts/v1 b"),
    ],
)
def test_realm_placeholders_resolve_as_keycloak_import_does(value: str, expected: str) -> None:
    assert resolve_placeholders(value, {"LAB_ZTS_ISSUER": "http://zts.test/zts/v1"}) == expected
