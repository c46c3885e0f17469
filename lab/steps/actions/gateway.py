"""``gateway``: ask through the AI Client Gateway the way an AI client does (issue #18).

The gateway (:mod:`lab.gateway`) runs in-process with the learner signed in headlessly, and the
official SDK's client connects to its MCP server object in memory: it lists the tools and calls
one, exactly the requests Claude Code or the Inspector send. Every hop the gateway makes for
it (IdP, PDP, MCP server) is recorded and shown like the agent's. ``--manual`` prints the MCP
Inspector command that does the same through the real ``lab gateway --stdio``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lab.steps import shell
from lab.steps.actions.base import ActionError, Produced, last_exchange_outcome

if TYPE_CHECKING:
    from lab.steps.engine import RunContext

#: The name the step's client gives in ``initialize`` (it shows in the correlation id).
CLIENT_NAME = "lab-step"


def run(spec: dict[str, Any], ctx: RunContext) -> Produced:
    from lab.agent.mcp_client import run_sync
    from lab.gateway.chain import HEADLESS, SignInPlan
    from lab.gateway.launch import Gateway

    tool, arguments = str(spec["tool"]), dict(spec.get("arguments") or {})
    plan = SignInPlan(
        mode=HEADLESS,
        username=str(spec.get("username", "idjag-learner")),
        password=str(spec.get("password", "password")),
    )
    exchanges: list[Any] = []
    gateway = Gateway.create(ctx.settings, ctx.endpoints, plan, retain_exchanges=exchanges)
    try:
        result = run_sync(lambda: _ask(gateway.server, tool, arguments))
    except Exception as exc:  # noqa: BLE001 - the session itself failed: the step says so
        raise ActionError(f"gateway {tool}: {exc.__class__.__name__}: {exc}") from None
    finally:
        gateway.close()
    return Produced(
        outcome=last_exchange_outcome(exchanges, result),
        exchanges=exchanges,
        command=" ".join(command(spec, ctx)),
    )


async def _ask(server: Any, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    from mcp import Client
    from mcp.shared.exceptions import MCPError
    from mcp.types import Implementation, TextContent

    info = Implementation(name=CLIENT_NAME, version="1")
    async with Client(server, client_info=info) as client:
        try:
            listed = [t.name for t in (await client.list_tools()).tools]
            list_error = None
        except MCPError as exc:  # nothing listed yet and the chain broke: the error names why
            listed, list_error = [], str(exc)
        answer = await client.call_tool(tool, arguments)
    text = "\n".join(b.text for b in answer.content if isinstance(b, TextContent))
    return {
        "status": 200,
        "tools": listed,
        "list_error": list_error,
        "tool": tool,
        "is_error": bool(answer.is_error),
        "text": text,
        "data": answer.structured_content,
    }


def command(spec: dict[str, Any], ctx: RunContext) -> list[str]:
    """The MCP Inspector CLI against ``lab gateway --stdio --headless`` (Node ≥ 22.19)."""
    words = ["npx", "@modelcontextprotocol/inspector", "--cli"]
    words += ["-e", shell.quote(f"LAB_HOME={ctx.settings.home.resolve()}")]
    words += ["--method", "tools/call", "--tool-name", shell.quote(str(spec["tool"]))]
    for key, value in (spec.get("arguments") or {}).items():
        words += ["--tool-arg", shell.quote(f"{key}={value}")]
    return [*words, "--", "lab", "gateway", "--stdio", "--headless"]
