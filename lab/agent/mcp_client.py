"""MCP calls through the official SDK client, wrapped so synchronous callers can use them.

Sessions: ``mcp.Client`` over ``streamable_http_client`` with an ``httpx2.AsyncClient`` that
carries the caller's ``Authorization: Bearer`` and the recorder's hooks. ``call_tools`` and
``list_tools`` run on one session per server kept by the process (``lab.agent.mcp_sessions``:
the token and the recording stay per call); ``call_tools_async`` opens one of its own. A refusal
at the HTTP layer (401 without a valid token, 403 ``insufficient_scope``) and a tool error both
come back as a :class:`ToolResult` with ``is_error`` set: steps assert on them.

What a session learns about a server outlives the session, as the SDK allows (its
``prior_discover`` and response-cache store): the first session to a URL negotiates the protocol
era (``mode="auto"``: ``server/discover``, falling back to ``initialize`` on a handshake-era
server) and later sessions to a modern server adopt that ``DiscoverResult`` without a probe, for
as long as its ``ttlMs`` says; a ``tools/list`` the server marks ``public`` with a ``ttlMs`` is
kept in one process-wide store, so ``call_tool``'s output-schema check needs no listing of its
own. A tool call is then one HTTP round trip.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import json
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx2
import mcp_types
from mcp import Client
from mcp.client.caching import CacheConfig, CacheEntry, CacheKey, InMemoryResponseCacheStore
from mcp.client.extension import ClientExtension, advertise
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from lab.agent.recorder import Recorder
from lab.oauth.tokens import MCP_EXTENSION_ENTERPRISE_MANAGED_AUTHORIZATION

T = TypeVar("T")
TIMEOUT_S = 30.0


def client_extensions() -> list[ClientExtension]:
    """What the agent declares in ``initialize`` (``capabilities.extensions``): it gets its
    tokens the SEP-990 way, so it says so; the extension is active when the server says so too."""
    return [advertise(MCP_EXTENSION_ENTERPRISE_MANAGED_AUTHORIZATION)]


#: How long a handshake-era verdict is trusted before probing again (such a server sends no TTL).
LEGACY_ERA_S = 60.0
#: Upper bound on a server's ``ttlMs`` for its ``DiscoverResult``.
MAX_ERA_S = 600.0
#: Bounded: one entry per MCP server URL this process talks to.
MAX_SERVERS = 64


class ServerEras:
    """Per MCP server URL: its ``DiscoverResult`` (modern) or ``None`` (handshake era), until
    the server's ``ttlMs`` (or :data:`LEGACY_ERA_S`) runs out. Thread-safe; bounded."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._known: dict[str, tuple[float, mcp_types.DiscoverResult | None]] = {}

    def get(self, url: str) -> tuple[bool, mcp_types.DiscoverResult | None]:
        """(known, result): ``known`` False means negotiate (``mode="auto"``)."""
        with self._lock:
            entry = self._known.get(url)
            if entry is None or entry[0] <= self._clock():
                self._known.pop(url, None)
                return False, None
            return True, entry[1]

    def remember(self, url: str, result: mcp_types.DiscoverResult | None) -> None:
        ttl_s = LEGACY_ERA_S if result is None else (result.ttl_ms or 0) / 1000
        lifetime = min(ttl_s, MAX_ERA_S)
        if lifetime <= 0:
            return  # the server says its answer is stale at once: probe every time
        with self._lock:
            if url not in self._known and len(self._known) >= MAX_SERVERS:
                self._known.pop(next(iter(self._known)))
            self._known[url] = (self._clock() + lifetime, result)

    def forget(self, url: str) -> None:
        with self._lock:
            self._known.pop(url, None)


#: What this process knows about each MCP server's protocol era.
ERAS = ServerEras()

#: Until when (epoch seconds, the SDK cache's clock) the listing last served or stored in this
#: task stays the one the store serves; set by :class:`ListingStore`.
_SERVED_UNTIL: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "lab_mcp_listing_served_until", default=None
)


