"""client_credentials: refused unless the client has a service account."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jwt

from lab.config import Settings
from tests.idp.helpers import CLIENT_ID, CLIENT_SECRET, Idp, serve_idp


def client_credentials(idp: Idp) -> httpx.Response:
    return httpx.post(
        idp.token_url, data={"grant_type": "client_credentials"}, auth=(CLIENT_ID, CLIENT_SECRET)
    )


def test_client_credentials_refused_without_service_accounts(idp: Idp) -> None:
    response = client_credentials(idp)
    assert response.status_code == 400
    assert response.json() == {
        "error": "unauthorized_client",
        "error_description": "Client not enabled to retrieve service account",
    }


def test_client_credentials_issues_a_service_account_token_when_enabled(
    lab_settings: Settings,
    reserved_sockets: dict[str, socket.socket],
    serve: Callable[..., str],
    write_realm: Callable[[Callable[[dict[str, Any]], None]], Path],
) -> None:
    def enable(realm: dict[str, Any]) -> None:
        realm["clients"][0]["serviceAccountsEnabled"] = True

    idp = serve_idp(lab_settings, reserved_sockets["idp"], serve, write_realm(enable))
    response = client_credentials(idp)
    assert response.status_code == 200
    body = response.json()
    assert "refresh_token" not in body  # Keycloak 26 default for client_credentials
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["typ"] == "Bearer"
    assert claims["azp"] == CLIENT_ID
    assert claims["preferred_username"] == f"service-account-{CLIENT_ID}"
    again = jwt.decode(
        client_credentials(idp).json()["access_token"], options={"verify_signature": False}
    )
    assert again["sub"] == claims["sub"]  # the service account's id is stable
