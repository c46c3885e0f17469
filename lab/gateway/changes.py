"""Telling AI clients to list the tools again, on each transport and protocol era the SDK speaks.

A gateway that finds its lab at each request serves a listing the lab did not give while the lab
is down (:mod:`lab.gateway.listing`); once the lab answers, the client should list again. MCP
says so with ``notifications/tools/list_changed``, which a server may send only if it declared
``tools.listChanged``, and only where the client listens:

* handshake era (2025-06-18, 2025-11-25): on the session's standalone channel - over stdio the
  pipe; over Streamable HTTP the GET SSE stream the client opened (with none open, the SDK drops
  the notification: nothing else may carry it). Declared through ``NotificationOptions``.
* 2026-07-28: only on a ``subscriptions/listen`` stream the client opened (the SDK's
  :class:`~mcp.server.subscriptions.ListenHandler`, fed by a bus); the SDK declares
  ``listChanged`` exactly when ``subscriptions/listen`` is served, and drops a bare
  notification on the shared channel.

So both transports declare ``listChanged`` (a gateway attached to a fixed lab does not: its
listing never changes) and send it the way each client listens. The lab is watched every
:data:`WATCH_INTERVAL_S` while the gateway serves.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from mcp.server.lowlevel import NotificationOptions, Server
from mcp.server.models import InitializationOptions
from mcp.server.session import ServerSession
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, ToolsListChanged
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

log = logging.getLogger("lab.gateway")

WATCH_INTERVAL_S = 2.0
#: Handshake-era sessions remembered to be told (the oldest is forgotten past this: a client
#: that reconnects lists again anyway).
MAX_SESSIONS = 256
SEND_TIMEOUT_S = 5.0


class ToolChanges:
    """Who listed the tools, and how to tell each of them the listing changed."""

    def __init__(self) -> None:
        self.bus = InMemorySubscriptionBus()
        self.listen = ListenHandler(self.bus)
        self._sessions: OrderedDict[str, ServerSession] = OrderedDict()

    def listed(self, session: ServerSession, key: str) -> None:
        """A ``tools/list`` answered on ``session`` (``key``: its MCP session id, or the stdio
        pipe): a handshake-era one is told later on its standalone channel. A 2026-era one
        hears through its own ``subscriptions/listen`` stream, if it opened one."""
        if session.protocol_version in MODERN_PROTOCOL_VERSIONS:
            return
        self._sessions[key] = session
        self._sessions.move_to_end(key)
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)

    async def announce(self) -> None:
        await self.bus.publish(ToolsListChanged())
        for key, session in list(self._sessions.items()):
            try:
                # A session stuck on its way out must not hold up the others' notice.
                with anyio.fail_after(SEND_TIMEOUT_S):
                    await session.send_tool_list_changed()
            except Exception as exc:  # a session that ended: nobody left to tell
                log.debug("tools/list_changed not sent to %s: %s", key, exc)
                self._sessions.pop(key, None)

    async def watch(self, changed: Callable[[], Awaitable[bool]]) -> None:
        """Until cancelled: every :data:`WATCH_INTERVAL_S`, announce when ``changed()`` says."""
        while True:
            await anyio.sleep(WATCH_INTERVAL_S)
            if await changed():
                log.info("the lab is up: telling the clients to list the tools again")
                await self.announce()


class GatewayServer(Server[Any]):
    """The SDK's low-level server, declaring ``tools.listChanged`` on the handshake era when the
    gateway can change its listing. The Streamable HTTP session manager asks the server for its
    initialization options itself, so the declaration lives here, not at the call site."""

    def __init__(self, *args: Any, tools_change: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tools_change = tools_change

    def create_initialization_options(
        self,
        notification_options: NotificationOptions | None = None,
        experimental_capabilities: dict[str, dict[str, Any]] | None = None,
        extensions: dict[str, dict[str, Any]] | None = None,
    ) -> InitializationOptions:
        options = notification_options or NotificationOptions(tools_changed=self.tools_change)
        return super().create_initialization_options(options, experimental_capabilities, extensions)
