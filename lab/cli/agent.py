"""``lab agent``: act as the AI agent ``ai.agent``.

``lab agent "get docs"`` runs the whole chain (sign in → ID-JAG → access token → MCP tools) and
says which link broke. The links one at a time, as ``lab step N --manual`` prints them:
``lab agent sign-in``, ``lab agent id-jag``, ``lab agent redeem``, ``lab agent prompt --token``.
Each link prints the token endpoint's JSON on stdout, so ``| jq -r .access_token`` works.
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup

from lab.cli import common

DEFAULT_SCOPE = "api:role.docs-getter mcp:role.mcp-accessor"


class PromptFirstGroup(TyperGroup):
    """``lab agent "get docs"`` means ``lab agent run "get docs"``: a prompt is not a subcommand."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(cls=PromptFirstGroup, no_args_is_help=True)


def _agent() -> Any:
    try:
        from lab.agent.chain import Agent
    except ImportError as exc:
        common.fail(f"the agent cannot be loaded ({exc})", "reinstall with `make setup`")
    settings = common.settings()
    return Agent(common.backend(settings).endpoints(), settings, config=agent_config())


#: How the agent signs the user in (lab.agent.chain.Agent.sign_in).
SIGN_IN_METHODS = ("code", "password", "browser")
METHOD_HELP = "code (auth code + PKCE), password, or browser (you type it into the real page)."


def sign_in_method(value: str) -> str:
    """Refuse an unknown --method as a usage error (it reached the agent as a ValueError)."""
    if value not in SIGN_IN_METHODS:
        raise typer.BadParameter(
            f"{value!r} is not one of: {', '.join(SIGN_IN_METHODS)}", param_hint="--method"
        )
    return value


def agent_config() -> Any:
    """``LAB_AGENT_*`` (client authentication, where the ID-JAG comes from), checked up front."""
    from lab.agent.config import AgentConfig
    from lab.config import SettingsError

    try:
        return AgentConfig.from_env()
    except SettingsError as exc:
        common.fail(str(exc), f"fix or unset {exc.variable}", common.ExitCode.USAGE)


@app.command("run")
def run_chain(
    prompt: str = typer.Argument(..., help='What to ask, e.g. "get docs".'),
    username: str = typer.Option("idjag-learner", "--user", "--username", help="Who signs in."),
    password: str = typer.Option("password", "--password", help="Their password (lab users only)."),
    method: str = typer.Option("code", "--method", help=METHOD_HELP, callback=sign_in_method),
    json_output: bool = typer.Option(False, "--json", help="Print the outcome as JSON."),
) -> None:
    """The whole chain for a signed-in user; exits 1 when a link breaks or a tool refuses."""
    try:
        from lab.agent.chain import DEFAULT_SCOPE as CHAIN_SCOPE
        from lab.agent.chain import run_prompt
        from lab.agent.planner import plan_rules, scope_for
    except ImportError as exc:
        common.fail(f"the agent cannot be loaded ({exc})", "reinstall with `make setup`")
    settings = common.settings()
    endpoints = common.backend(settings).endpoints()
    scope = CHAIN_SCOPE
    if not settings.llm_url:
        # The rules know the plan before any token exists: ask only for the roles it needs.
        plan = plan_rules(prompt)
        if not plan.understood:
            report: dict[str, Any] = {
                "ok": False,
                "stopped_at": None,
                "message": plan.message or "",
                "tool_results": [],
                "scope": None,
            }
            common.print_json(report) if json_output else print_summary(report)
            raise typer.Exit(common.ExitCode.FAILED)
        scope = scope_for(plan, access_role(CHAIN_SCOPE))
    result = run_prompt(
        settings,
        endpoints,
        prompt,
        username,
        password,
        method=method,
        scope=scope,
        config=agent_config(),
    )
    summary = summarize(result)
    summary["scope"] = scope
    if not summary["ok"]:
        summary["explanation"] = explain_refusal(summary, settings)
    if json_output:
        common.print_json(summary)
    else:
        print_summary(summary)
    if not summary["ok"]:
        raise typer.Exit(common.ExitCode.FAILED)


def access_role(default_scope: str) -> str:
    """The MCP server's own access role, as the chain's default scope names it."""
    return next((r for r in default_scope.split() if r.endswith("mcp-accessor")), "")


@app.command("sign-in")
def sign_in(
    username: str = typer.Option("idjag-learner", "--username", "--user", help="Who signs in."),
    password: str = typer.Option("password", "--password", help="Their password."),
    method: str = typer.Option("code", "--method", help=METHOD_HELP, callback=sign_in_method),
    fallback: bool = typer.Option(
        False,
        "--fallback-to-password",
        help="If the login page cannot be driven, use the password grant (reported as such).",
    ),
) -> None:
    """Sign the user in at the IdP; prints the tokens as JSON (exit 1 if refused)."""
    with _agent() as agent:
        result = agent.sign_in(username, password, method=method, fallback=fallback)
    common.print_json(
        {
            "status": result.status,
            "method": result.method,
            "fallback_from": result.fallback_from,
            "id_token": result.id_token,
            "access_token": result.access_token,
            "refresh_token": result.refresh_token,
            "error": result.error,
            "error_description": result.error_description,
        }
    )
    if not result.ok:
        raise typer.Exit(common.ExitCode.FAILED)


