"""A request to the gateway waits a bounded time for the one before it.

The gateway serves requests one at a time (one user's tokens, a readable hop log). Found by an
outsider's battery (sixth session): behind a call the MCP server does not answer (accepted, never
answered: each such call ends only at the upstream's 30 s read timeout), every later request
queued without bound - the k-th waited k x 30 s, and a stdio client may have 32 in flight. Now a
request that cannot start within ``queue_wait_s`` is answered at once: a tool error saying the
gateway is busy and why, or, for ``tools/list``, the last listing. Shown failing with the wait
unbounded (the second call still waiting at the test's bound).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import anyio
from mcp.types import Tool

from lab.gateway.attach import Attachment, Wiring
from lab.gateway.proxy import GatewayProxy

TOOL = Tool(name="list_docs", input_schema={"type": "object"})
ANSWERED_S = 60.0  # far past queue_wait_s and any loaded machine's delay; short of for ever


class HungUpstream:
    """An MCP server that answers ``tools/list`` once, then accepts calls and never answers."""

    def __init__(self) -> None:
        self.calls = 0

    async def call_tool(self, *args: Any) -> Any:
        self.calls += 1
        await anyio.sleep_forever()

    async def list_tools(self, *args: Any) -> Any:
        if self.calls:
            await anyio.sleep_forever()
        return [TOOL]


def hung_proxy(upstream: HungUpstream, queue_wait_s: float) -> GatewayProxy:
    agent: Any = SimpleNamespace(http=SimpleNamespace(headers={}), close=lambda: None)
    keeper: Any = SimpleNamespace(access_token=lambda: "token", dropped_roles=[], subject="s")
    hops: Any = SimpleNamespace(flush=lambda: [])
    wiring = Wiring(agent, keeper, upstream, hops)  # type: ignore[arg-type]
    return GatewayProxy(Attachment.fixed(wiring), queue_wait_s=queue_wait_s)


def test_a_request_behind_an_unanswered_call_is_answered_busy_in_bounded_time() -> None:
    upstream = HungUpstream()
    proxy = hung_proxy(upstream, queue_wait_s=0.5)
    answers: dict[str, Any] = {}

    async def main() -> None:
        answers["listed"] = await proxy.list_tools()
        async with anyio.create_task_group() as group:
            group.start_soon(proxy.call_tool, "list_docs", {})  # never answered
            with anyio.fail_after(ANSWERED_S):
                while not upstream.calls:  # the first call is at the MCP server now
                    await anyio.sleep(0.01)
            # The old way the second call waited for ever: the bound only tells the two apart.
            with anyio.fail_after(ANSWERED_S):
                answers["second"] = await proxy.call_tool("list_docs", {})
                answers["listed_again"] = await proxy.list_tools()
            group.cancel_scope.cancel()

    anyio.run(main)
    second = answers["second"]
    assert second.is_error, second
    text = second.content[0].text
    assert "busy" in text and "has not answered" in text, text
    assert answers["listed_again"] == answers["listed"] == [TOOL]  # the last listing, served
    assert upstream.calls == 1  # the busy call never reached the MCP server
