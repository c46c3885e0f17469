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
from lab.steps.values import MissingValue, Scope, substitute

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
    """One shell snippet per action, each opening with a ``# id: say`` comment line."""
    assert ctx.endpoints is not None
    scope = ManualScope(ctx.endpoints, ctx.settings, ctx.values, set())
    return [action_snippet(step, action, scope, ctx) for action in (actions or step.actions)]


def action_snippet(step: Step, action: Action, scope: Scope, ctx: RunContext) -> str:
    try:
        spec = substitute(action.spec, scope, f"{step.path}: action {action.id}")
    except MissingValue as exc:
        return f"# {action.id}: cannot be written out: {exc}"
    header = f"# {action.id}" + (f": {action.say}" if action.say else "")
    if action.kind in ("request", "setting"):
        request_spec = spec if action.kind == "request" else _setting_request(spec, ctx)
        return "\n".join([header, *_request_lines(request_spec, action.captures, ctx)])
    command = " ".join(module_for(action.kind).command(spec, ctx))
    notes = [
        f"#   then set {c.name} from the output ({c.query.describe()})" for c in action.captures
    ]
    return "\n".join([header, command, *notes])


def _setting_request(spec: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    from lab.steps.actions.setting import as_request

    return as_request(spec, ctx)


def _request_lines(
    spec: dict[str, Any], captures: tuple[Capture, ...], ctx: RunContext
) -> list[str]:
    from_json = [c for c in captures if c.query.kind == "json" and jq_filter(str(c.query.arg))]
    if not from_json:
        notes = [
            f"#   then set {c.name} from the response ({c.query.describe()})" for c in captures
        ]
        return [curl_command(spec, ctx), *notes]
    lines = [f"RESPONSE=$({curl_command(spec, ctx, include_headers=False)})", 'echo "$RESPONSE"']
    for capture in captures:
        jq = jq_filter(str(capture.query.arg)) if capture.query.kind == "json" else None
        if jq is None:
            lines.append(
                f"#   then set {capture.name} from the response ({capture.query.describe()})"
            )
            continue
        lines.append(
            f"{shell.shell_name(capture.name)}="
            f"$(printf '%s' \"$RESPONSE\" | jq -r {shell.quote(jq)})"
        )
    return lines


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
