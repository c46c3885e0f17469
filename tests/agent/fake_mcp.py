"""A small MCP server for the agent's unit tests: the lab's four tool names, one fixed token.

It stands in for the real MCP server so the agent's client, planner and recorder are proven
without the PDP; the end-to-end tests use the real parts.
"""

from __future__ import annotations

from typing import Any

from mcp.server import MCPServer
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import AnyHttpUrl
from starlette.applications import Starlette

GOOD_TOKEN = "fake.agent-token.sig"


class StaticVerifier:
    async def verify_token(self, token: str) -> AccessToken | None:
        if token != GOOD_TOKEN:
            return None
        return AccessToken(
            token=token, client_id="ai.agent", scopes=[], subject="human.idjag-learner"
        )


def create_fake_mcp_app(resource_url: str, issuer: str = "http://127.0.0.1:1/zts/v1") -> Starlette:
    mcp = MCPServer(
        "fake-docs",
        token_verifier=StaticVerifier(),
        auth=AuthSettings(
            issuer_url=AnyHttpUrl(issuer),
            resource_server_url=AnyHttpUrl(resource_url),
            validate_token_resource=False,
        ),
    )
    docs: dict[int, dict[str, Any]] = {
        1: {"id": 1, "name": "first default doc", "content": "hello world"},
        2: {"id": 2, "name": "second default doc", "content": "how are you?"},
    }

    def caller() -> str | None:
        token = get_access_token()
        return token.subject if token else None

    @mcp.tool()
    async def list_docs() -> dict[str, Any]:
        """List every document."""
        return {"docs": list(docs.values()), "caller": caller()}

    @mcp.tool()
    async def get_doc(id: int) -> dict[str, Any]:  # noqa: A002
        """Read one document by id."""
        if id not in docs:
            raise ToolError(f"no document {id}")
        return {"doc": docs[id], "caller": caller()}

    @mcp.tool()
    async def create_doc(name: str, content: str) -> dict[str, Any]:
        """Create a document."""
        new_id = max(docs) + 1
        docs[new_id] = {"id": new_id, "name": name, "content": content}
        return {"doc": docs[new_id], "caller": caller()}

    @mcp.tool()
    async def delete_doc(id: int) -> dict[str, Any]:  # noqa: A002
        """Delete a document by id."""
        if id not in docs:
            raise ToolError(f"no document {id}")
        return {"deleted": docs.pop(id), "caller": caller()}

    return mcp.streamable_http_app(stateless_http=True, json_response=True, host="127.0.0.1")
