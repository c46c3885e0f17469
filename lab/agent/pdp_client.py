"""The agent at the PDP's token endpoint: ID-JAG request (RFC 8693) and its redemption (RFC 7523).

The token endpoint and the accepted client authentication methods come from the PDP's RFC 8414
metadata (usually found through the MCP server, ``lab.agent.discovery``); ``ai.agent``
authenticates with ``private_key_jwt`` unless configured otherwise (``lab.agent.client_auth``).
Refusals are returned as data, because steps assert on them (F2/F3): nothing here raises for
an HTTP error, and a metadata or client-authentication problem becomes a ``TokenResponse`` with
status 0 and an error saying what is missing.
"""

from __future__ import annotations

import httpx

from lab.agent.client_auth import ClientAuthError, ClientCredentials
from lab.agent.discovery import AuthorizationServer, DiscoveryError, fetch_authorization_server
from lab.agent.token_endpoint import TokenEndpoint, TokenResponse, token_response_of
from lab.config import AGENT_PRINCIPAL, Endpoints
from lab.oauth.jose import SigningKey

__all__ = ["PdpClient", "TokenResponse", "token_response_of"]


class PdpClient:
    """Token requests at the PDP (the authorization server the agent is provisioned for)."""

    def __init__(
        self,
        http: httpx.Client,
        endpoints: Endpoints,
        key: SigningKey | None = None,
        client_id: str = AGENT_PRINCIPAL,
        *,
        server: AuthorizationServer | None = None,
        credentials: ClientCredentials | None = None,
    ) -> None:
        self.http = http
        self.endpoints = endpoints
        self.credentials = credentials or ClientCredentials(client_id, key=key)
        self._server = server

    @property
    def client_id(self) -> str:
        return self.credentials.client_id

    @property
    def server(self) -> AuthorizationServer:
        """The PDP's metadata; without discovery, from the configured issuer (RFC 8414 §3)."""
        if self._server is None:
            self._server = fetch_authorization_server(self.http, self.endpoints.zts)
        return self._server

    def token_endpoint(self) -> TokenEndpoint:
        server = self.server
        return TokenEndpoint(
            self.http,
            server.token_endpoint,
            self.credentials,
            audience=server.issuer,
            advertised=server.auth_methods,
        )

    def request_id_jag(
        self, id_token: str, scope: str | None, resource: str | None, audience: str | None = None
    ) -> TokenResponse:
        """RFC 8693 §2.1 token exchange: ID token in, ID-JAG out (ID-JAG -04 §4.3)."""
        try:
            endpoint = self.token_endpoint()
        except (DiscoveryError, ClientAuthError) as exc:
            return not_sent(exc)
        # The ID-JAG's audience is the AS that will redeem it: in the tutorial, the PDP itself.
        return endpoint.request_id_jag(
            id_token, audience=audience or self.server.issuer, resource=resource, scope=scope
        )

    def redeem_id_jag(self, id_jag: str, scope: str | None = None) -> TokenResponse:
        """RFC 7523 §2.1 jwt-bearer grant with the ID-JAG as the assertion (ID-JAG -04 §4.4)."""
        try:
            endpoint = self.token_endpoint()
        except (DiscoveryError, ClientAuthError) as exc:
            return not_sent(exc)
        return endpoint.redeem_id_jag(id_jag, scope=scope)


def not_sent(exc: Exception) -> TokenResponse:
    """A request the agent could not make: no metadata, or no method both sides accept."""
    error = "metadata_unavailable" if isinstance(exc, DiscoveryError) else "no_common_auth_method"
    return TokenResponse(0, {"error": error, "error_description": str(exc)}, error)
