"""Who may drive the lab from a browser: loopback pages of this server holding the launch token.

The page is on loopback, but any other page the learner opens can send requests to loopback
(CSRF) or re-point its own name at 127.0.0.1 (DNS rebinding). So: the Host header must be a
loopback name (:class:`lab.oauth.starlette.HostCheck`), a request carrying a foreign ``Origin``
is refused, and anything that changes the lab (POST) needs the per-launch token, which only
someone who saw ``lab ui``'s output has. Reading is open to this machine's own pages.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any
from urllib.parse import urlsplit

from starlette.responses import JSONResponse

from lab.oauth.starlette import HostCheck

TOKEN_HEADER = "x-lab-ui-token"


def new_token() -> str:
    return secrets.token_urlsafe(24)


def token_matches(presented: str | None, token: str) -> bool:
    # Compared as bytes: ``compare_digest`` raises on a str with non-ASCII characters, and a
    # header value is latin-1 text (obs-text, RFC 9110 §5.5), so ``\xff`` would be a 500.
    if not presented:
        return False
    return hmac.compare_digest(str(presented).encode("utf-8"), token.encode("utf-8"))


def origin_is_local(origin: str) -> bool:
    """``Origin`` of a page served by a loopback host (any port: the learner's own tools)."""
    if origin == "null":
        return False  # sandboxed frames and file:// pages
    try:
        parts = urlsplit(origin)
        host, _ = (parts.hostname or "").lower(), parts.port  # .port checks the port's range
    except ValueError:  # "http://[::1", a port past 65535: no origin a browser sends
        return False
    return host in ("127.0.0.1", "localhost", "::1")


class OriginCheck:
    """ASGI middleware: refuse requests whose ``Origin`` is not a loopback page (403)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = dict(scope.get("headers") or [])
            origin = headers.get(b"origin", b"").decode("latin-1")
            site = headers.get(b"sec-fetch-site", b"").decode("latin-1")
            if (origin and not origin_is_local(origin)) or site == "cross-site":
                response = JSONResponse(
                    {
                        "error": "forbidden",
                        "error_description": "requests from other sites may not use the lab view",
                    },
                    status_code=403,
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


__all__ = ["HostCheck", "OriginCheck", "TOKEN_HEADER", "new_token", "token_matches"]
