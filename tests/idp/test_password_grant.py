"""The password grant (direct access grants) and the token endpoint's client checks."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jwt

from lab.config import Settings
from tests.idp.helpers import CLIENT_ID, CLIENT_SECRET, LEARNER_ID, OTHER_ID, Idp, serve_idp


def test_password_grant_issues_keycloak_shaped_tokens(idp: Idp) -> None:
    response = idp.password_grant()
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600  # accessTokenLifespan from the realm file
    assert body["scope"] == "openid email profile"
    assert body["refresh_expires_in"] > 0
    assert response.headers["cache-control"] == "no-store"

    id_claims = jwt.decode(body["id_token"], options={"verify_signature": False})
    assert id_claims["typ"] == "ID"
    assert id_claims["aud"] == CLIENT_ID
    assert id_claims["azp"] == CLIENT_ID
    assert id_claims["sub"] == LEARNER_ID
    assert id_claims["iss"] == idp.issuer
    assert id_claims["preferred_username"] == "idjag-learner"
    assert id_claims["email"] == "idjag-learner@example.com"
    assert id_claims["email_verified"] is True
    assert id_claims["name"] == "ID-JAG Learner"
    assert (id_claims["given_name"], id_claims["family_name"]) == ("ID-JAG", "Learner")
    assert id_claims["sid"] == body["session_state"]
    for claim in ("at_hash", "acr", "auth_time", "jti", "iat", "exp"):
        assert claim in id_claims
    uuid.UUID(id_claims["jti"])

    access = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert access["typ"] == "Bearer"
    assert access["aud"] == "account"
    assert access["azp"] == CLIENT_ID
    assert access["scope"] == "openid email profile"
    assert "default-roles-idjag" in access["realm_access"]["roles"]
    assert access["exp"] - access["iat"] == 3600

    refresh = jwt.decode(body["refresh_token"], options={"verify_signature": False})
    assert refresh["typ"] == "Refresh"


def test_the_second_user_gets_their_own_subject(idp: Idp) -> None:
    body = idp.password_grant("idjag-other").json()
    claims = jwt.decode(body["id_token"], options={"verify_signature": False})
    assert claims["sub"] == OTHER_ID != LEARNER_ID
    assert claims["preferred_username"] == "idjag-other"


def test_without_openid_scope_there_is_no_id_token(idp: Idp) -> None:
    body = idp.password_grant(scope="profile").json()
    assert "id_token" not in body
    assert body["scope"] == "email profile"


def test_wrong_password_is_invalid_user_credentials_400_as_keycloak_26(idp: Idp) -> None:
    response = idp.password_grant(password="not-the-password")
    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_grant",
        "error_description": "Invalid user credentials",
    }


def test_unknown_user_is_indistinguishable_from_wrong_password(idp: Idp) -> None:
    response = idp.password_grant(username="nobody")
    assert response.status_code == 400
    assert response.json()["error_description"] == "Invalid user credentials"


def test_unknown_client_is_invalid_client(idp: Idp) -> None:
    response = httpx.post(
        idp.token_url,
        data={
            "grant_type": "password",
            "username": "idjag-learner",
            "password": "password",
            "client_id": "nobody",
        },
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_wrong_client_secret_is_refused_with_401(idp: Idp) -> None:
    response = httpx.post(
        idp.token_url,
        data={"grant_type": "password", "username": "idjag-learner", "password": "password"},
        auth=(CLIENT_ID, "wrong"),
    )
    assert response.status_code == 401
    # Keycloak's wording for a bad secret of a known client.
    assert response.json()["error"] == "unauthorized_client"
    assert response.json()["error_description"] == "Invalid client or Invalid client credentials"


def test_missing_client_secret_is_refused(idp: Idp) -> None:
    response = httpx.post(
        idp.token_url,
        data={
            "grant_type": "password",
            "username": "idjag-learner",
            "password": "password",
            "client_id": CLIENT_ID,
        },
    )
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized_client"


def test_client_secret_basic_works_as_well_as_post(idp: Idp) -> None:
    response = httpx.post(
        idp.token_url,
        data={
            "grant_type": "password",
            "username": "idjag-learner",
            "password": "password",
            "scope": "openid",
        },
        auth=(CLIENT_ID, CLIENT_SECRET),
    )
    assert response.status_code == 200
    assert "id_token" in response.json()


def test_missing_grant_type_is_invalid_request(idp: Idp) -> None:
    response = httpx.post(
        idp.token_url, data={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_unsupported_grant_type(idp: Idp) -> None:
    response = httpx.post(
        idp.token_url,
        data={
            "grant_type": "urn:example:magic",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        },
    )
    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"


def test_unknown_scope_is_invalid_scope(idp: Idp) -> None:
    response = idp.password_grant(scope="openid admin")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"


def test_json_body_is_a_4xx_not_a_crash(idp: Idp) -> None:
    response = httpx.post(idp.token_url, json={"grant_type": "password"})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_password_grant_refused_when_direct_access_grants_are_off(
    lab_settings: Settings,
    reserved_sockets: dict[str, socket.socket],
    serve: Callable[..., str],
    write_realm: Callable[[Callable[[dict[str, Any]], None]], Path],
) -> None:
    def disable(realm: dict[str, Any]) -> None:
        realm["clients"][0]["directAccessGrantsEnabled"] = False

    idp = serve_idp(lab_settings, reserved_sockets["idp"], serve, write_realm(disable))
    response = idp.password_grant()
    assert response.status_code == 400
    assert response.json() == {
        "error": "unauthorized_client",
        "error_description": "Client not allowed for direct access grants",
    }
