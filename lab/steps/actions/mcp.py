"""``mcp``: one MCP tool call through the official SDK client (via lab/agent's MCP client)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lab.steps.actions import agent as agent_action
from lab.steps.actions.base import Produced, last_exchange_outcome

if TYPE_CHECKING:
    from lab.steps.engine import RunContext


def run(spec: dict[str, Any], ctx: RunContext) -> Produced:
    agent = agent_action.make_agent(ctx)
    try:
        result = agent_action.tool_result(
            agent.call_tool(
                spec.get("token") or None, str(spec["tool"]), spec.get("arguments") or {}
            )
        )
    finally:
        agent.close()
    exchanges = list(agent.recorder.exchanges)
    refused = next((e for e in reversed(exchanges) if e.status in (401, 403)), None)
    result["www_authenticate"] = (
        refused.response_headers.get("www-authenticate") if refused is not None else None
    )
    return Produced(
        outcome=last_exchange_outcome(exchanges, result),
        exchanges=exchanges,
        command=" ".join(command(spec, ctx)),
    )


def command(spec: dict[str, Any], ctx: RunContext) -> list[str]:
    return agent_action.command({"op": "call_tool", **spec}, ctx)
