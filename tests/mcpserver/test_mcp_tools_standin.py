"""MCP tools against a ZTS stand-in: exchange, refusal surfacing, no token passthrough, access gate.

The same behaviours are checked against the real PDP in test_mcp_with_pdp.py.
"""

from __future__ import annotations

import httpx

from lab.config import Settings
from lab.oauth.jose import unverified_claims
from tests.mcpserver.conftest import McpStack, call_tool, tool_text

LEARNER = "human.idjag-learner"
MCP = "mcp.api-mcp"


def grant_reading(stack: McpStack) -> None:
    stack.zts.allow("api:role.docs-getter", "get")


async def test_list_docs_reaches_the_api_with_an_exchanged_token_not_the_received_one(
    stack: McpStack,
) -> None:
    grant_reading(stack)
    received = stack.zts.token(LEARNER, ["api:role.docs-getter"], aud=stack.mcp_url)
    result = await call_tool(stack.mcp_url, received, "list_docs")
    assert result.is_error is False
    data = result.structured_content
    assert data is not None
    assert [doc["id"] for doc in data["docs"]] == [1, 2]
    received_jti = unverified_claims(received)["jti"]
    assert data["received_token"]["jti"] == received_jti
    # What the document API saw (its own "caller") is the exchanged token, not the received one.
    assert data["caller"]["jti"] == data["exchanged_token"]["jti"] != received_jti
    assert data["caller"]["client_id"] == MCP
    assert data["caller"]["sub"] == LEARNER
    assert data["exchanged_token"]["act"] == {"sub": MCP}
    # The exchange asked for exactly the tool's role, with the received token as subject_token.
    form = stack.zts.exchange_forms[-1]
    assert form["subject_token"] == received
    assert form["scope"] == "api:role.docs-getter"
    assert form["audience"] == "api"
    assert form["grant_type"] == "urn:ietf:params:oauth:grant-type:token-exchange"


async def test_each_tool_exchanges_for_the_role_it_needs(stack: McpStack) -> None:
    stack.zts.allow("api:role.docs-poster", "post")
    stack.zts.allow("api:role.docs-deleter", "delete")
    grant_reading(stack)
    token = stack.zts.token(LEARNER, ["api:role.docs-getter"], aud=stack.mcp_url)
    created = await call_tool(
        stack.mcp_url, token, "create_doc", {"name": "via mcp", "content": "x"}
    )
    assert created.is_error is False
    assert created.structured_content["doc"]["name"] == "via mcp"
    assert stack.zts.exchange_forms[-1]["scope"] == "api:role.docs-poster"
    got = await call_tool(stack.mcp_url, token, "get_doc", {"id": 3})
    assert got.structured_content["doc"]["content"] == "x"
    deleted = await call_tool(stack.mcp_url, token, "delete_doc", {"id": 3})
    assert deleted.is_error is False
    assert stack.zts.exchange_forms[-1]["scope"] == "api:role.docs-deleter"


async def test_refused_exchange_is_a_tool_error_with_the_pdps_message_and_status(
    stack: McpStack,
) -> None:
    grant_reading(stack)
    stack.zts.exchange_allowed = False
    result = await call_tool(
        stack.mcp_url,
        stack.zts.token(LEARNER, ["api:role.docs-getter"], aud=stack.mcp_url),
        "list_docs",
    )
    assert result.is_error is True
    text = tool_text(result)
    assert "Principal not authorized for token impersonation from source domain" in text
    assert "HTTP 403" in text
    assert "zts.token_source_exchange" in text and "api:role.docs-getter" in text


async def test_document_api_refusal_is_a_tool_error_with_status_and_reason(stack: McpStack) -> None:
    # Exchange succeeds but no policy grants 'post' on api:docs.
    result = await call_tool(
        stack.mcp_url,
        stack.zts.token(LEARNER, ["api:role.docs-getter"], aud=stack.mcp_url),
        "create_doc",
        {"name": "n", "content": "c"},
    )
    assert result.is_error is True
    text = tool_text(result)
    assert "HTTP 403 insufficient_scope" in text
    assert "Token does not have 'post' action on 'api:docs'" in text


