"""``lab step N --manual``: the exact commands a learner runs by hand, derived from the step's
actions (never hand-written). Values captured earlier become shell variables set from the
responses with ``jq``; signed assertions come from ``$(lab sign-assertion PRINCIPAL --aud URL)``;
the realm's client secret is read from the realm file, so no secret is printed.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from lab.steps import shell
from lab.steps.actions import module_for
from lab.steps.actions.request import curl_command
from lab.steps.model import Action, Capture, Step
from lab.steps.values import MissingValue, Scope, references, substitute

if TYPE_CHECKING:
    from lab.steps.engine import RunContext

REALM_SECRET_COMMAND = (
    "jq -r '.clients[] | select(.clientId==\"ai.agent\") | .secret' keycloak/realm-idjag.json"
)


class ManualScope(Scope):
    """Endpoints stay literal; captures become shell variables; secrets become commands."""

    def lookup(self, name: str) -> Any:
        if name == "realm.client_secret":
            return shell.command_marker(REALM_SECRET_COMMAND)
        if name.startswith("endpoints."):
            return super().lookup(name)
        if name.startswith("keys."):
            principal, _, field = name[len("keys.") :].rpartition(".")
            return shell.command_marker(f"lab keygen {principal} --print {field}")
        return shell.variable_marker(name)


def manual_commands(
    step: Step, ctx: RunContext, actions: tuple[Action, ...] | None = None
) -> list[str]:
    """One shell snippet per action, each opening with a ``# id: say`` comment line, after a
    preamble that sets the values earlier steps captured (``lab captured NAME``) and clears
    the ones this step captures (a value left from an earlier paste must never be reused)."""
    assert ctx.endpoints is not None
    scope = ManualScope(ctx.endpoints, ctx.settings, ctx.values, set())
    chosen = actions or step.actions
    snippets = [action_snippet(step, action, scope, ctx) for action in chosen]
    preamble = manual_preamble(chosen)
    return ([preamble] if preamble else []) + snippets


def manual_preamble(actions: tuple[Action, ...]) -> str:
    captured: list[str] = []
    earlier: list[str] = []
    for action in actions:
        for name in sorted(references(action.spec)):
            if name.split(".", 1)[0] in ("endpoints", "keys", "realm"):
                continue
            if name not in captured and name not in earlier:
                earlier.append(name)
        captured.extend(c.name for c in action.captures if c.name not in captured)
    lines = []
    if captured:
        names = " ".join(shell.shell_name(n) for n in captured)
        lines.append(f"# values this step captures start empty\nunset {names}")
    for name in earlier:
        lines.append(f"{shell.shell_name(name)}=$(lab captured {shell.quote(name)})")
    if earlier:
        lines.insert(len(lines) - len(earlier), "# values captured by earlier steps")
    return "\n".join(lines)


def action_snippet(step: Step, action: Action, scope: Scope, ctx: RunContext) -> str:
    try:
        spec = substitute(action.spec, scope, f"{step.path}: action {action.id}")
    except MissingValue as exc:
        return f"# {action.id}: cannot be written out: {exc}"
    header = f"# {action.id}" + (f": {action.say}" if action.say else "")
    if action.kind in ("request", "setting"):
        request_spec = spec if action.kind == "request" else _setting_request(spec, ctx)
        return "\n".join([header, *_request_lines(request_spec, action.captures, ctx)])
    words = module_for(action.kind).command(spec, ctx)
    if not action.captures:
        return "\n".join([header, " ".join(words)])
    return "\n".join([header, *_captured_command_lines(action, spec, words, ctx)])


def _captured_command_lines(
    action: Action, spec: Any, words: list[str], ctx: RunContext
) -> list[str]:
    """The command's JSON output kept in ``$OUT``; each capture read from it with ``jq``."""
    if ">" in words:  # `lab audit --json > FILE`: the captures are read from the file
        target = words[words.index(">") + 1]
        lines, source = [" ".join(words)], f"jq -r {{jq}} {target}"
    else:
        if words[:3] == ["lab", "mcp", "call"] or (
            words[:2] == ["lab", "audit"] and "--json" not in words
        ):
            words = [*words, "--json"]  # the captures are read from the JSON form
        lines = [f"OUT=$({' '.join(words)})", 'printf "%s\\n" "$OUT"']
        source = "printf '%s' \"$OUT\" | jq -r {jq}"
    for capture in action.captures:
        jq = output_jq(action, spec, capture)
        if jq is None:
            lines.append(read_above(capture))
            continue
        read = source.format(jq=shell.quote(jq))
        lines.append(f"{shell.shell_name(capture.name)}=$({read})")
    return lines


def output_jq(action: Action, spec: Any, capture: Capture) -> str | None:
    """Where the printed JSON of ``lab agent``/``lab mcp call``/``lab audit --json`` holds what
    the engine's query reads."""
    query = capture.query
    if query.kind == "json":
        return jq_filter(str(query.arg))
    if query.kind != "result":
        return None
    path = str(query.arg)
    op = spec.get("op") if isinstance(spec, dict) else None
    if action.kind == "agent" and op == "prompt":
        # `lab agent prompt` prints {ok, message, tool_results: [{tool, text, data}]}.
        if path == "text":
            return ".message"
        if path.startswith("data"):
            path = "tool_results[-1]." + path
        else:
            return None
    if action.kind == "mcp" and path not in ("text", "is_error") and not path.startswith("data"):
        return None  # e.g. www_authenticate: the engine reads it from the HTTP exchange
    return jq_filter("$." + path)


def _setting_request(spec: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    from lab.steps.actions.setting import as_request

    return as_request(spec, ctx)


def _request_lines(
    spec: dict[str, Any], captures: tuple[Capture, ...], ctx: RunContext
) -> list[str]:
    from_json = [c for c in captures if c.query.kind == "json" and jq_filter(str(c.query.arg))]
    if not from_json:
        notes = [read_above(c) for c in captures]
        return [curl_command(spec, ctx), *notes]
    lines = [f"RESPONSE=$({curl_command(spec, ctx, include_headers=False)})", 'echo "$RESPONSE"']
    for capture in captures:
        jq = jq_filter(str(capture.query.arg)) if capture.query.kind == "json" else None
        if jq is None:
            lines.append(read_above(capture))
            continue
        lines.append(
            f"{shell.shell_name(capture.name)}="
            f"$(printf '%s' \"$RESPONSE\" | jq -r {shell.quote(jq)})"
        )
    return lines


def read_above(capture: Capture) -> str:
    """A value no later command needs (the step's text quotes it): point at it, set nothing."""
    what = capture.query.describe()
    return f"#   {capture.name} is the {what} shown above (only the text uses it)"


def jq_filter(path: str) -> str | None:
    """The jq filter for a step-file JSONPath (``$.docs[0].name`` → ``.docs[0].name``)."""
    path = path.strip()
    if not path.startswith("$"):
        return None
    body, length = path[1:], False
    if body.endswith(".length()"):
        body, length = body[: -len(".length()")], True
    body = body.replace("[*]", "[]")
    if not re.fullmatch(r"(\.[A-Za-z_][A-Za-z0-9_\-]*|\[-?\d+\]|\[\])*", body):
        return None
    body = re.sub(r"\.([A-Za-z_][A-Za-z0-9_]*-[A-Za-z0-9_\-]*)", r'."\1"', body) or "."
    return f"{body} | length" if length else body