class ListingStore(InMemoryResponseCacheStore):
    """The SDK's in-memory response-cache store, which also says until when the listing it
    served (or stored) stays fresh, and counts evictions (a server's ``list_changed``).

    A kept session that has absorbed a listing needs no other until then: the SDK's
    ``list_tools`` would serve the same entry again, as a deep copy (0.1 ms per tool call)."""

    def __init__(self, max_entries: int) -> None:
        super().__init__(max_entries=max_entries)
        self.evictions = 0

    async def get(self, key: CacheKey) -> CacheEntry | None:
        entry = await super().get(key)
        if entry is not None and entry.expires_at is not None and entry.expires_at > time.time():
            _SERVED_UNTIL.set(entry.expires_at)  # what the cache serves (it checks the same)
        return entry

    async def set(self, key: CacheKey, entry: CacheEntry) -> None:
        await super().set(key, entry)
        _SERVED_UNTIL.set(entry.expires_at)

    async def delete(self, key: CacheKey) -> None:
        # The SDK also deletes the other scope's (absent) key before each store: not an eviction.
        if await super().get(key) is not None:
            self.evictions += 1
        await super().delete(key)

    async def clear(self) -> None:
        self.evictions += 1
        await super().clear()


#: ``tools/list`` results the server marked ``public`` (SEP-2549), shared by every session of
#: this process; private entries stay per partition and are never shared.
LISTINGS = ListingStore(max_entries=256)


@dataclass(frozen=True)
class Listed:
    """A session's listing: current while the store would serve the same entry."""

    until: float | None
    evictions: int

    def current(self) -> bool:
        return (
            self.until is not None
            and time.time() < self.until
            and LISTINGS.evictions == self.evictions
        )


async def list_for_calls(client: Client) -> Listed:
    """The listing ``call_tool`` checks structured output against (its session absorbs it):
    from the shared store while the server's ``ttlMs`` lasts, else one ``tools/list``."""
    evictions = LISTINGS.evictions
    _SERVED_UNTIL.set(None)
    await client.list_tools()
    return Listed(_SERVED_UNTIL.get(), evictions)


def mcp_session(http: httpx2.AsyncClient, url: str, eras: ServerEras | None = None) -> Client:
    """One MCP session over Streamable HTTP: the era as last negotiated with ``url`` (no probe),
    else ``mode="auto"`` (``server/discover``, then ``initialize`` on a handshake-era server)."""
    known, discovered = (eras or ERAS).get(url)
    mode: Any = "auto"
    if known:
        mode = "legacy" if discovered is None else discovered.supported_versions[-1]
    return Client(
        streamable_http_client(url, http_client=http),
        mode=mode,
        prior_discover=discovered,
        extensions=client_extensions(),
        cache=CacheConfig(store=LISTINGS, partition="lab-agent", target_id=url, share_public=True),
    )


def learn_era(client: Client, url: str, eras: ServerEras | None = None) -> None:
    """Remember what this session negotiated (only after a probe: an adopted era is kept as is)."""
    if client.mode != "auto":
        return
    session = client.session
    (eras or ERAS).remember(url, session.discover_result)


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
        return asyncio.run(await_made(factory))
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(await_made(factory))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


async def await_made(factory: Callable[[], Awaitable[T]]) -> T:
    """Make and await a coroutine: runs it on the loop it is handed to."""
    return await factory()