async def test_unknown_document_is_a_tool_error_not_a_crash(stack: McpStack) -> None:
    grant_reading(stack)
    result = await call_tool(
        stack.mcp_url,
        stack.zts.token(LEARNER, ["api:role.docs-getter"], aud=stack.mcp_url),
        "get_doc",
        {"id": 99},
    )
    assert result.is_error is True
    assert "HTTP 404" in tool_text(result)


def test_require_access_refuses_a_token_without_access_on_mcp_mcp(
    stack: McpStack, lab_settings: Settings
) -> None:
    grant_reading(stack)
    stack.zts.allow("mcp:role.mcp-accessor", "access", resource="mcp:mcp")
    httpx.put(
        f"{stack.origin}/lab/settings", json={"require_access": True}, headers=stack.admin_headers()
    )
    from tests.mcpserver.test_mcp_auth import INITIALIZE, MCP_HEADERS

    old = stack.zts.token(LEARNER, ["api:role.docs-getter"], aud=stack.mcp_url)
    refused = httpx.post(
        stack.mcp_url, json=INITIALIZE, headers={**MCP_HEADERS, "Authorization": f"Bearer {old}"}
    )
    assert refused.status_code == 403
    assert refused.json()["error"] == "insufficient_scope"
    assert "Token does not have 'access' action on 'mcp:mcp'" in refused.json()["error_description"]
    challenge = refused.headers["www-authenticate"]
    assert challenge.startswith('Bearer error="insufficient_scope"')
    # The MCP authorization spec: the challenge names the scope to step up to.
    assert 'scope="mcp:role.mcp-accessor api:role.docs-getter"' in challenge
    assert (
        f'resource_metadata="{stack.origin}/.well-known/oauth-protected-resource/mcp"' in challenge
    )

    both = stack.zts.token(
        LEARNER, ["api:role.docs-getter", "mcp-accessor"], aud=lab_settings.endpoints.mcp
    )
    allowed = httpx.post(
        stack.mcp_url, json=INITIALIZE, headers={**MCP_HEADERS, "Authorization": f"Bearer {both}"}
    )
    assert allowed.status_code == 200


async def test_tool_call_with_both_roles_succeeds_when_access_is_required(
    stack: McpStack, lab_settings: Settings
) -> None:
    grant_reading(stack)
    stack.zts.allow("mcp:role.mcp-accessor", "access", resource="mcp:mcp")
    httpx.put(
        f"{stack.origin}/lab/settings", json={"require_access": True}, headers=stack.admin_headers()
    )
    token = stack.zts.token(
        LEARNER, ["api:role.docs-getter", "mcp-accessor"], aud=lab_settings.endpoints.mcp
    )
    result = await call_tool(stack.mcp_url, token, "list_docs")
    assert result.is_error is False
    assert result.structured_content["received_token"]["aud"] == lab_settings.endpoints.mcp
    assert result.structured_content["caller"]["aud"] == "api"


async def test_the_four_document_tools_are_listed_with_their_arguments(stack: McpStack) -> None:
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    token = stack.zts.token(LEARNER, ["api:role.docs-getter"], aud=stack.mcp_url)
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as http,
        Client(streamable_http_client(stack.mcp_url, http_client=http)) as client,
    ):
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert set(tools) == {"list_docs", "get_doc", "create_doc", "delete_doc"}
    assert set(tools["create_doc"].input_schema["required"]) == {"name", "content"}
    assert tools["get_doc"].input_schema["properties"]["id"]["type"] == "integer"
    assert tools["delete_doc"].annotations is not None
    assert tools["delete_doc"].annotations.destructive_hint is True


async def test_bad_tool_arguments_are_tool_errors_and_trigger_no_exchange(stack: McpStack) -> None:
    token = stack.zts.token(LEARNER, ["api:role.docs-getter"], aud=stack.mcp_url)
    negative = await call_tool(stack.mcp_url, token, "get_doc", {"id": -1})
    assert negative.is_error is True
    assert "positive integer" in tool_text(negative)
    wrong_type = await call_tool(stack.mcp_url, token, "get_doc", {"id": "one"})
    assert wrong_type.is_error is True
    assert stack.zts.exchange_forms == []
