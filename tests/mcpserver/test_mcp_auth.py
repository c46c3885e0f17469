"""The MCP server as an OAuth resource server: PRM, 401 challenges, settings, host guard."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from lab.config import Settings
from lab.mcpserver.app import create_app
from tests.mcpserver.conftest import McpStack

LEARNER = "human.idjag-learner"
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"},
    },
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


CHALLENGE_SCOPE = 'scope="mcp:role.mcp-accessor api:role.docs-getter"'


def test_protected_resource_metadata_names_the_pdp_as_authorization_server(
    stack: McpStack, lab_settings: Settings
) -> None:
    response = httpx.get(f"{stack.origin}/.well-known/oauth-protected-resource/mcp")
    assert response.status_code == 200
    metadata = response.json()
    assert metadata["resource"] == lab_settings.endpoints.mcp
    assert metadata["authorization_servers"] == [lab_settings.endpoints.zts]
    # RFC 9728 §2: the scopes a client can ask for - never an empty array.
    assert metadata["scopes_supported"] == [
        "mcp:role.mcp-accessor",
        "api:role.docs-getter",
        "api:role.docs-poster",
        "api:role.docs-deleter",
    ]
    assert [name for name, value in metadata.items() if value == []] == []


def test_call_without_token_is_401_pointing_at_the_metadata_without_an_error_code(
    stack: McpStack,
) -> None:
    response = httpx.post(stack.mcp_url, json=INITIALIZE, headers=MCP_HEADERS)
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    # RFC 9728 §5.1: the challenge tells the client where the metadata is.
    assert (
        f'resource_metadata="{stack.origin}/.well-known/oauth-protected-resource/mcp"' in challenge
    )
    # RFC 6750 §3.1: no credentials, no error code; the MCP spec: scope to ask for.
    assert "error=" not in challenge
    assert CHALLENGE_SCOPE in challenge
    assert response.json()["error"] == "unauthorized"


@pytest.mark.parametrize("audience", ["api", "mcp", "other-domain", "http://127.0.0.1:1/mcp"])
def test_token_for_another_audience_is_401_invalid_token(stack: McpStack, audience: str) -> None:
    """Only tokens issued for this server pass: not the document API's (``api``), not the
    tutorial's domain-named audience (``mcp``), not another URL (MCP authorization spec,
    audience binding; RFC 8707)."""
    token = stack.zts.token(LEARNER, ["docs-getter"], aud=audience)
    headers = {**MCP_HEADERS, "Authorization": f"Bearer {token}"}
    response = httpx.post(stack.mcp_url, json=INITIALIZE, headers=headers)
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert "resource_metadata=" in response.headers["www-authenticate"]
    assert CHALLENGE_SCOPE in response.headers["www-authenticate"]
    assert response.json()["error"] == "invalid_token"


def test_token_for_this_server_is_accepted(stack: McpStack, lab_settings: Settings) -> None:
    token = stack.zts.token(LEARNER, ["docs-getter"], aud=lab_settings.endpoints.mcp)
    headers = {**MCP_HEADERS, "Authorization": f"Bearer {token}"}
    response = httpx.post(stack.mcp_url, json=INITIALIZE, headers=headers)
    assert response.status_code == 200
    assert response.json()["result"]["serverInfo"]["name"] == "idjag-lab-docs"


def test_non_loopback_host_header_is_refused_by_the_dns_rebinding_guard(stack: McpStack) -> None:
    token = stack.zts.token(LEARNER, ["docs-getter"], aud=stack.mcp_url)
    headers = {**MCP_HEADERS, "Authorization": f"Bearer {token}", "Host": "evil.example:80"}
    response = httpx.post(stack.mcp_url, json=INITIALIZE, headers=headers)
    assert response.status_code == 421


def test_settings_need_the_admin_assertion(stack: McpStack) -> None:
    response = httpx.get(f"{stack.origin}/lab/settings")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    learner = stack.zts.token(LEARNER, ["docs-getter"])
    response = httpx.put(
        f"{stack.origin}/lab/settings",
        json={"require_access": True},
        headers={"Authorization": f"Bearer {learner}"},
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"


def test_require_access_is_persisted_and_survives_a_restart(
    stack: McpStack, lab_settings: Settings
) -> None:
    assert httpx.get(f"{stack.origin}/lab/settings", headers=stack.admin_headers()).json() == {
        "require_access": False
    }
    put = httpx.put(
        f"{stack.origin}/lab/settings", json={"require_access": True}, headers=stack.admin_headers()
    )
    assert put.status_code == 200
    assert put.json() == {"require_access": True}
    assert (
        httpx.get(f"{stack.origin}/lab/settings", headers=stack.admin_headers()).json()[
            "require_access"
        ]
        is True
    )
    restarted = create_app(lab_settings)
    assert restarted.state.server_settings.require_access is True
    stored = json.loads((lab_settings.home / "mcpserver-settings.json").read_text())
    assert stored == {"require_access": True}


@pytest.mark.parametrize("body", [{"require_access": "yes"}, {"require_acess": True}, {}, [True]])
def test_bad_settings_are_400(stack: McpStack, body: object) -> None:
    response = httpx.put(f"{stack.origin}/lab/settings", json=body, headers=stack.admin_headers())
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_health_names_the_part(stack: McpStack) -> None:
    body = httpx.get(f"{stack.origin}/healthz").json()
    assert (body["status"], body["part"]) == ("ok", "mcpserver")


def test_policy_version_names_the_mcp_domains_copy_it_decides_with(stack: McpStack) -> None:
    response = httpx.get(f"{stack.origin}/healthz/policy")
    assert response.status_code == 200
    held = response.json()
    assert (held["part"], held["domain"]) == ("mcpserver", "mcp")
    assert held["fetched_at"] is not None and held["age_s"] >= 0  # fetched for this answer
    asked = time.time()
    again = httpx.get(f"{stack.origin}/healthz/policy", headers={"Cache-Control": "max-age=0"})
    assert again.status_code == 200
    assert again.json()["fetched_at"] >= asked  # revalidated with the PDP for this answer
