"""Interop: the official MCP SDK's SEP-990 client, unmodified, against the lab's PDP and MCP server.

``IdentityAssertionOAuthProvider`` does leg 2 itself (RFC 7523 jwt-bearer at the configured
issuer, ``client_secret_post`` by default) whenever the MCP server answers 401, and steps up on
403 ``insufficient_scope``. Leg 1, getting the ID-JAG, is ours: its ``assertion_provider`` asks
for an ID-JAG exactly as the lab's own agent does (at the PDP in the tutorial's topology, or at
the IdP in draft -04's). The client id and the issuer are the agent's, as configured and
discovered (``lab.agent.config``, ``lab.agent.discovery``), never fixed here. The SDK supports
only client-secret authentication, so the agent needs its own secret, registered in the PDP by
the lab extension ``POST /zms/v1/domain/{domain}/service/{service}/secret`` (contracts §3).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import httpx
import httpx2
from mcp.client.auth.extensions.identity_assertion import IdentityAssertionOAuthProvider
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken

from lab.agent.chain import DEFAULT_SCOPE
from lab.agent.mcp_client import ToolCall, ToolResult, mcp_session, tool_result_of
from lab.agent.pdp_client import PdpClient, TokenResponse
from lab.agent.recorder import Recorder
from lab.config import ADMIN_PRINCIPAL, AGENT_PRINCIPAL, Endpoints, Settings
from lab.oauth.admin import make_admin_assertion
from lab.oauth.jose import SigningKey

#: Leg 1 as a callable: ``(audience, resource) -> TokenResponse`` carrying the ID-JAG.
IdJagIssuer = Callable[[str, str], TokenResponse]


class MemoryTokenStorage:
    """The SDK's ``TokenStorage`` protocol, in memory: a fresh flow per process."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


class ClientSecretError(RuntimeError):
    """ZMS would not issue the agent's client secret."""


def obtain_client_secret(
    settings: Settings, endpoints: Endpoints, http: httpx.Client, principal: str = AGENT_PRINCIPAL
) -> str:
    """Ask ZMS (as the system admin) for a new client secret for ``principal`` (shown once)."""
    domain, _, service = principal.rpartition(".")
    admin_key = SigningKey.load_or_create(settings.key_file(ADMIN_PRINCIPAL))
    assertion = make_admin_assertion(ADMIN_PRINCIPAL, admin_key, endpoints.zms)
    response = http.post(
        f"{endpoints.zms}/domain/{domain}/service/{service}/secret",
        headers={"Authorization": f"Bearer {assertion}"},
    )
    try:
        body = response.json()
    except ValueError:
        body = {}
    secret = body.get("clientSecret") if isinstance(body, dict) else None
    if response.status_code not in (200, 201) or not isinstance(secret, str):
        raise ClientSecretError(
            f"ZMS answered {response.status_code} for {principal}'s client secret: {body}"
        )
    return secret


def build_provider(
    settings: Settings,
    endpoints: Endpoints,
    id_token: str,
    client_secret: str,
    *,
    pdp: PdpClient,
    id_jag_scope: str | None = DEFAULT_SCOPE,
    scope: str | None = None,
    issue_id_jag: IdJagIssuer | None = None,
) -> IdentityAssertionOAuthProvider:
    """The SDK's SEP-990 provider for the agent's client (``pdp.client_id``) at the issuer the
    agent found (``pdp.server``), fetching a fresh ID-JAG per exchange. Everything else keeps
    the SDK's defaults. ``issue_id_jag`` replaces leg 1 (default: the PDP issues it)."""

    def at_pdp(audience: str, resource: str) -> TokenResponse:
        return pdp.request_id_jag(id_token, id_jag_scope, resource, audience)

    issue = issue_id_jag or at_pdp

    async def fetch_id_jag(audience: str, resource: str) -> str:
        # The SDK passes its configured issuer as the ID-JAG audience and the MCP resource.
        answer = await anyio.to_thread.run_sync(lambda: issue(audience, resource))
        if not answer.ok or answer.token is None:
            raise RuntimeError(
                f"the ID-JAG was refused ({answer.status} {answer.error}): {answer.message}"
            )
        return answer.token

    return IdentityAssertionOAuthProvider(
        server_url=endpoints.mcp,
        storage=MemoryTokenStorage(),
        client_id=pdp.client_id,
        client_secret=client_secret,
        issuer=pdp.server.issuer,
        assertion_provider=fetch_id_jag,
        scope=scope,
    )


async def call_tool_with_provider(
    url: str,
    provider: IdentityAssertionOAuthProvider,
    name: str,
    arguments: dict[str, Any] | None = None,
    recorder: Recorder | None = None,
) -> ToolResult:
    """One MCP tool call with the SDK doing the token work: no bearer token is set by us."""
    hooks = recorder.async_hooks() if recorder is not None else None
    async with (
        httpx2.AsyncClient(auth=provider, event_hooks=hooks, timeout=30.0) as http,
        mcp_session(http, url) as client,
    ):
        result = await client.call_tool(name, arguments or {})
    return tool_result_of(ToolCall(name, dict(arguments or {})), result)