class RefusalWatcher:
    """Remembers the last HTTP error the MCP server sent: the SDK reports it only as a
    generic JSON-RPC error, but a learner needs the status and the RFC 6750 challenge."""

    def __init__(self) -> None:
        self.last: Refusal | None = None

    async def on_response(self, response: httpx2.Response) -> None:
        if response.status_code < 400 or response.request.method != "POST":
            return  # a 405 on the optional GET stream or session DELETE is not a refusal
        await response.aread()
        self.last = _describe_http_refusal(response)


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One TLS context for every MCP client (the gateway's too): building one loads the CA
    bundle, ~25 ms of CPU per client, 70 ms on a busy machine."""
    return httpx2.create_ssl_context()


def _http_client(
    access_token: str | None, recorder: Recorder | None, watcher: RefusalWatcher
) -> httpx2.AsyncClient:
    headers = {"Authorization": f"Bearer {access_token}"} if access_token else {}
    hooks: dict[str, list[Any]] = {"request": [], "response": []}
    if recorder is not None:
        for name, functions in recorder.async_hooks().items():
            hooks[name].extend(functions)
    hooks["response"].append(watcher.on_response)
    return httpx2.AsyncClient(
        headers=headers, event_hooks=hooks, timeout=TIMEOUT_S, verify=tls_context()
    )


async def run_calls(
    client: Client, calls: Sequence[ToolCall], watcher: RefusalWatcher, results: list[ToolResult]
) -> None:
    """Run the calls in order on an open session, appending each result as it comes. The
    caller lists first (:func:`list_for_calls`) unless the session holds a current listing."""
    for call in calls:
        watcher.last = None
        result = await client.call_tool(call.name, call.arguments)
        results.append(tool_result_of(call, result))


def failed_calls(
    url: str, exc: BaseException, watcher: RefusalWatcher, calls: Sequence[ToolCall]
) -> list[ToolResult]:
    """The calls a session failure left unanswered, each saying why (the HTTP refusal the
    watcher saw, else the failure itself)."""
    if watcher.last is None and _era_may_be_stale(exc):
        ERAS.forget(url)  # the server may have changed under us: negotiate next time
    failure = watcher.last or refusal_of(exc)
    return [
        ToolResult(True, failure.text, None, call.name, call.arguments, failure.http_status)
        for call in calls
    ]


async def call_tools_async(
    url: str, access_token: str | None, calls: Sequence[ToolCall], recorder: Recorder | None = None
) -> list[ToolResult]:
    """Open one session of its own and run the calls in order; a session failure fails every
    call not yet answered."""
    results: list[ToolResult] = []
    watcher = RefusalWatcher()
    try:
        async with (
            _http_client(access_token, recorder, watcher) as http,
            mcp_session(http, url) as client,
        ):
            learn_era(client, url)
            await list_for_calls(client)
            await run_calls(client, calls, watcher, results)
    except Exception as exc:  # noqa: BLE001 - transport and HTTP refusals become data
        results.extend(failed_calls(url, exc, watcher, calls[len(results) :]))
    return results


async def list_tools_async(
    url: str, access_token: str | None, recorder: Recorder | None = None
) -> list[dict[str, Any]]:
    """The server's tools as plain dicts: name, description, inputSchema."""
    async with (
        _http_client(access_token, recorder, RefusalWatcher()) as http,
        mcp_session(http, url) as client,
    ):
        listing = await client.list_tools()
    return tools_as_dicts(listing)


def tools_as_dicts(listing: mcp_types.ListToolsResult) -> list[dict[str, Any]]:
    return [
        {"name": tool.name, "description": tool.description or "", "inputSchema": tool.input_schema}
        for tool in listing.tools
    ]


def call_tools(
    url: str, access_token: str | None, calls: Sequence[ToolCall], recorder: Recorder | None = None
) -> list[ToolResult]:
    """Run the calls in order on this process's session to ``url`` (``mcp_sessions``), with
    this caller's token; a session failure fails every call not yet answered."""
    from lab.agent.mcp_sessions import SESSIONS

    return SESSIONS.call_tools(url, access_token, calls, recorder)


def list_tools(
    url: str, access_token: str | None, recorder: Recorder | None = None
) -> list[dict[str, Any]]:
    from lab.agent.mcp_sessions import SESSIONS

    return SESSIONS.list_tools(url, access_token, recorder)


def _era_may_be_stale(exc: BaseException) -> bool:
    """A JSON-RPC error (not an HTTP refusal, which the watcher saw) can mean the server at this
    URL no longer speaks the era we adopted."""
    return any(isinstance(leaf, MCPError) for leaf in _leaves(exc))


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
class Refusal:
    text: str
    http_status: int | None


def refusal_of(exc: BaseException) -> Refusal:
    """Find the HTTP status error inside the SDK's (possibly grouped) exception and describe it."""
    for leaf in _leaves(exc):
        if isinstance(leaf, httpx2.HTTPStatusError):
            return _describe_http_refusal(leaf.response)
    leaf = next(iter(_leaves(exc)), exc)
    return Refusal(f"MCP call failed: {leaf.__class__.__name__}: {leaf}", None)


def _describe_http_refusal(response: httpx2.Response) -> Refusal:
    challenge = response.headers.get("www-authenticate", "")
    detail = _error_body_text(response)
    text = f"MCP server refused the request: HTTP {response.status_code}"
    if detail:
        text += f" {detail}"
    if challenge:
        text += f" (WWW-Authenticate: {challenge})"
    return Refusal(text, response.status_code)


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
