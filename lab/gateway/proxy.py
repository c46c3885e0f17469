"""The gateway's tools: the lab MCP server's tools, called with a token the chain keeps fresh.

Requests are served one at a time: the chain holds one user's tokens, and one request after the
other keeps the hop log readable (each request gets its own correlation id, which the PDP writes
into every audit record it makes for that request). A 401 from the MCP server drops the access
token and retries once with a renewed one; anything else that breaks the chain becomes a tool
error (``isError``) naming the link, so the AI client shows it instead of failing the session.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
from mcp.types import CallToolResult, TextContent, Tool

from lab.gateway.attach import Attachment, Wiring
from lab.gateway.chain import TokenKeeper
from lab.gateway.links import ChainBroken, tool_error_text
from lab.gateway.listing import SavedListing
from lab.gateway.threads import in_daemon_thread
from lab.gateway.upstream import McpRefused

log = logging.getLogger("lab.gateway")

T = TypeVar("T")
CORRELATION_PREFIX = "gw"
#: How long a request waits for the one before it (requests are served one at a time). Behind
#: a call the MCP server does not answer (it ends at the upstream's 30 s read timeout) the k-th
#: request waited k x 30 s; past this it is answered that the gateway is busy.
QUEUE_WAIT_S = 60.0
MAX_CORRELATION_LEN = 64  # the PDP keeps at most 64 characters of X-Correlation-Id


class CorrelationIds:
    """``gw-<client>-<launch>-<n>``: the marker that makes the gateway's calls findable in the
    PDP's audit (``lab audit --json``), per AI client and per launch."""

    def __init__(self, launch: str | None = None) -> None:
        self.launch = launch or secrets.token_hex(3)
        self.count = 0

    def next(self, client: str | None) -> str:
        self.count += 1
        name = "".join(c if c.isalnum() else "-" for c in (client or "client").lower())[:24]
        value = f"{CORRELATION_PREFIX}-{name}-{self.launch}-{self.count}"
        return value[:MAX_CORRELATION_LEN]


class Busy(ChainBroken):
    """The request before this one is still under way after ``queue_wait_s``."""

    def explain(self) -> str:
        return f"lab gateway: busy: {self.detail}"


