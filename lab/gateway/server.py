"""The gateway as an MCP server (the official SDK's low-level ``Server``).

The low-level server, not ``MCPServer``, because the tools are not Python functions here: they
are the lab MCP server's tools, listed and called through (their schemas and annotations passed
on unchanged). The same server object runs over stdio and Streamable HTTP.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPError
from mcp.types import (
    INTERNAL_ERROR,
    CallToolRequestParams,
    CallToolResult,
    ListToolsResult,
    PaginatedRequestParams,
)

from lab.gateway.changes import GatewayServer, ToolChanges
from lab.gateway.links import ChainBroken
from lab.gateway.proxy import GatewayProxy

NAME = "idjag-lab-gateway"
INSTRUCTIONS = (
    "The ID-JAG lab's AI Client Gateway. Its tools are the lab MCP server's document tools, "
    "called on behalf of the signed-in user with an access token obtained through an ID-JAG. "
    "When a link of that chain is missing, a tool answers with an error naming it "
    "(F1 no token, F2 membership missing, F3 delegation not granted): report it verbatim."
)


def package_version() -> str:
    try:
        return version("idjag-lab")
    except PackageNotFoundError:
        return "0"


def client_name(ctx: Any) -> str | None:
    """The AI client's name from its ``initialize`` (``clientInfo.name``), when it sent one."""
    params = getattr(getattr(ctx, "session", None), "client_params", None)
    info = getattr(params, "client_info", None)
    name = getattr(info, "name", None)
    return str(name) if name else None


def session_key(ctx: Any) -> str:
    """Which client session a request came on: its ``Mcp-Session-Id`` over Streamable HTTP,
    the one pipe over stdio."""
    request = getattr(ctx, "request", None)
    headers = getattr(request, "headers", None)
    return str(headers.get("mcp-session-id") or "http") if headers is not None else "stdio"


def build_server(proxy: GatewayProxy, changes: ToolChanges | None = None) -> Server[Any]:
    """The gateway's MCP server; with ``changes`` (a gateway that finds its lab at each
    request) it declares ``tools.listChanged`` and serves ``subscriptions/listen``."""

    async def list_tools(ctx: Any, params: PaginatedRequestParams | None) -> ListToolsResult:
        try:
            tools = await proxy.list_tools(client_name(ctx))
        except ChainBroken as broken:
            # Nothing to list yet: a JSON-RPC error is the only answer tools/list has.
            raise MCPError(INTERNAL_ERROR, broken.explain()) from None
        if changes is not None:
            changes.listed(ctx.session, session_key(ctx))
        return ListToolsResult(tools=tools)

    async def call_tool(ctx: Any, params: CallToolRequestParams) -> CallToolResult:
        return await proxy.call_tool(params.name, dict(params.arguments or {}), client_name(ctx))

    return GatewayServer(
        NAME,
        version=package_version(),
        title="ID-JAG lab gateway",
        instructions=INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_subscriptions_listen=changes.listen if changes is not None else None,
        tools_change=changes is not None,
    )
