"""One authenticated client at one token endpoint, and the two ID-JAG requests made there.

- ``request_id_jag``: RFC 8693 §2.1 token exchange, ID token in, ID-JAG out
  (draft-ietf-oauth-identity-assertion-authz-grant-04 §4.3: ``audience`` REQUIRED and the
  authorization server that will redeem it; ``resource`` the MCP server, SEP-990).
- ``redeem_id_jag``: RFC 7523 §2.1 jwt-bearer grant with the ID-JAG as the assertion (-04 §4.4).

Where the token endpoint is and how to authenticate there come from metadata and configuration
(``lab.agent.discovery``, ``lab.agent.client_auth``). Refusals are data, never raised: steps
assert on them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from lab.agent.client_auth import ClientCredentials, authenticate, choose_method
from lab.oauth.tokens import (
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


class TokenEndpoint:
    """Token requests at ``url`` as ``credentials``, with the method both sides accept.

    ``audience`` is what a ``private_key_jwt`` assertion names: the server's issuer identifier
    (RFC 7523 §3 allows the token endpoint URL too; the issuer is what rfc7523bis asks for).
    """

    def __init__(
        self,
        http: httpx.Client,
        url: str,
        credentials: ClientCredentials,
        *,
        audience: str,
        advertised: Sequence[str] = (),
    ) -> None:
        self.http = http
        self.url = url
        self.credentials = credentials
        self.audience = audience
        self.method = choose_method(credentials, advertised)

    @property
    def client_id(self) -> str:
        return self.credentials.client_id

    def post(self, form: dict[str, str]) -> TokenResponse:
        form, headers = authenticate(form, self.credentials, self.method, self.audience)
        try:
            response = self.http.post(self.url, data=form, headers=headers)
        except httpx.HTTPError as exc:
            return TokenResponse(0, {}, f"unreachable: {exc.__class__.__name__}: {exc}")
        return token_response_of(response)

    def request_id_jag(
        self, id_token: str, *, audience: str, resource: str | None, scope: str | None
    ) -> TokenResponse:
        """RFC 8693 token exchange for an ID-JAG (-04 §4.3)."""
        form = {
            "grant_type": GRANT_TOKEN_EXCHANGE,
            "requested_token_type": TOKEN_TYPE_ID_JAG,
            "subject_token": id_token,
            "subject_token_type": TOKEN_TYPE_ID_TOKEN,
            "audience": audience,
        }
        if resource:
            form["resource"] = resource  # RFC 8707: the MCP server the final token is for
        if scope:
            form["scope"] = scope
        return self.post(form)

    def redeem_id_jag(
        self, id_jag: str, *, scope: str | None = None, resource: str | None = None
    ) -> TokenResponse:
        """RFC 7523 jwt-bearer grant with the ID-JAG (-04 §4.4)."""
        form = {"grant_type": GRANT_JWT_BEARER, "assertion": id_jag}
        if scope:
            form["scope"] = scope
        if resource:
            form["resource"] = resource
        return self.post(form)