class GatewayProxy:
    def __init__(
        self,
        attachment: Attachment,
        ids: CorrelationIds | None = None,
        saved: SavedListing | None = None,
        queue_wait_s: float = QUEUE_WAIT_S,
    ) -> None:
        self.attachment = attachment
        self.ids = ids or CorrelationIds()
        self.tools: list[Tool] | None = None  # the last listing, served while the chain is broken
        #: Where a gateway that finds its lab at each request keeps the listing across launches:
        #: with none listed yet and the chain broken, it lists those (or nothing) instead of an
        #: error; a tool call then names what is wrong.
        self.saved = saved
        self.listed_without_lab = False  # the client holds a listing the lab did not give
        self._lock = anyio.Lock()
        self.queue_wait_s = queue_wait_s

    @property
    def wiring(self) -> Wiring:
        """What the proxy holds for the lab it last reached (raises ChainBroken before that)."""
        wiring = self.attachment.wiring
        if wiring is None:
            raise self.attachment.check_running() or ChainBroken("lab", "not reached yet")
        return wiring

    async def list_tools(self, client: str | None = None) -> list[Tool]:
        """The MCP server's tools; the last good listing when the chain breaks after one."""

        async def listing(wiring: Wiring, token: str, headers: dict[str, str]) -> list[Tool]:
            return await wiring.upstream.list_tools(token, headers)

        try:
            tools = await self._with_token(client, listing)
        except ChainBroken as broken:
            if self.tools is not None:
                log.warning("tools/list: %s (serving the last listing)", broken.explain())
                return self.tools
            if self.saved is None:
                raise
            saved = await anyio.to_thread.run_sync(self.saved.load)
            self.listed_without_lab = True
            log.warning("tools/list: %s (serving %d saved tools)", broken.explain(), len(saved))
            return saved
        if self.saved is not None and tools != self.tools:
            await anyio.to_thread.run_sync(self.saved.save, tools)
        self.tools = tools
        return tools

    async def lab_came_up(self) -> bool:
        """True once, when the lab runs again after a listing was served without it: the client
        should list the tools again (``notifications/tools/list_changed``)."""
        if not self.listed_without_lab:
            return False
        if await anyio.to_thread.run_sync(self.attachment.check_running) is not None:
            return False
        self.listed_without_lab = False
        return True

    async def call_tool(
        self, name: str, arguments: dict[str, Any], client: str | None = None
    ) -> CallToolResult:
        async def call(
            wiring: Wiring, token: str, headers: dict[str, str]
        ) -> tuple[CallToolResult, TokenKeeper]:
            # The keeper of the lab this call reached, not of one a later request rewired to.
            return await wiring.upstream.call_tool(token, name, arguments, headers), wiring.keeper

        try:
            result, keeper = await self._with_token(client, call)
        except ChainBroken as broken:
            log.warning("tools/call %s: %s", name, broken.explain())
            return error_result(broken.explain())
        if not result.is_error:
            return result
        text = "\n".join(b.text for b in result.content if isinstance(b, TextContent))
        log.warning("tools/call %s: the MCP server answered a tool error: %s", name, text)
        named = tool_error_text(text, keeper.dropped_roles, keeper.subject)
        if named is None:
            return result
        return result.model_copy(update={"content": [TextContent(type="text", text=named)]})

    async def warm_up(self) -> None:
        """Run the chain once (at launch), so sign-in happens before the first tool call."""
        await self._with_token(None, _token_only)

    async def _with_token(
        self, client: str | None, call: Callable[[Wiring, str, dict[str, str]], Awaitable[T]]
    ) -> T:
        """``call`` with the lab found now, a fresh access token and the correlation headers;
        a 401 renews the token once. Waits at most ``queue_wait_s`` for the request before it
        (:class:`Busy` then: the request never reaches the MCP server)."""
        acquired = False
        with anyio.move_on_after(self.queue_wait_s):
            await self._lock.acquire()
            acquired = True
        if not acquired:
            raise Busy(
                "gateway",
                f"the request before this one has been under way for over "
                f"{self.queue_wait_s:.0f} s (a sign-in, or a call the MCP server has not "
                "answered yet); call again in a moment",
            )
        try:
            # Found at each request: the lab may have come up, gone down or restarted since.
            wiring = await anyio.to_thread.run_sync(self.attachment.current)
            headers = self._correlate(wiring, client)
            try:
                for attempt in (1, 2):
                    token = await in_daemon_thread(wiring.keeper.access_token)
                    try:
                        return await call(wiring, token, headers)
                    except McpRefused as refused:
                        if refused.status == 401 and attempt == 1:
                            wiring.keeper.drop_access_token()  # expired or revoked: renew once
                            continue
                        raise ChainBroken("mcp", refused.text, refused.status) from None
                raise AssertionError("unreachable")  # pragma: no cover - the loop returns
            except ChainBroken as broken:
                raise await self._lab_gone(broken) from None
            finally:
                wiring.hops.flush()
        finally:
            self._lock.release()

    async def _lab_gone(self, broken: ChainBroken) -> ChainBroken:
        """A link that got no answer at all because the lab went down names that instead.
        The look reads files: in a worker thread, never on the event loop."""
        if broken.status is not None:
            return broken
        return await anyio.to_thread.run_sync(self.attachment.check_running) or broken

    def _correlate(self, wiring: Wiring, client: str | None) -> dict[str, str]:
        cid = self.ids.next(client)
        wiring.agent.http.headers["X-Correlation-Id"] = cid
        return {"X-Correlation-Id": cid}


def error_result(text: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)


async def _token_only(wiring: Wiring, token: str, headers: dict[str, str]) -> None:
    """No call: the token alone (the warm-up's sign-in)."""
