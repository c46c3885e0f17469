"""A stand-in MCP server whose era and tool list stay fresh (SEP-2549 hints, as the lab's own
server sends), so the agent keeps one session to it; it knows several users' tokens and keeps
an audit of which token each request carried, the way the real server's hops show whose token
it saw."""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from mcp.server import MCPServer
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.caching import CacheHint
from pydantic import AnyHttpUrl
from starlette.types import Receive, Scope, Send

#: token -> subject; every token carries the scope the server requires except WEAK's.
USERS = {"alice.token.sig": "human.alice", "bob.token.sig": "human.bob"}
WEAK_TOKEN = "weak.token.sig"  # a known user without the ``docs`` scope: 403 insufficient_scope
SCOPE = "docs"

ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass
class Audit:
    """What the server saw: per request, the bearer it carried (``None`` without one)."""

    bearers: list[str | None] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: Answer this many POSTs 404 (a server that no longer knows the session) before serving.
    lose_session: int = 0
    #: Seconds every POST waits before it is served (a server too slow for the caller).
    stall_s: float = 0.0
    #: How many times a tool actually ran (a call answered 404 never reached it).
    ran: int = 0


class Verifier:
    async def verify_token(self, token: str) -> AccessToken | None:
        if token in USERS:
            return AccessToken(
                token=token, client_id="ai.agent", scopes=[SCOPE], subject=USERS[token]
            )
        if token == WEAK_TOKEN:
            return AccessToken(token=token, client_id="ai.agent", scopes=[], subject="human.weak")
        return None


def create_kept_mcp_app(resource_url: str, audit: Audit) -> ASGIApp:
    mcp = MCPServer(
        "kept-docs",
        token_verifier=Verifier(),
        auth=AuthSettings(
            issuer_url=AnyHttpUrl("http://127.0.0.1:1/zts/v1"),
            resource_server_url=AnyHttpUrl(resource_url),
            validate_token_resource=False,
            required_scopes=[SCOPE],
        ),
        cache_hints={
            "server/discover": CacheHint(ttl_ms=60_000, scope="public"),
            "tools/list": CacheHint(ttl_ms=60_000, scope="public"),
        },
    )

    @mcp.tool()
    async def whoami(pause_s: float = 0.0) -> dict[str, Any]:
        """Say whose token this call carried (after an optional pause, to overlap calls)."""
        with audit.lock:
            audit.ran += 1
        await anyio.sleep(pause_s)
        token = get_access_token()
        return {"caller": token.subject if token else None}

    inner = mcp.streamable_http_app(stateless_http=True, json_response=True, host="127.0.0.1")

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            headers = dict(scope["headers"])
            auth = headers.get(b"authorization", b"").decode()
            with audit.lock:
                audit.bearers.append(auth.removeprefix("Bearer ") if auth else None)
                lost = audit.lose_session > 0
                audit.lose_session -= lost
            if lost:
                await send({"type": "http.response.start", "status": 404, "headers": []})
                await send({"type": "http.response.body", "body": b""})
                return
            await anyio.sleep(audit.stall_s)
        await inner(scope, receive, send)

    return app
