"""The requesting client (``ai.agent``): sign in, get an ID-JAG, trade it, call MCP tools.

Used as a library by the step engine and by ``lab agent "get docs"`` (see contracts §8).
"""

from lab.agent.chain import DEFAULT_SCOPE, Agent, PromptResult, run_prompt
from lab.agent.config import AgentConfig
from lab.agent.mcp_client import ToolCall, ToolResult
from lab.agent.pdp_client import TokenResponse
from lab.agent.planner import Plan, plan_rules
from lab.agent.recorder import CapturedToken, Exchange, Recorder
from lab.agent.signin import SignIn

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
