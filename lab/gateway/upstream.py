"""The gateway's calls to the lab's MCP server, through the official SDK client.

Sessions are the agent's (:func:`lab.agent.mcp_client.mcp_session`): ``initialize`` declares the
SEP-990 extension, since the gateway gets its tokens the enterprise-managed way.

Results pass through unchanged (the tool list with annotations and schemas, each
``CallToolResult`` with its content blocks and structured content): the gateway re-lists the
server's tools as its own and only adds what the server cannot know, the state of the chain.
An HTTP refusal (401 without a valid token, 403 ``insufficient_scope``) is caught by a response
hook, because the SDK reports it only as a generic error, and raised as :class:`McpRefused` with
the status and the RFC 6750 challenge.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx2
from mcp.types import CallToolResult, Tool

from lab.agent.mcp_client import mcp_session, refusal_of, tls_context
from lab.agent.recorder import Recorder

TIMEOUT_S = 30.0


class McpRefused(Exception):
    """The MCP server refused at the HTTP layer, or could not be reached (``status`` None)."""

    def __init__(self, text: str, status: int | None) -> None:
        super().__init__(text)
        self.text = text
        self.status = status


class _RefusalHook:
    def __init__(self) -> None:
        self.refusal: McpRefused | None = None

    async def __call__(self, response: httpx2.Response) -> None:
        if response.status_code < 400 or response.request.method != "POST":
            return  # a 405 on the optional GET stream or the session DELETE is no refusal
        await response.aread()
        self.refusal = McpRefused(_describe(response), response.status_code)


def _describe(response: httpx2.Response) -> str:
    text = f"MCP server refused the request: HTTP {response.status_code}"
    try:
        body = response.json()
    except Exception:  # noqa: BLE001 - a non-JSON body has no detail to add
        body = None
    if isinstance(body, dict) and body.get("error"):
        description = body.get("error_description") or body.get("message") or ""
        text += f" {body['error']}: {description}".rstrip(": ")
    challenge = response.headers.get("www-authenticate")
    if challenge:
        text += f" (WWW-Authenticate: {challenge})"
    return text


class Upstream:
    """One short SDK session per request to ``url`` with ``Authorization: Bearer``."""

    def __init__(
        self, url: str, recorder: Recorder | None = None, headers: Mapping[str, str] | None = None
    ) -> None:
        self.url = url
        self.recorder = recorder
        self.headers = dict(headers or {})

    def _http(self, token: str, extra: Mapping[str, str], hook: _RefusalHook) -> httpx2.AsyncClient:
        hooks: dict[str, list[Any]] = {"request": [], "response": []}
        if self.recorder is not None:
            for name, functions in self.recorder.async_hooks().items():
                hooks[name].extend(functions)
        hooks["response"].append(hook)
        headers = {**self.headers, **extra, "Authorization": f"Bearer {token}"}
        return httpx2.AsyncClient(
            headers=headers, event_hooks=hooks, timeout=TIMEOUT_S, verify=tls_context()
        )

    async def list_tools(self, token: str, headers: Mapping[str, str] | None = None) -> list[Tool]:
        hook = _RefusalHook()
        try:
            async with (
                self._http(token, headers or {}, hook) as http,
                mcp_session(http, self.url) as client,
            ):
                return list((await client.list_tools()).tools)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a named refusal
            raise _refusal(hook, exc) from None

    async def call_tool(
        self,
        token: str,
        name: str,
        arguments: dict[str, Any],
        headers: Mapping[str, str] | None = None,
    ) -> CallToolResult:
        hook = _RefusalHook()
        try:
            async with (
                self._http(token, headers or {}, hook) as http,
                mcp_session(http, self.url) as client,
            ):
                return await client.call_tool(name, arguments)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a named refusal
            raise _refusal(hook, exc) from None


def _refusal(hook: _RefusalHook, exc: BaseException) -> McpRefused:
    if hook.refusal is not None:
        return hook.refusal
    found = refusal_of(exc)
    return McpRefused(found.text, found.http_status)
