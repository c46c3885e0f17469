"""``agent``: one link of the requesting client's chain (lab/agent, contracts §8): sign in,
ask for an ID-JAG, redeem it (RFC 7523 jwt-bearer), or prompt the agent to call MCP tools."""

from __future__ import annotations

import json
from dataclasses import asdict, is_dataclass
from typing import TYPE_CHECKING, Any

from lab.steps import shell
from lab.steps.actions.base import ActionError, Produced, last_exchange_outcome, looks_like_jwt
from lab.steps.redact import REDACTED, password_secrets

if TYPE_CHECKING:
    from lab.steps.engine import RunContext


def make_agent(ctx: RunContext) -> Any:
    from lab.agent import Agent, Recorder  # the agent part is imported only when a step uses it

    return Agent(ctx.endpoints, ctx.settings, recorder=Recorder())


def run(spec: dict[str, Any], ctx: RunContext) -> Produced:
    op = spec["op"]
    agent = make_agent(ctx)
    try:
        result, tokens, secrets = _perform(agent, op, spec, ctx)
    except (ValueError, OSError) as exc:
        raise ActionError(f"agent {op}: {exc}") from None
    finally:
        agent.close()
    exchanges = list(agent.recorder.exchanges)
    return Produced(
        outcome=last_exchange_outcome(exchanges, result),
        exchanges=exchanges,
        tokens=tokens,
        command=" ".join(command(spec, ctx, mask_secrets=True)),
        secrets=secrets,
    )


def _perform(
    agent: Any, op: str, spec: dict[str, Any], ctx: RunContext
) -> tuple[dict[str, Any], list[tuple[str, str]], set[str]]:
    if op == "sign_in":
        password = str(spec.get("password", "password"))
        signed = agent.sign_in(
            str(spec.get("username", "idjag-learner")),
            password,
            method=str(spec.get("method", "code")),
        )
        result = {
            "status": signed.status
            if signed.status is not None
            else (200 if signed.id_token else None),
            "id_token": signed.id_token,
            "access_token": signed.access_token,
            "refresh_token": signed.refresh_token,
            "error": signed.error,
            "error_description": signed.error_description,
            # Which flow produced the tokens, read from what the agent did (never assumed):
            # step 9 checks the code flow was used, not a silent password-grant fallback.
            "method": signed.method,
        }
        if signed.fallback_from:  # present only when a fallback really happened
            result["fallback_from"] = signed.fallback_from
        tokens = [
            (k, v)
            # A refresh token is a credential, not a grant to inspect: never decoded or reported.
            for k in ("id_token", "access_token")
            if looks_like_jwt(v := result[k])
        ]
        return result, tokens, password_secrets([password])
    if op in ("id_jag", "redeem"):
        response = (
            agent.request_id_jag(
                str(spec["id_token"]),
                str(spec.get("scope") or _default_scope()),
                spec.get("resource", ctx.endpoints.mcp),
            )
            if op == "id_jag"
            else agent.redeem_id_jag(str(spec["id_jag"]), spec.get("scope"))
        )
        result = {
            "status": response.status,
            "body": response.body,
            "token": response.token,
            "error": response.error,
            "scope": response.scope,
        }
        label = "id_jag" if op == "id_jag" else "access_token"
        return result, [(label, response.token)] if response.token else [], set()
    if op == "call_tool":
        return (
            tool_result(
                agent.call_tool(
                    spec.get("access_token") or spec.get("token"),
                    str(spec["tool"]),
                    spec.get("arguments") or {},
                )
            ),
            [],
            set(),
        )
    if op == "prompt":
        return (
            prompt_result(
                agent.prompt(str(spec["text"]), spec.get("access_token") or spec.get("token"))
            ),
            [],
            set(),
        )
    raise ActionError(f"unknown agent op {op!r}")


def _default_scope() -> str:
    from lab.agent import DEFAULT_SCOPE

    return str(DEFAULT_SCOPE)


def tool_result(result: Any) -> dict[str, Any]:
    return {
        "status": result.http_status if result.http_status is not None else 200,
        "is_error": bool(result.is_error),
        "text": result.text,
        "data": result.data,
        "tool": result.name,
    }


def prompt_result(result: Any) -> dict[str, Any]:
    results = [tool_result(r) for r in result.tool_results]
    refused = next((r["status"] for r in results if r["status"] != 200), None)
    last = results[-1] if results else {}
    return {
        "status": refused if refused is not None else 200,
        "plan": [
            asdict(c) if is_dataclass(c) and not isinstance(c, type) else c
            for c in result.plan.calls
        ],
        "understood": bool(result.plan.calls),
        "is_error": not result.ok,
        "text": result.message,
        "data": last.get("data"),
        "results": results,
    }


def command(spec: dict[str, Any], ctx: RunContext, mask_secrets: bool = False) -> list[str]:
    op, q = spec["op"], shell.quote
    if op == "sign_in":
        return [
            "lab",
            "agent",
            "sign-in",
            "--username",
            q(str(spec.get("username", "idjag-learner"))),
            "--password",
            REDACTED if mask_secrets else q(str(spec.get("password", "password"))),
            "--method",
            q(str(spec.get("method", "code"))),
        ]
    if op == "id_jag":
        return [
            "lab",
            "agent",
            "id-jag",
            "--id-token",
            q(str(spec["id_token"])),
            "--scope",
            q(str(spec.get("scope") or "api:role.docs-getter mcp:role.mcp-accessor")),
            "--resource",
            q(str(spec.get("resource", ctx.endpoints.mcp))),
        ]
    if op == "redeem":
        words = ["lab", "agent", "redeem", "--id-jag", q(str(spec["id_jag"]))]
        return words + (["--scope", q(str(spec["scope"]))] if spec.get("scope") else [])
    if op == "call_tool":
        return mcp_call_command(
            str(spec["tool"]),
            spec.get("arguments") or {},
            spec.get("access_token") or spec.get("token"),
        )
    token = spec.get("access_token") or spec.get("token")
    return ["lab", "agent", "prompt", q(str(spec["text"]))] + (
        ["--token", q(str(token))] if token else []
    )


def mcp_call_command(tool: str, arguments: dict[str, Any], token: Any) -> list[str]:
    """``lab mcp call TOOL --arg k=v ... --token T`` (without a token the call shows the 401)."""
    words = ["lab", "mcp", "call", shell.quote(tool)]
    for key, value in arguments.items():
        text = value if isinstance(value, str) else json.dumps(value)
        words += ["--arg", shell.quote(f"{key}={text}")]
    return words + (["--token", shell.quote(str(token))] if token else [])
