"""Terminal rendering of a step run (rich). Functions named ``render_*`` return renderables;
``print_step_result`` hands them to a console. Everything fits 80 columns: long values wrap,
tokens are shown decoded (header and claims, the meaningful claims highlighted, what changed
against the previous token) with only a fingerprint of the raw token.
"""

from __future__ import annotations

import io
import json
import re
from datetime import UTC, datetime
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.markdown import Markdown
from rich.padding import Padding
from rich.rule import Rule
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from lab.oauth.jose import token_fingerprint
from lab.steps.model import ActionResult, CheckResult, StepResult, TokenSeen

#: Claims a learner should look at first (STEPS.md): highlighted wherever a token is shown.
KEY_CLAIMS = ("typ", "iss", "sub", "aud", "client_id", "act", "scope", "resource", "jti", "exp")
TIME_CLAIMS = ("exp", "iat", "nbf", "auth_time")
#: Claims whose change from one token to the next tells the story of the chain.
DIFF_CLAIMS = ("typ", "iss", "sub", "aud", "client_id", "act", "scope", "resource", "azp")
SHOWN_HEADERS = ("content-type", "www-authenticate", "location", "etag")
MAX_BODY_LINES = 30
LONG_VALUE = 120
PASS, FAIL = "✓", "✗"


def print_step_result(console: Console, result: StepResult, *, show_body: bool = True) -> None:
    for renderable in render_step_result(result, show_body=show_body):
        console.print(renderable)


def step_result_text(result: StepResult, width: int = 80, show_body: bool = True) -> str:
    """The rendering as plain text (tests, logs, docs)."""
    console = Console(
        width=width, record=True, color_system=None, force_terminal=False, file=io.StringIO()
    )
    print_step_result(console, result, show_body=show_body)
    return "\n".join(line.rstrip() for line in console.export_text().splitlines()) + "\n"


def render_step_result(result: StepResult, *, show_body: bool = True) -> list[RenderableType]:
    mode = "" if result.mode == "run" else f" [{result.mode}]"
    out: list[RenderableType] = [Rule(f"Step {result.number} · {result.title}{mode}", style="bold")]
    for action in result.actions:
        out.extend(render_action(action, result))
    if result.message and not result.actions:
        out.append(Text(result.message, style="yellow" if result.status == "skipped" else "red"))
    lineage = render_lineage(result)
    if lineage is not None:
        out.append(lineage)
    sequence = render_sequence(result)
    if sequence is not None:
        out.append(sequence)
    if show_body and result.body.strip():
        out.append(Rule(style="dim"))
        out.append(Markdown(result.body.strip()))
    out.append(render_summary(result))
    return out


def render_summary(result: StepResult) -> RenderableType:
    checks = result.checks
    passed = sum(c.passed for c in checks)
    style = {"passed": "bold green", "skipped": "bold yellow", "challenge": "bold yellow"}.get(
        result.status, "bold red"
    )
    line = Text(f"{result.status.upper()}", style=style)
    line.append(f"  {passed}/{len(checks)} checks  {result.duration_ms:.0f} ms", style="default")
    parts: list[RenderableType] = [Rule(style="dim"), line]
    if result.status in ("failed", "error") and result.message:
        parts.append(Text(result.message, style="red"))
    if result.status == "challenge" and result.message:
        parts.append(Text(result.message, style="yellow"))
    if result.status == "passed" and result.mode in ("run", "solution"):
        if result.next_step is not None:
            parts.append(Text(f"Next: lab step {result.next_step}", style="bold"))
        else:
            parts.append(Text("You have finished the lab: every step is done.", style="bold"))
    return Group(*parts)


