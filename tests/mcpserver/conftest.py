from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult

from lab.config import ADMIN_PRINCIPAL, Settings
from lab.docapi.app import create_app as create_docapi
from lab.mcpserver.app import create_app as create_mcp
from lab.oauth.admin import make_admin_assertion
from lab.oauth.jose import SigningKey
from tests.docapi.zts_standin import ZtsStandIn


@dataclass
class McpStack:
    mcp_url: str
    origin: str
    docapi: str
    zts: ZtsStandIn
    admin_key: SigningKey

    def admin_headers(self) -> dict[str, str]:
        return {
            "Authorization": "Bearer "
            + make_admin_assertion(ADMIN_PRINCIPAL, self.admin_key, self.origin)
        }


async def call_tool(
    url: str, token: str | None, name: str, arguments: dict[str, Any] | None = None
) -> CallToolResult:
    """One MCP session with the SDK's own client, bearer token on every HTTP request."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        return await client.call_tool(name, arguments or {})


def tool_text(result: CallToolResult) -> str:
    return "\n".join(getattr(block, "text", "") for block in result.content)


@pytest.fixture
def stack(
    lab_settings: Settings, reserved_sockets: dict[str, socket.socket], serve: Callable[..., str]
) -> McpStack:
    zts = ZtsStandIn(lab_settings)
    serve(zts.app(), reserved_sockets["zts"])
    admin_key = SigningKey.load_or_create(lab_settings.key_file(ADMIN_PRINCIPAL))
    docapi = serve(
        create_docapi(lab_settings, protected=True), reserved_sockets["docapi_protected"]
    )
    origin = serve(create_mcp(lab_settings), reserved_sockets["mcp"])
    return McpStack(
        mcp_url=f"{origin}/mcp", origin=origin, docapi=docapi, zts=zts, admin_key=admin_key
    )
