"""Helpers for the IdP tests: the shipped realm's values, serving, driving the login form."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from urllib.parse import urljoin

import httpx

from lab.config import Settings
from lab.idp.app import DEFAULT_REALM_FILE, create_app

REALM = json.loads(DEFAULT_REALM_FILE.read_text())
AGENT = next(c for c in REALM["clients"] if c["clientId"] == "ai.agent")
CLIENT_ID = AGENT["clientId"]
CLIENT_SECRET = AGENT["secret"]
LEARNER_ID = next(u["id"] for u in REALM["users"] if u["username"] == "idjag-learner")
OTHER_ID = next(u["id"] for u in REALM["users"] if u["username"] == "idjag-other")
REDIRECT_URI = "http://127.0.0.1:49152/callback"


@dataclass
class Idp:
    url: str
    issuer: str
    settings: Settings

    @property
    def token_url(self) -> str:
        return f"{self.issuer}/protocol/openid-connect/token"

    @property
    def auth_url(self) -> str:
        return f"{self.issuer}/protocol/openid-connect/auth"

    @property
    def userinfo_url(self) -> str:
        return f"{self.issuer}/protocol/openid-connect/userinfo"

    def password_grant(
        self, username: str = "idjag-learner", password: str = "password", **extra: str
    ) -> httpx.Response:
        form = {
            "grant_type": "password",
            "username": username,
            "password": password,
            "scope": "openid",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            **extra,
        }
        return httpx.post(self.token_url, data=form)


def serve_idp(
    settings: Settings,
    sock: socket.socket,
    serve: Callable[..., str],
    realm_file: Path = DEFAULT_REALM_FILE,
) -> Idp:
    url = serve(create_app(settings, realm_file), sock)
    return Idp(url, settings.endpoints.idp_issuer, settings)


@dataclass
class Pkce:
    verifier: str
    challenge: str

    @classmethod
    def new(cls) -> Pkce:
        verifier = secrets.token_urlsafe(48)
        digest = hashlib.sha256(verifier.encode()).digest()
        return cls(verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode())


def auth_params(pkce: Pkce | None, **extra: str) -> dict[str, str]:
    params = {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT_URI,
        "scope": "openid",
        "state": "st-123",
        "nonce": "n-456",
    }
    if pkce is not None:
        params.update(code_challenge=pkce.challenge, code_challenge_method="S256")
    params.update(extra)
    return params


def form_action(page: httpx.Response) -> str:
    """The login form's action, resolved against the page URL as a browser (or the agent) does."""
    match = re.search(r'<form[^>]*id="kc-form-login"[^>]*action="([^"]+)"', page.text)
    assert match, "no login form in the page"
    return urljoin(str(page.url), unescape(match.group(1)))


def login(
    client: httpx.Client,
    idp: Idp,
    pkce: Pkce | None,
    username: str = "idjag-learner",
    password: str = "password",
    **extra: str,
) -> httpx.Response:
    """GET the auth URL, POST the credentials to the form; returns the POST's response."""
    page = client.get(idp.auth_url, params=auth_params(pkce, **extra))
    assert page.status_code == 200, page.text
    return client.post(form_action(page), data={"username": username, "password": password})


def code_from(response: httpx.Response) -> str:
    assert response.status_code == 302, response.text
    params = httpx.URL(response.headers["location"]).params
    return params["code"]


def redeem(
    idp: Idp, code: str, verifier: str | None, redirect_uri: str = REDIRECT_URI, **extra: str
) -> httpx.Response:
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri, **extra}
    if verifier is not None:
        form["code_verifier"] = verifier
    return httpx.post(idp.token_url, data=form, auth=(CLIENT_ID, CLIENT_SECRET))


def browser_client() -> httpx.Client:
    """A browser, reduced to HTTP: keeps Keycloak-style Secure cookies for loopback http."""
    from lab.agent.signin import browser_like

    return browser_like(httpx.Client())
