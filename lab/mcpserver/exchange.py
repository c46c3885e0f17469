"""The MCP server's RFC 8693 token exchange at the PDP, as ``mcp.api-mcp`` (private_key_jwt).

One exchange per tool call, for exactly the role the tool needs: the document API then sees a
token whose ``sub`` is still the user, whose ``client_id`` (and ``act.sub``) is the MCP server,
and whose audience is ``api`` — never the token the MCP server received. The exchange crosses
from the MCP server's domain ``mcp`` (the received token's audience) into ``api``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx

from lab.agent import held
from lab.oauth import http as lab_http
from lab.oauth.jose import make_client_assertion
from lab.oauth.tokens import (
    CLIENT_ASSERTION_TYPE_JWT_BEARER,
    GRANT_TOKEN_EXCHANGE,
    TOKEN_TYPE_ACCESS_TOKEN,
)

log = logging.getLogger("lab.mcpserver")


class ExchangeRefused(Exception):
    """The PDP did not issue the exchanged token; carries what a learner needs to fix it."""

    def __init__(
        self,
        role: str,
        client_id: str,
        status: int | None,
        error: str | None,
        message: str,
        source_domain: str = "mcp",
    ) -> None:
        super().__init__(message)
        self.role = role
        self.source_domain = source_domain
        self.client_id = client_id
        self.status = status
        self.error = error
        self.message = message

    def missing_permission(self) -> str:
        domain, _, role_name = self.role.partition(":role.")
        if self.error == "unauthorized_client":
            # Athenz's exchange policy resources: <source>:<target> and <target>:<source>:role.<r>.
            source = self.source_domain
            return (
                f"{self.client_id} is not allowed to exchange tokens for {self.role} "
                f"(needs 'zts.token_source_exchange' on '{source}:{domain}' and "
                f"'zts.token_target_exchange' on '{domain}:{source}:role.{role_name}')"
            )
        if self.error == "invalid_scope" and self.status == 403:
            return f"the user is not a member of {self.role}"
        if self.error == "invalid_scope":
            # Athenz: an exchange may only narrow; the role must be in the received token's scope.
            return f"the token the MCP server received does not carry {self.role}"
        if self.error in ("invalid_client",):
            return (
                f"{self.client_id} could not authenticate at the PDP "
                "(is its service registered with its public key?)"
            )
        if self.error == "invalid_grant":
            return "the PDP did not accept the caller's token as the subject token"
        return f"a token for {self.role} could not be obtained"

    def explain(self) -> str:
        status = f"HTTP {self.status}" if self.status is not None else "no HTTP answer"
        code = f" {self.error}" if self.error else ""
        return (
            f"token exchange for {self.role} refused by the PDP ({status}{code}): {self.message}. "
            f"Missing permission: {self.missing_permission()}."
        )


class Exchanger:
    def __init__(
        self,
        *,
        token_endpoint: str,
        issuer: str,
        client_id: str,
        key_path: Path,
        audience: str,
        source_domain: str = "mcp",
        timeout_s: float = 10.0,
        http: lab_http.SharedAsyncClient | None = None,
    ) -> None:
        self.source_domain = source_domain
        self.token_endpoint = token_endpoint
        # Parsed once: httpx parses a str URL on every request (~8 us of a tool call's CPU).
        self._token_url = httpx.URL(token_endpoint)
        self.issuer = issuer
        self.client_id = client_id
        self.key_path = key_path
        self.audience = audience
        self.timeout_s = timeout_s
        self.http = http or lab_http.SharedAsyncClient(timeout=timeout_s)

    def _assertion(self) -> str:
        # The backend (or step 5) may create or rotate the key at any time: re-read the file
        # whenever it changed (a stat per call, not a PEM parse per call).
        key = held.signing_key(self.key_path)
        # RFC 7523 §3: aud = the authorization server's issuer (contracts §2).
        return make_client_assertion(self.client_id, key, self.issuer)

    async def exchange(
        self, subject_token: str, role: str, correlation_id: str | None = None
    ) -> str:
        """RFC 8693 §2.1 request: the issued access token, or :class:`ExchangeRefused`.

        ``correlation_id`` (the caller's ``X-Correlation-Id``) is passed on, so the PDP audits
        this exchange under the same id as the calls that led to it."""
        form = {
            "grant_type": GRANT_TOKEN_EXCHANGE,
            "subject_token": subject_token,
            "subject_token_type": TOKEN_TYPE_ACCESS_TOKEN,
            "requested_token_type": TOKEN_TYPE_ACCESS_TOKEN,
            "audience": self.audience,
            "scope": role,
            "client_assertion_type": CLIENT_ASSERTION_TYPE_JWT_BEARER,
            "client_assertion": self._assertion(),
        }
        try:
            headers = {"X-Correlation-Id": correlation_id} if correlation_id else {}
            response = await self.http.get().post(self._token_url, data=form, headers=headers)
        except httpx.HTTPError as exc:
            raise ExchangeRefused(
                role,
                self.client_id,
                None,
                None,
                f"the PDP at {self.token_endpoint} could not be reached: {exc}",
                self.source_domain,
            ) from None
        body = _json_object(response)
        if response.status_code != 200:
            message = body.get("message") or body.get("error_description") or response.text[:300]
            raise ExchangeRefused(
                role,
                self.client_id,
                response.status_code,
                _str_or_none(body.get("error")),
                str(message),
                self.source_domain,
            )
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise ExchangeRefused(
                role,
                self.client_id,
                response.status_code,
                None,
                "the PDP's answer carried no access_token",
                self.source_domain,
            )
        return token


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None
