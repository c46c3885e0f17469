"""The requesting client (``ai.agent``): sign in, get an ID-JAG, trade it, call MCP tools.

Used as a library by the step engine and by ``lab agent "get docs"`` (see contracts §8).

The names below load on first use (PEP 562): the step engine imports :mod:`lab.agent.recorder`
for every step, and must not pay for the MCP SDK (most of a second) until a step talks to the
MCP server (issue #21).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lab.agent.chain import DEFAULT_SCOPE, Agent, PromptResult, run_prompt
    from lab.agent.config import AgentConfig
    from lab.agent.mcp_client import ToolCall, ToolResult
    from lab.agent.pdp_client import TokenResponse
    from lab.agent.planner import Plan, plan_rules
    from lab.agent.recorder import CapturedToken, Exchange, Recorder
    from lab.agent.signin import SignIn

_EXPORTS = {
    "DEFAULT_SCOPE": "lab.agent.chain",
    "Agent": "lab.agent.chain",
    "PromptResult": "lab.agent.chain",
    "run_prompt": "lab.agent.chain",
    "AgentConfig": "lab.agent.config",
    "ToolCall": "lab.agent.mcp_client",
    "ToolResult": "lab.agent.mcp_client",
    "TokenResponse": "lab.agent.pdp_client",
    "Plan": "lab.agent.planner",
    "plan_rules": "lab.agent.planner",
    "CapturedToken": "lab.agent.recorder",
    "Exchange": "lab.agent.recorder",
    "Recorder": "lab.agent.recorder",
    "SignIn": "lab.agent.signin",
}

__all__ = [
    "DEFAULT_SCOPE",
    "Agent",
    "AgentConfig",
    "CapturedToken",
    "Exchange",
    "Plan",
    "PromptResult",
    "Recorder",
    "SignIn",
    "TokenResponse",
    "ToolCall",
    "ToolResult",
    "plan_rules",
    "run_prompt",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