def render_action(action: ActionResult, result: StepResult) -> list[RenderableType]:
    title = Text("▸ ", style="bold cyan")
    title.append(action.action_id, style="bold")
    if action.say:
        title.append(f" — {action.say}")
    out: list[RenderableType] = [Text(""), title]
    if action.curl:
        out.append(
            Padding(
                Syntax(shorten_tokens(action.curl), "bash", word_wrap=True, theme="ansi_dark"),
                (0, 0, 0, 2),
            )
        )
    elif action.command:
        out.append(
            Padding(
                Syntax(shorten_tokens(action.command), "bash", word_wrap=True, theme="ansi_dark"),
                (0, 0, 0, 2),
            )
        )
    for exchange in action.exchanges:
        out.append(
            Padding(
                render_exchange(exchange, with_request=action.kind in ("agent", "mcp")),
                (0, 0, 0, 2),
            )
        )
    if not action.exchanges and action.result and action.kind not in ("request", "setting"):
        out.append(Padding(render_json(action.result), (0, 0, 0, 2)))
    for token in action.tokens:
        out.append(Padding(render_token(token), (0, 0, 0, 2)))
    if action.captured:
        names = ", ".join(f"{k}" for k in action.captured)
        out.append(Padding(Text(f"captured: {names}", style="dim"), (0, 0, 0, 2)))
    for check in action.checks:
        out.append(Padding(render_check(check, action, result), (0, 0, 0, 2)))
    if action.error:
        out.append(Padding(Text(f"{FAIL} {action.error}", style="bold red"), (0, 0, 0, 2)))
    return out


def render_exchange(exchange: Any, *, with_request: bool = False) -> RenderableType:
    parts: list[RenderableType] = []
    if with_request:
        parts.append(Text(f"→ {exchange.method} {exchange.url}", style="cyan"))
    if exchange.status is None:
        parts.append(Text(f"← no response: {exchange.error}", style="red"))
        return Group(*parts)
    style = "green" if exchange.status < 400 else "yellow" if exchange.status < 500 else "red"
    parts.append(Text(f"← {exchange.status}", style=f"bold {style}"))
    for name in SHOWN_HEADERS:
        value = exchange.response_headers.get(name)
        if value:
            parts.append(
                Text(
                    f"  {_header_name(name)}: {value}",
                    style="dim" if name != "www-authenticate" else "yellow",
                )
            )
    body = exchange.response_body or ""
    content_type = exchange.response_headers.get("content-type", "")
    if "text/html" in content_type:
        # A login page is for a browser; the learner needs to know it was served, not its markup.
        parts.append(Text(f"  (an HTML page, {len(body)} characters)", style="dim"))
    elif body.strip():
        parts.append(render_body_text(body))
    return Group(*parts)


def render_body_text(body: str) -> RenderableType:
    try:
        data = json.loads(body)
    except ValueError:
        data = _NOT_JSON
    summary = _mcp_handshake(data)
    if summary is not None:
        return Text(f"  ({summary})", style="dim")
    if data is _NOT_JSON:
        lines = body.splitlines()
        clipped = "\n".join(lines[:MAX_BODY_LINES]) + (
            f"\n… {len(lines) - MAX_BODY_LINES} more lines" if len(lines) > MAX_BODY_LINES else ""
        )
        return Text(clipped)
    return render_json(data)


_NOT_JSON = object()


def _mcp_handshake(data: Any) -> str | None:
    """The MCP ``initialize`` answer is plumbing: one line instead of a page of capabilities."""
    result = data.get("result") if isinstance(data, dict) and "jsonrpc" in data else None
    if not isinstance(result, dict) or "protocolVersion" not in result:
        return None
    server = result.get("serverInfo", {}).get("name", "?")
    return f"MCP initialize: server {server}, protocol {result['protocolVersion']}"


def render_json(data: Any) -> RenderableType:
    text = json.dumps(_shorten_in(data), indent=2, ensure_ascii=False, default=str)
    lines = text.splitlines()
    if len(lines) > MAX_BODY_LINES:
        text = "\n".join(lines[:MAX_BODY_LINES]) + f"\n… {len(lines) - MAX_BODY_LINES} more lines"
    return Syntax(text, "json", word_wrap=True, theme="ansi_dark")


