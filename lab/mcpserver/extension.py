"""The MCP extension this server declares in ``initialize``: SEP-990 Enterprise-Managed
Authorization (``capabilities.extensions``). It contributes no tools or methods: it tells a
client that tokens for this server come from the enterprise flow (ID-JAG → jwt-bearer at the
authorization server in the RFC 9728 metadata); it is active only when the client declares it too.
"""

from __future__ import annotations

from mcp.server.extension import Extension

from lab.oauth.tokens import MCP_EXTENSION_ENTERPRISE_MANAGED_AUTHORIZATION


class EnterpriseManagedAuthorization(Extension):
    identifier = MCP_EXTENSION_ENTERPRISE_MANAGED_AUTHORIZATION
