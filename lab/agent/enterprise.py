"""SEP-990 (MCP Enterprise-Managed Authorization) from an MCP server's URL and an ID token.

The draft's two-party topology, for any MCP server and any IdP (draft-ietf-oauth-identity-
assertion-authz-grant-04 §9.3): discovery from the MCP server's 401 (``lab.agent.discovery``),
then leg 1 at the enterprise IdP's token endpoint (RFC 8693: ID token → ID-JAG, with
``audience`` = the MCP server's authorization server and ``resource`` = the MCP server), then
leg 2 at that authorization server (RFC 7523 jwt-bearer → access token). Client authentication
at each end is the configured or the best advertised method (``lab.agent.client_auth``).

The lab's own ``Agent`` uses the same pieces for the tutorial's topology (the PDP issues the
ID-JAG); ``python -m lab.agent.conformance`` drives this module for the official conformance
suite.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx

from lab.agent.client_auth import ClientAuthError, ClientCredentials
from lab.agent.discovery import Discovery, DiscoveryError, discover, fetch_authorization_server
from lab.agent.pdp_client import not_sent
from lab.agent.token_endpoint import TokenEndpoint, TokenResponse


@dataclass(frozen=True)
class IdentityProvider:
    """Where leg 1 happens: the IdP's token endpoint (or its issuer, to find it) and our client."""

    credentials: ClientCredentials
    token_endpoint: str | None = None
    issuer: str | None = None


@dataclass(frozen=True)
class EnterpriseConfig:
    #: The client registered at the MCP server's authorization server.
    client: ClientCredentials
    idp: IdentityProvider
    #: The authorization server the client is provisioned for; None takes the one the MCP
    #: server's RFC 9728 metadata lists first.
    issuer: str | None = None
    #: Requested at both legs when set; otherwise the challenge's ``scope`` if any (MCP
    #: "Scope Selection Strategy"), else none (the server applies its default).
    scope: str | None = None


@dataclass
class EnterpriseTokens:
    discovery: Discovery | None = None
    id_jag: TokenResponse | None = None
    access: TokenResponse | None = None
    #: "discovery", "id_jag" or "redeem" when that link broke.
    stopped_at: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.stopped_at is None and self.access is not None and self.access.ok


def idp_token_endpoint(http: httpx.Client, idp: IdentityProvider) -> TokenEndpoint:
    if idp.token_endpoint:
        return TokenEndpoint(
            http, idp.token_endpoint, idp.credentials, audience=idp.issuer or idp.token_endpoint
        )
    if not idp.issuer:
        raise DiscoveryError("the IdP needs a token endpoint or an issuer to discover it from")
    metadata = fetch_authorization_server(http, idp.issuer)
    return TokenEndpoint(
        http,
        metadata.token_endpoint,
        idp.credentials,
        audience=metadata.issuer,
        advertised=metadata.auth_methods,
    )


def obtain_access_token(
    http: httpx.Client, mcp_url: str, id_token: str, config: EnterpriseConfig
) -> EnterpriseTokens:
    """Both legs of SEP-990 for ``mcp_url``; stops at the first broken link and says which."""
    result = EnterpriseTokens()
    try:
        result.discovery = found = discover(http, mcp_url, issuer=config.issuer)
    except DiscoveryError as exc:
        result.notes.append(str(exc))
        result.stopped_at = "discovery"
        return result
    server = found.authorization_server
    scope = config.scope or (found.challenge.scope if found.challenge else None)
    try:
        at_idp = idp_token_endpoint(http, config.idp)
        at_server = TokenEndpoint(
            http,
            server.token_endpoint,
            config.client,
            audience=server.issuer,
            advertised=server.auth_methods,
        )
    except (DiscoveryError, ClientAuthError) as exc:
        result.notes.append(str(exc))
        result.id_jag = not_sent(exc)
        result.stopped_at = "id_jag"
        return result
    result.notes.append(
        f"client authentication: {at_idp.method} at the IdP, {at_server.method} at {server.issuer}"
    )
    # SEP-990: audience = the MCP server's authorization server, resource = its RFC 9728 resource.
    result.id_jag = at_idp.request_id_jag(
        id_token, audience=server.issuer, resource=found.resource, scope=scope
    )
    if not result.id_jag.ok or result.id_jag.token is None:
        result.stopped_at = "id_jag"
        return result
    result.access = at_server.redeem_id_jag(result.id_jag.token, scope=scope)
    if not result.access.ok:
        result.stopped_at = "redeem"
    return result