def render_token(token: TokenSeen) -> RenderableType:
    typ = token.header.get("typ", "JWT")
    table = Table(
        title=Text(
            f"{token.label}  {typ}  fp {token_fingerprint(token.token)}", style="bold magenta"
        ),
        title_justify="left",
        show_header=False,
        box=None,
        padding=(0, 1),
    )
    table.add_column("name", no_wrap=True)
    table.add_column("value", overflow="fold")
    for name in ("alg", "kid", "typ"):
        if name in token.header:
            table.add_row(
                Text(f"header.{name}", style="bold yellow" if name == "typ" else "dim"),
                str(token.header[name]),
            )
    for name, value in token.claims.items():
        table.add_row(_claim_label(name), claim_value(name, value))
    parts: list[RenderableType] = [table]
    if any(name in DIFF_CLAIMS for name, _, _ in token.changes):
        parts.append(render_changes(token))
    return Group(*parts)


def render_changes(token: TokenSeen) -> RenderableType:
    text = Text(f"changed since {token.previous}:", style="dim")
    for name, before, after in token.changes:
        if name not in DIFF_CLAIMS:
            continue  # jti/iat/exp are always new; other claims are shown in the table above
        text.append(f"\n  {name}: ", style="bold yellow" if name in KEY_CLAIMS else "")
        text.append(f"{_short(before)} → {_short(after)}")
    return text


def render_check(check: CheckResult, action: ActionResult, result: StepResult) -> RenderableType:
    line = Text(
        f"{PASS} " if check.passed else f"{FAIL} ",
        style="bold green" if check.passed else "bold red",
    )
    line.append(check.why or check.check)
    if check.passed:
        line.append(
            f"  ({check.query} {check.predicate} "
            f"{_short(json.dumps(check.expected, default=str))})",
            style="dim",
        )
        return line
    details = Text(style="red")
    details.append(f"\n    {result.path}: action {action.action_id}: {check.check}")
    details.append(f"\n    expected: {_short(check.expected, 200)}")
    details.append(f"\n    actual:   {_short(check.actual, 200)}")
    if check.error:
        details.append(f"\n    error:    {check.error}")
    parts: list[RenderableType] = [line, details]
    if action.curl or action.command:
        parts.append(Text("    reproduce with:", style="dim"))
        parts.append(
            Padding(
                Syntax(
                    action.curl or action.command or "", "bash", word_wrap=True, theme="ansi_dark"
                ),
                (0, 0, 0, 4),
            )
        )
    return Group(*parts)


# --------------------------------------------------------------------------------------------
# Lineage and sequence (step 12 shows the whole chain; any step with several tokens benefits)

LINEAGE_CLAIMS = ("sub", "client_id", "act", "aud", "scope")


def lineage_entries(result: StepResult) -> list[tuple[str, str, dict[str, Any]]]:
    """(label, typ, claims) for each token of the step in order, plus the token the MCP server
    obtained by exchange (reported in tool results as ``exchanged_token`` claims)."""
    entries: list[tuple[str, str, dict[str, Any]]] = []
    for action in result.actions:
        for token in action.tokens:
            typ = str(token.header.get("typ", "JWT"))
            # The chain is ID token → typed PDP tokens; the IdP's own access/refresh tokens
            # (plain "JWT"/"Refresh") are shown with their action but are not links of it.
            if token.label == "id_token" or typ.lower() not in ("jwt", "refresh"):
                entries.append((token.label, typ, token.claims))
        for claims in _exchanged_tokens(action.result):
            entries.append(("exchanged by the MCP server", "at+jwt", claims))
    return entries


