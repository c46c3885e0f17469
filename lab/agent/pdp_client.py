"""The agent at the PDP's token endpoint: ID-JAG request (RFC 8693) and its redemption (RFC 7523).

Both requests authenticate ``ai.agent`` with ``private_key_jwt`` (RFC 7523 §2.2), a fresh
single-use client assertion per request. Refusals are returned as data, because steps assert
on them (F2/F3): nothing here raises for an HTTP error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from lab.config import AGENT_PRINCIPAL, Endpoints
from lab.oauth.jose import SigningKey, make_client_assertion
from lab.oauth.tokens import (
    CLIENT_ASSERTION_TYPE_JWT_BEARER,
    GRANT_JWT_BEARER,
    GRANT_TOKEN_EXCHANGE,
    TOKEN_TYPE_ID_JAG,
    TOKEN_TYPE_ID_TOKEN,
)


@dataclass
class TokenResponse:
    """What the token endpoint said: the token on success, the OAuth/Athenz error otherwise."""

    status: int
    body: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.token is not None

    @property
    def token(self) -> str | None:
        value = self.body.get("access_token")
        return value if isinstance(value, str) else None

    @property
    def scope(self) -> str | None:
        value = self.body.get("scope")
        return value if isinstance(value, str) else None

    @property
    def message(self) -> str:
        """The most specific human text: Athenz's message, else the RFC 6749 description."""
        return str(
            self.body.get("message") or self.body.get("error_description") or self.error or ""
        )


class PdpClient:
    """Token requests at ZTS, authenticated as the agent with its private key."""

    def __init__(
        self,
        http: httpx.Client,
        endpoints: Endpoints,
        key: SigningKey,
        client_id: str = AGENT_PRINCIPAL,
    ) -> None:
        self.http = http
        self.endpoints = endpoints
        self.key = key
        self.client_id = client_id

    def request_id_jag(
        self, id_token: str, scope: str, resource: str | None, audience: str | None = None
    ) -> TokenResponse:
        """RFC 8693 §2.1 token exchange: ID token in, ID-JAG out (ID-JAG draft §4.3)."""
        form = {
            "grant_type": GRANT_TOKEN_EXCHANGE,
            "requested_token_type": TOKEN_TYPE_ID_JAG,
            "subject_token": id_token,
            "subject_token_type": TOKEN_TYPE_ID_TOKEN,
            # The ID-JAG's audience is the AS that will redeem it: here ZTS itself.
            "audience": audience or self.endpoints.zts,
            "scope": scope,
        }
        if resource:
            form["resource"] = resource  # RFC 8707: the MCP server the final token is for
        return self._post(form)

    def redeem_id_jag(self, id_jag: str, scope: str | None = None) -> TokenResponse:
        """RFC 7523 §2.1 jwt-bearer grant with the ID-JAG as the assertion (ID-JAG draft §4.4)."""
        form = {"grant_type": GRANT_JWT_BEARER, "assertion": id_jag}
        if scope:
            form["scope"] = scope
        return self._post(form)

    def _post(self, form: dict[str, str]) -> TokenResponse:
        form |= {
            "client_assertion_type": CLIENT_ASSERTION_TYPE_JWT_BEARER,
            "client_assertion": make_client_assertion(self.client_id, self.key, self.endpoints.zts),
        }
        try:
            response = self.http.post(self.endpoints.zts_token, data=form)
        except httpx.HTTPError as exc:
            return TokenResponse(0, {}, f"unreachable: {exc.__class__.__name__}: {exc}")
        return token_response_of(response)


def token_response_of(response: httpx.Response) -> TokenResponse:
    try:
        body = response.json()
    except ValueError:
        body = {"raw": response.text[:2000]}
    if not isinstance(body, dict):
        body = {"raw": body}
    error = (
        None
        if response.status_code == 200
        else str(body.get("error", f"http_{response.status_code}"))
    )
    return TokenResponse(response.status_code, body, error)
