"""The agent finds its token endpoint from the MCP server's URL (RFC 9728 → RFC 8414).

A stand-in server puts every document somewhere no default path would guess, so only real
discovery finds them; then the real lab, where the MCP server points at the PDP.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lab.agent.discovery import (
    DiscoveryError,
    authorization_server_metadata_urls,
    discover,
    parse_bearer_challenge,
    protected_resource_metadata_urls,
)
from tests.agent.labsetup import RunningLab


def unusual_server(
    base: str, *, prm_in_challenge: bool = True, issuer_suffix: str = ""
) -> Starlette:
    """MCP at /x/mcp; PRM at a custom URL named only by the 401; AS issuer with a path."""
    issuer = f"{base}/tenant1"

    async def mcp(request: Request) -> Response:
        challenge = 'Bearer scope="docs:read"'
        if prm_in_challenge:
            challenge += f', resource_metadata="{base}/custom/prm.json"'
        return JSONResponse({"error": "invalid_token"}, 401, {"WWW-Authenticate": challenge})

    async def prm(request: Request) -> Response:
        return JSONResponse(
            {
                "resource": f"{base}/x/mcp",
                "authorization_servers": [issuer],
                "scopes_supported": ["docs:read", "docs:write"],
            }
        )

    async def as_metadata(request: Request) -> Response:
        return JSONResponse(
            {
                "issuer": issuer + issuer_suffix,
                "token_endpoint": f"{base}/tenant1/oauth/tok",
                "token_endpoint_auth_methods_supported": ["client_secret_post"],
            }
        )

    return Starlette(
        routes=[
            Route("/x/mcp", mcp, methods=["POST"]),
            Route("/custom/prm.json", prm),
            Route("/.well-known/oauth-protected-resource/x/mcp", prm),
            Route("/.well-known/oauth-authorization-server/tenant1", as_metadata),
        ]
    )


@pytest.fixture
def base_url(reserved_sockets: dict[str, socket.socket]) -> str:
    return f"http://127.0.0.1:{reserved_sockets['mcp'].getsockname()[1]}"


def test_discovery_follows_the_challenge_to_metadata_at_unusual_paths(
    base_url: str, reserved_sockets: dict[str, socket.socket], serve: Callable[..., str]
) -> None:
    serve(unusual_server(base_url), reserved_sockets["mcp"])
    with httpx.Client() as http:
        found = discover(http, f"{base_url}/x/mcp")
    assert found.resource_metadata_url == f"{base_url}/custom/prm.json"
    assert found.resource == f"{base_url}/x/mcp"
    server = found.authorization_server
    assert (server.issuer, server.token_endpoint) == (
        f"{base_url}/tenant1",
        f"{base_url}/tenant1/oauth/tok",
    )
    assert server.auth_methods == ("client_secret_post",)
    assert found.scope_hint == "docs:read"  # the challenge's scope wins over scopes_supported


def test_discovery_falls_back_to_the_path_inserted_well_known_uri(
    base_url: str, reserved_sockets: dict[str, socket.socket], serve: Callable[..., str]
) -> None:
    serve(unusual_server(base_url, prm_in_challenge=False), reserved_sockets["mcp"])
    with httpx.Client() as http:
        found = discover(http, f"{base_url}/x/mcp")
    assert found.resource_metadata_url == f"{base_url}/.well-known/oauth-protected-resource/x/mcp"


def test_discovery_refuses_metadata_naming_another_issuer(
    base_url: str, reserved_sockets: dict[str, socket.socket], serve: Callable[..., str]
) -> None:
    serve(unusual_server(base_url, issuer_suffix="-evil"), reserved_sockets["mcp"])
    with httpx.Client() as http, pytest.raises(DiscoveryError, match="RFC 8414 §3.3"):
        discover(http, f"{base_url}/x/mcp")


def test_discovery_refuses_an_authorization_server_the_client_is_not_provisioned_for(
    base_url: str, reserved_sockets: dict[str, socket.socket], serve: Callable[..., str]
) -> None:
    serve(unusual_server(base_url), reserved_sockets["mcp"])
    with httpx.Client() as http, pytest.raises(DiscoveryError, match="not the one this client"):
        discover(http, f"{base_url}/x/mcp", issuer="http://127.0.0.1:1/other")


def test_well_known_uris_insert_the_path_as_rfc_9728_and_rfc_8414_say() -> None:
    assert protected_resource_metadata_urls("http://h:1/mcp") == [
        "http://h:1/.well-known/oauth-protected-resource/mcp",
        "http://h:1/.well-known/oauth-protected-resource",
    ]
    assert authorization_server_metadata_urls("http://h:1/zts/v1")[0] == (
        "http://h:1/.well-known/oauth-authorization-server/zts/v1"
    )
    assert authorization_server_metadata_urls("http://h:1") == [
        "http://h:1/.well-known/oauth-authorization-server",
        "http://h:1/.well-known/openid-configuration",
    ]


def test_bearer_challenge_parameters_are_read_quoted_or_not() -> None:
    params = parse_bearer_challenge(
        'Bearer error="insufficient_scope", scope="a b", resource_metadata=http://h/prm'
    )
    assert params == {
        "error": "insufficient_scope",
        "scope": "a b",
        "resource_metadata": "http://h/prm",
    }
    assert parse_bearer_challenge('Basic realm="x"') == {}


def test_the_lab_mcp_server_leads_the_agent_to_the_pdp_token_endpoint(
    running_lab: RunningLab,
) -> None:
    endpoints = running_lab.endpoints
    with httpx.Client() as http:
        found = discover(http, endpoints.mcp)
    assert found.challenge is not None and found.challenge.status == 401
    assert found.resource == endpoints.mcp
    server = found.authorization_server
    assert server.issuer == endpoints.zts
    assert server.token_endpoint == endpoints.zts_token
    assert "private_key_jwt" in server.auth_methods
