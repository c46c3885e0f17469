"""MCP calls through the official SDK client, wrapped so synchronous callers can use them.

One short session per batch of calls: ``mcp.Client`` over ``streamable_http_client`` with an
``httpx2.AsyncClient`` that carries ``Authorization: Bearer`` and the recorder's hooks. A refusal
at the HTTP layer (401 without a valid token, 403 ``insufficient_scope``) and a tool error both
come back as a :class:`ToolResult` with ``is_error`` set: steps assert on them.
"""

from __future__ import annotations

import asyncio
import functools
import json
import ssl
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx2
from mcp import Client
from mcp.client.extension import ClientExtension, advertise
from mcp.client.streamable_http import streamable_http_client

from lab.agent.recorder import Recorder
from lab.oauth.tokens import MCP_EXTENSION_ENTERPRISE_MANAGED_AUTHORIZATION

T = TypeVar("T")
TIMEOUT_S = 30.0


def client_extensions() -> list[ClientExtension]:
    """What the agent declares in ``initialize`` (``capabilities.extensions``): it gets its
    tokens the SEP-990 way, so it says so; the extension is active when the server says so too."""
    return [advertise(MCP_EXTENSION_ENTERPRISE_MANAGED_AUTHORIZATION)]


def mcp_session(http: httpx2.AsyncClient, url: str) -> Client:
    """One MCP session over Streamable HTTP, ``initialize`` first (no 2026 discover probe)."""
    return Client(
        streamable_http_client(url, http_client=http),
        mode="legacy",
        extensions=client_extensions(),
    )


@dataclass
class ToolResult:
    is_error: bool
    text: str
    data: Any = None
    name: str = ""
    arguments: dict[str, Any] | None = None
    http_status: int | None = None  # set when the MCP server refused at the HTTP layer


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]


def run_sync(factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion from sync code, even when an event loop is already running."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_await(factory))
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(_await(factory))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


async def _await(factory: Callable[[], Awaitable[T]]) -> T:
    return await factory()


class _RefusalWatcher:
    """Remembers the last HTTP error the MCP server sent: the SDK reports it only as a
    generic JSON-RPC error, but a learner needs the status and the RFC 6750 challenge."""

    def __init__(self) -> None:
        self.last: _Refusal | None = None

    async def on_response(self, response: httpx2.Response) -> None:
        if response.status_code < 400 or response.request.method != "POST":
            return  # a 405 on the optional GET stream or session DELETE is not a refusal
        await response.aread()
        self.last = _describe_http_refusal(response)


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One TLS context for every MCP client: building one per call costs ~25 ms."""
    return httpx2.create_ssl_context()


def _http_client(
    access_token: str | None, recorder: Recorder | None, watcher: _RefusalWatcher
) -> httpx2.AsyncClient:
    headers = {"Authorization": f"Bearer {access_token}"} if access_token else {}
    hooks: dict[str, list[Any]] = {"request": [], "response": []}
    if recorder is not None:
        for name, functions in recorder.async_hooks().items():
            hooks[name].extend(functions)
    hooks["response"].append(watcher.on_response)
    return httpx2.AsyncClient(
        headers=headers, event_hooks=hooks, timeout=TIMEOUT_S, verify=_tls_context()
    )


async def call_tools_async(
    url: str, access_token: str | None, calls: Sequence[ToolCall], recorder: Recorder | None = None
) -> list[ToolResult]:
    """Open one session and run the calls in order; a session failure fails every call."""
    results: list[ToolResult] = []
    watcher = _RefusalWatcher()
    try:
        async with (
            _http_client(access_token, recorder, watcher) as http,
            mcp_session(http, url) as client,
        ):
            for call in calls:
                watcher.last = None
                result = await client.call_tool(call.name, call.arguments)
                results.append(tool_result_of(call, result))
    except Exception as exc:  # noqa: BLE001 - transport and HTTP refusals become data
        failure = watcher.last or refusal_of(exc)
        results.extend(
            ToolResult(True, failure.text, None, call.name, call.arguments, failure.http_status)
            for call in calls[len(results) :]
        )
    return results


async def list_tools_async(
    url: str, access_token: str | None, recorder: Recorder | None = None
) -> list[dict[str, Any]]:
    """The server's tools as plain dicts: name, description, inputSchema."""
    async with (
        _http_client(access_token, recorder, _RefusalWatcher()) as http,
        mcp_session(http, url) as client,
    ):
        listing = await client.list_tools()
    return [
        {"name": tool.name, "description": tool.description or "", "inputSchema": tool.input_schema}
        for tool in listing.tools
    ]


def call_tools(
    url: str, access_token: str | None, calls: Sequence[ToolCall], recorder: Recorder | None = None
) -> list[ToolResult]:
    return run_sync(lambda: call_tools_async(url, access_token, calls, recorder))


def list_tools(
    url: str, access_token: str | None, recorder: Recorder | None = None
) -> list[dict[str, Any]]:
    return run_sync(lambda: list_tools_async(url, access_token, recorder))


def tool_result_of(call: ToolCall, result: Any) -> ToolResult:
    text = "\n".join(
        getattr(block, "text", "") for block in result.content if getattr(block, "text", None)
    )
    data = result.structured_content
    if data is None and text and not result.is_error:
        try:
            data = json.loads(text)
        except ValueError:
            data = None
    return ToolResult(bool(result.is_error), text, data, call.name, dict(call.arguments))


@dataclass(frozen=True)
class _Refusal:
    text: str
    http_status: int | None


def refusal_of(exc: BaseException) -> _Refusal:
    """Find the HTTP status error inside the SDK's (possibly grouped) exception and describe it."""
    for leaf in _leaves(exc):
        if isinstance(leaf, httpx2.HTTPStatusError):
            return _describe_http_refusal(leaf.response)
    leaf = next(iter(_leaves(exc)), exc)
    return _Refusal(f"MCP call failed: {leaf.__class__.__name__}: {leaf}", None)


def _describe_http_refusal(response: httpx2.Response) -> _Refusal:
    challenge = response.headers.get("www-authenticate", "")
    detail = _error_body_text(response)
    text = f"MCP server refused the request: HTTP {response.status_code}"
    if detail:
        text += f" {detail}"
    if challenge:
        text += f" (WWW-Authenticate: {challenge})"
    return _Refusal(text, response.status_code)


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        found: list[BaseException] = []
        for inner in exc.exceptions:
            found.extend(_leaves(inner))
        return found
    chained = exc.__cause__ or exc.__context__
    return [exc, *(_leaves(chained) if chained is not None and chained is not exc else [])]


def _error_body_text(response: httpx2.Response) -> str:
    try:
        body = response.json()
    except Exception:  # noqa: BLE001 - a non-JSON or unread body just has no detail
        return ""
    if isinstance(body, dict) and body.get("error"):
        description = body.get("error_description") or body.get("message") or ""
        return f"{body['error']}: {description}".rstrip(": ")
    return ""
