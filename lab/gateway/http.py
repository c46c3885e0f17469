"""The gateway over Streamable HTTP: a secret per-launch path, and a guard on Host and Origin.

No credentials are asked of the AI client, so three things keep others out: the socket is on
loopback (``settings.check_bind``); the MCP endpoint lives under an unguessable path made fresh at
each launch (``/<secret>/mcp``, 144 bits); and every request must name this gateway in ``Host``
and, when a browser sends one, in ``Origin`` — a web page that rebinds a DNS name to 127.0.0.1
(the MCP transport spec's DNS rebinding warning) meets 421 or 403 before any MCP code runs.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable
from typing import Any

from mcp.server.lowlevel import Server
from mcp.server.transport_security import (
    DEFAULT_MAX_REQUEST_BODY_SIZE,
    TransportSecuritySettings,
)
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from lab.gateway.settings import is_loopback
from lab.mcpserver.envelope import EnvelopeCheck

MCP_SUFFIX = "/mcp"


def new_secret() -> str:
    return secrets.token_urlsafe(18)


def mcp_path(secret: str) -> str:
    return f"/{secret}{MCP_SUFFIX}"


def url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def gateway_url(host: str, port: int, secret: str) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104 - shown, not bound
    return f"http://{url_host(shown)}:{port}{mcp_path(secret)}"


def allowed_hosts(host: str, port: int) -> list[str]:
    """``Host`` values that name this gateway: loopback names, plus the bind address."""
    names = ["127.0.0.1", "localhost", "[::1]"]
    if not is_loopback(host):
        names.append(url_host(host))
    return [f"{name}:{port}" for name in names]


def allowed_origins(host: str, port: int) -> list[str]:
    return [f"http://{name}" for name in allowed_hosts(host, port)]


class HostOriginGuard:
    """ASGI middleware: 421 for a foreign ``Host``, 403 for a foreign ``Origin``, before routing."""

    def __init__(
        self,
        app: ASGIApp,
        hosts: Iterable[str],
        origins: Iterable[str],
        any_host: bool = False,
    ) -> None:
        self.app = app
        self.hosts = frozenset(h.lower() for h in hosts)
        self.origins = frozenset(o.lower() for o in origins)
        self.any_host = any_host  # only for --allow-remote on a wildcard address

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refusal = self.refusal(Headers(scope=scope))
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def refusal(self, headers: Headers) -> Response | None:
        host = (headers.get("host") or "").lower()
        if not self.any_host and host not in self.hosts:
            return _refuse(421, "misdirected_request", f"Host {host!r} does not name this gateway")
        origin = headers.get("origin")
        if origin is not None and origin.lower() not in self.origins:
            return _refuse(403, "forbidden_origin", f"Origin {origin!r} may not call this gateway")
        return None


def _refuse(status: int, error: str, description: str) -> Response:
    body = {"error": error, "error_description": description[:300]}
    return Response(json.dumps(body), status_code=status, media_type="application/json")


def build_http_app(server: Server[Any], host: str, port: int, secret: str) -> ASGIApp:
    """The SDK's Streamable HTTP app under the secret path, wrapped in the Host/Origin guard."""
    hosts, origins = allowed_hosts(host, port), allowed_origins(host, port)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    app: Starlette = server.streamable_http_app(
        streamable_http_path=mcp_path(secret),
        # The SDK checks Host and Origin on its own route too (defence in depth).
        transport_security=TransportSecuritySettings(
            enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins
        ),
        host=host,
        custom_starlette_routes=[Route(f"/{secret}/healthz", healthz)],
    )
    wildcard = host in ("0.0.0.0", "::")  # noqa: S104 - compared, not bound
    # The JSON-RPC envelope checked as the lab's MCP server checks it: a malformed id is an
    # Invalid Request (-32600), not the SDK transport's empty 202 (lab.mcpserver.envelope).
    checked = EnvelopeCheck(app, mcp_path(secret), DEFAULT_MAX_REQUEST_BODY_SIZE)
    return HostOriginGuard(checked, hosts, origins, any_host=wildcard)
