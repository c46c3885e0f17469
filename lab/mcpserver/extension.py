"""The MCP extension this server declares in ``initialize``: SEP-990 Enterprise-Managed
Authorization (``capabilities.extensions``). It contributes no tools or methods: it tells a
client that tokens for this server come from the enterprise flow (ID-JAG → jwt-bearer at the
authorization server in the RFC 9728 metadata); it is active only when the client declares it too.

The SDK advertises extensions from ``MCPServer(extensions=[...])``, but on a 2025-11-25
handshake its per-version sieve drops ``capabilities.extensions`` (the field entered the schema
in 2026-07-28). The extension spec asks for the declaration in ``initialize`` and the 2025-11-25
schema leaves capabilities open ("not a closed set"), so :func:`declare_in_legacy_initialize`
puts it back into that result — only that key, only for ``initialize``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mcp.server import MCPServer
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.extension import Extension

from lab.oauth.tokens import MCP_EXTENSION_ENTERPRISE_MANAGED_AUTHORIZATION


class EnterpriseManagedAuthorization(Extension):
    identifier = MCP_EXTENSION_ENTERPRISE_MANAGED_AUTHORIZATION


#: What ``create_app`` hands to ``MCPServer(extensions=...)`` (stateless, so shared).
SERVER_EXTENSIONS: tuple[Extension, ...] = (EnterpriseManagedAuthorization(),)


def declare_in_legacy_initialize(mcp: MCPServer, extensions: Sequence[Extension]) -> None:
    """Make every ``initialize`` result carry ``extensions``, whatever the protocol version."""
    declared = {e.identifier: e.settings() for e in extensions}

    async def middleware(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        result = await call_next(ctx)
        if ctx.method != "initialize" or not isinstance(result, dict) or not declared:
            return result
        capabilities = result.get("capabilities")
        if isinstance(capabilities, dict) and "extensions" not in capabilities:
            result = {**result, "capabilities": {**capabilities, "extensions": dict(declared)}}
        return result

    mcp.middleware.append(middleware)