def _exchanged_tokens(result: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if isinstance(result, dict):
        exchanged = result.get("exchanged_token")
        if isinstance(exchanged, dict):
            found.append(exchanged)
        for key, value in result.items():
            if key != "exchanged_token":
                found.extend(_exchanged_tokens(value))
    elif isinstance(result, list):
        for item in result:
            found.extend(_exchanged_tokens(item))
    return found


def render_lineage(result: StepResult) -> RenderableType | None:
    entries = lineage_entries(result)
    if len(entries) < 2:
        return None
    text = Text("Token lineage", style="bold")
    for index, (label, typ, claims) in enumerate(entries):
        text.append("\n  ↓" if index else "")
        text.append(f"\n  {label}", style="bold magenta")
        text.append(f" ({typ})")
        for name in LINEAGE_CLAIMS:
            if name in claims:
                value = claims[name]
                shown = value if isinstance(value, str) else json.dumps(value)
                text.append(f"\n      {name}: ", style="bold yellow")
                text.append(_short(shown, 66))
    return Group(Text(""), text)


def party_of(url: str) -> str:
    """Which part answered, from the URL path (the lab's fixed layout)."""
    if "/realms/" in url:
        return "IdP"
    if "/zts/" in url or "oauth-authorization-server" in url:
        return "PDP (ZTS)"
    if "/zms/" in url:
        return "PDP (ZMS)"
    if "/mcp" in url or "oauth-protected-resource" in url:
        return "MCP server"
    if "/api/docs" in url:
        return "document API"
    return url.split("/")[2] if "://" in url else url


def render_sequence(result: StepResult) -> RenderableType | None:
    """The calls of the step's agent/MCP actions as a one-line-per-call sequence."""
    rows = [
        (action.action_id, exchange)
        for action in result.actions
        if action.kind in ("agent", "mcp")
        for exchange in action.exchanges
    ]
    if len(rows) < 2 and not any(_exchanged_tokens(a.result) for a in result.actions):
        return None
    table = Table(
        title="Sequence", title_justify="left", show_header=False, box=None, padding=(0, 1)
    )
    table.add_column("from", no_wrap=True)
    table.add_column("to", no_wrap=True)
    table.add_column("call", overflow="fold")
    table.add_column("status", no_wrap=True)
    for _action_id, exchange in rows:
        path = exchange.url.split("://", 1)[-1].split("/", 1)[-1].split("?", 1)[0]
        status = "—" if exchange.status is None else str(exchange.status)
        table.add_row("agent", f"→ {party_of(exchange.url)}", f"{exchange.method} /{path}", status)
    if any(_exchanged_tokens(a.result) for a in result.actions):
        table.add_row("MCP server", "→ PDP (ZTS)", "RFC 8693 token exchange", "200")
        table.add_row("MCP server", "→ document API", "with the exchanged token", "200")
    return Group(Text(""), table)


def claim_value(name: str, value: Any) -> Text:
    if name in TIME_CLAIMS and isinstance(value, int | float) and not isinstance(value, bool):
        when = datetime.fromtimestamp(value, UTC).strftime("%H:%M:%S UTC")
        return Text(f"{value} ({when})", style="bold" if name in KEY_CLAIMS else "")
    shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return Text(shown, style="bold" if name in KEY_CLAIMS else "")


def _claim_label(name: str) -> Text:
    return Text(name, style="bold yellow" if name in KEY_CLAIMS else "dim")


def shorten_tokens(text: str) -> str:
    """Long JWTs in a command shown as head…tail, so a curl fits the screen (reports keep them)."""
    return re.sub(
        r"eyJ[A-Za-z0-9_\-]{6,}\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+",
        lambda m: f"{m.group(0)[:10]}…{m.group(0)[-6:]}",
        text,
    )


def _shorten_in(data: Any) -> Any:
    if isinstance(data, str):
        data = shorten_tokens(data)
        # Long opaque values (public keys, signatures) carry nothing to read at a glance.
        return data if len(data) <= LONG_VALUE else f"{data[:40]}… ({len(data)} chars)"
    if isinstance(data, list):
        return [_shorten_in(v) for v in data]
    if isinstance(data, dict):
        return {k: _shorten_in(v) for k, v in data.items()}
    return data


def _short(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = shorten_tokens(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _header_name(name: str) -> str:
    return (
        "WWW-Authenticate"
        if name == "www-authenticate"
        else "-".join(p.capitalize() for p in name.split("-"))
    )