@app.command("id-jag")
def id_jag(
    id_token: str = typer.Option(..., "--id-token", help="The user's ID token from sign-in."),
    scope: str = typer.Option(DEFAULT_SCOPE, "--scope", help="Roles to ask for (space-separated)."),
    resource: str | None = typer.Option(None, "--resource", help="RFC 8707 resource (MCP URL)."),
) -> None:
    """Ask the PDP for an ID-JAG (RFC 8693 token exchange); prints the token response."""
    with _agent() as agent:
        response = agent.request_id_jag(id_token, scope, resource or agent.endpoints.mcp)
    _print_token_response(response)


@app.command("redeem")
def redeem(
    id_jag_token: str = typer.Option(..., "--id-jag", help="The ID-JAG to trade."),
    scope: str | None = typer.Option(None, "--scope", help="A subset of the ID-JAG's scope."),
) -> None:
    """Trade an ID-JAG for an access token (RFC 7523 jwt-bearer); prints the token response."""
    with _agent() as agent:
        response = agent.redeem_id_jag(id_jag_token, scope)
    _print_token_response(response)


@app.command("prompt")
def prompt_command(
    text: str = typer.Argument(..., help='What to ask, e.g. "get docs".'),
    token: str | None = typer.Option(None, "--token", help="The agent's access token for MCP."),
) -> None:
    """Plan tool calls for a prompt and make them with an access token you already hold."""
    with _agent() as agent:
        result = agent.prompt(text, token)
    summary = summarize(result)
    common.print_json(summary)
    if not summary["ok"]:
        raise typer.Exit(common.ExitCode.FAILED)


def _print_token_response(response: Any) -> None:
    common.print_json({"status": response.status, **dict(response.body)})
    if not response.ok:
        raise typer.Exit(common.ExitCode.FAILED)


def summarize(result: Any) -> dict[str, Any]:
    tools = [
        {
            "tool": r.name,
            "arguments": r.arguments,
            "is_error": r.is_error,
            "text": r.text,
            "data": r.data,
        }
        for r in result.tool_results
    ]
    return {
        "ok": bool(result.ok),
        "stopped_at": result.stopped_at,
        "message": str(result.message or ""),
        "tool_results": tools,
    }


def print_summary(summary: dict[str, Any]) -> None:
    """Each tool call and its outcome; the reason once, wrapped at the terminal's width."""
    import json
    import re

    from lab.render.shown import shown_data

    # Tool names, texts and the chain's reason come from the MCP server and the parts behind
    # it: shown with their control characters as escapes (--json keeps them as sent).
    summary = shown_data(summary)
    console = common.out()
    errors: set[str] = set()
    for tool in summary["tool_results"]:
        mark = "[red]✗[/]" if tool["is_error"] else "[green]✓[/]"
        console.print(f"{mark} {escape(tool['tool'])} {escape(json.dumps(tool['arguments']))}")
        shown = tool["data"] if tool["data"] is not None else tool["text"]
        if tool["is_error"]:
            errors.add(str(tool["text"]))
        console.print(
            shown if isinstance(shown, str) else json.dumps(shown, indent=2), markup=False
        )
    message = summary["message"]
    if message and message not in errors:
        console.print(message, markup=False)
    if summary["stopped_at"]:
        console.print(f"[red]✗[/] the chain stopped at: {escape(summary['stopped_at'])}")
    if summary.get("explanation"):
        console.print(f"[yellow]why:[/] {escape(summary['explanation'])}")
        step = re.search(r"step (\d+) \(", summary["explanation"])
        if step:
            # On a line of its own, so the terminal never breaks the command.
            console.print(f"[bold]undo:[/] {common.lab_command(f'reset --to {step[1]}')}")


def escape(text: str) -> str:
    from rich.markup import escape as rich_escape

    return rich_escape(text)


ROLE = r"(?P<domain>[a-z][\w-]*):role\.(?P<role>[\w-]+)"


def explain_refusal(summary: dict[str, Any], settings: Any) -> str | None:
    """Why a role is missing, when a step took it away: read from the refusal's reason (the
    role it names) and the step files (which step removes the learner from that role)."""
    import re

    reason = " ".join(
        [summary["message"], *(str(t["text"]) for t in summary["tool_results"] if t["is_error"])]
    )
    roles = {(m["domain"], m["role"]) for m in re.finditer(ROLE, reason)}
    principal = re.search(r"principal (?P<p>[\w.-]+) is not included", reason)
    if not roles and principal is None:
        return None
    for number, title, domain, role, member in membership_removals():
        if (domain, role) in roles or (principal and principal["p"] == member and not roles):
            return (
                f"{member} is no longer a member of {domain}:role.{role}: step {number} "
                f"({title}) took that role away, so the PDP no longer grants it."
            )
    return None


def membership_removals() -> list[tuple[int, str, str, str, str]]:
    """(step, title, domain, role, member) for each step action that removes a membership."""
    import re

    from lab.steps import load_steps

    found = []
    pattern = re.compile(r"/domain/(?P<d>[\w-]+)/role/(?P<r>[\w-]+)/member/(?P<m>[\w.-]+)")
    for step in load_steps():
        for action in step.actions:
            spec = action.spec if isinstance(action.spec, dict) else {}
            if str(spec.get("method", "")).upper() != "DELETE":
                continue
            match = pattern.search(str(spec.get("url", "")))
            if match:
                found.append((step.number, step.title, match["d"], match["r"], match["m"]))
    return found
