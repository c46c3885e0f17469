"""The MCP server carries the caller's X-Correlation-Id into its own exchange at the PDP."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from lab.mcpserver.correlation import CorrelationContext, current_correlation_id
from lab.oauth.text import correlation_label


@pytest.mark.parametrize(
    ("raw", "kept"),
    [
        ("gw-claude-code-1f0c2a-3", "gw-claude-code-1f0c2a-3"),
        ("  abc.DEF:1_2  ", "abc.DEF:1_2"),
        ("x" * 80, "x" * 64),
        ("evil\r\nX-Injected: 1", None),
        ("has space", None),
        ("", None),
        (None, None),
    ],
)
def test_only_short_printable_ids_are_kept(raw: str | None, kept: str | None) -> None:
    assert correlation_label(raw) == kept


async def test_the_id_is_visible_while_the_request_is_served_and_gone_after() -> None:
    async def seen(request: Request) -> JSONResponse:
        return JSONResponse({"id": current_correlation_id()})

    app = CorrelationContext(Starlette(routes=[Route("/", seen)]))
    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        marked = await client.get("/", headers={"X-Correlation-Id": "gw-test-1"})
        plain = await client.get("/")
    assert marked.json() == {"id": "gw-test-1"}
    assert plain.json() == {"id": None}
    assert current_correlation_id() is None
