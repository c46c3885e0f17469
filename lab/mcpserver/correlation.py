"""The caller's ``X-Correlation-Id``, carried from the HTTP request into the tool's exchange.

The PDP writes the id a token request carries into every audit record it makes for it. Passing
the caller's id on with the MCP server's own RFC 8693 exchange puts the whole chain of one call
under one id in ``lab audit`` — how the AI Client Gateway's calls (``gw-…``) stay findable end to
end (issue #18). The id is a label, never a credential: anything not a short printable value is
dropped.
"""

from __future__ import annotations

import contextvars

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from lab.oauth.text import correlation_label

HEADER = "X-Correlation-Id"

_current: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "correlation_id", default=None
)


def current_correlation_id() -> str | None:
    return _current.get()


class CorrelationContext:
    """ASGI middleware: the request's correlation id, readable by tools while it is served."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = _current.set(correlation_label(Headers(scope=scope).get(HEADER)))
        try:
            await self.app(scope, receive, send)
        finally:
            _current.reset(token)
