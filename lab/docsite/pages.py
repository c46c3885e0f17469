"""Docs pages generated from the step files (never a second copy of their text).

Each ``steps/NN-slug.md`` becomes one page: the narrative, the exact requests, the expected
outcomes as a box, and — when a real run was captured with ``python -m lab.docsite capture`` —
the decoded tokens it issued and a picture of what the terminal showed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lab.config import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
STEPS_DIR = REPO_ROOT / "steps"
#: Where ``capture`` writes a real run: verify.json and one terminal SVG per step.
DATA_DIR = REPO_ROOT / "build" / "docs-data"

_VALUE = re.compile(r"\$\{\s*([A-Za-z0-9_.\-]+)\s*\}|\{\{\s*([A-Za-z0-9_.\-]+)\s*\}\}")
_KIND_KEYS = (
    "request", "keygen", "agent", "mcp", "gateway", "setting", "providers", "wait", "audit"
)  # fmt: skip


class StepFileError(ValueError):
    """A step file cannot be turned into a page; names the file and what is wrong."""


@dataclass(frozen=True)
class StepPage:
    number: int
    slug: str
    title: str
    teaches: str
    actions: list[dict[str, Any]]
    body: str
    source: Path
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def page_path(self) -> str:
        return f"steps/{self.number:02d}-{self.slug}.md"


_FRONT_MATTER = re.compile(r"^---[ \t]*\n(.*?)^---[ \t]*\n?", re.DOTALL | re.MULTILINE)


def read_step_file(path: Path) -> StepPage:
    text = path.read_text(encoding="utf-8")
    if not text.startswith("---"):
        raise StepFileError(f"{path}: a step file starts with YAML front matter ('---')")
    # The closing '---' is a line of its own (as lab.steps.load reads it): a YAML comment such
    # as "# --- the answer" inside the front matter does not end it.
    match = _FRONT_MATTER.match(text)
    if match is None:
        raise StepFileError(f"{path}: the front matter is not closed by a '---' line")
    try:
        meta = yaml.safe_load(match.group(1)) or {}
    except yaml.YAMLError as exc:
        raise StepFileError(f"{path}: front matter is not valid YAML: {exc}") from None
    if not isinstance(meta, dict):
        raise StepFileError(f"{path}: front matter must be a mapping of fields")
    for required in ("step", "slug", "title"):
        if required not in meta:
            raise StepFileError(f"{path}: front matter lacks '{required}'")
    return StepPage(
        number=int(meta["step"]),
        slug=str(meta["slug"]),
        title=str(meta["title"]),
        teaches=str(meta.get("teaches", "")),
        actions=_with_solution(path, list(meta.get("actions") or []), meta.get("solution")),
        body=text[match.end() :].strip(),
        source=path,
        extra={
            k: v
            for k, v in meta.items()
            if k not in ("step", "slug", "title", "teaches", "actions")
        },
    )


def _with_solution(path: Path, actions: list[Any], solution: Any) -> list[dict[str, Any]]:
    """An ``- solution: true`` entry replaced by the solution file's actions, as the engine does."""
    from lab.steps.load import StepFileError as EngineStepFileError
    from lab.steps.load import expand_solution_include

    try:
        expanded = expand_solution_include(
            path, actions, solution if isinstance(solution, str) else None
        )
    except EngineStepFileError as exc:
        raise StepFileError(str(exc)) from None
    return [a for a in expanded if isinstance(a, dict)]


def read_steps(directory: Path = STEPS_DIR) -> list[StepPage]:
    return sorted(
        (read_step_file(p) for p in directory.glob("[0-9][0-9]-*.md")), key=lambda s: s.number
    )


def load_run(data_dir: Path = DATA_DIR) -> dict[int, dict[str, Any]]:
    """Records of a captured ``lab verify --json`` run, by step number (empty when none)."""
    path = data_dir / "verify.json"
    if not path.exists():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    records = data.get("steps", data) if isinstance(data, dict) else data
    return {int(r["number"]): r for r in records if isinstance(r, dict) and "number" in r}


def default_values() -> dict[str, str]:
    endpoints = Settings().endpoints.as_dict()
    return {f"endpoints.{k}": v for k, v in endpoints.items()}


def fill(text: str, values: dict[str, str]) -> str:
    """Replace known ``${name}`` values; leave unknown ones visible as they are."""

    def sub(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return values.get(name, match.group(0))

    return _VALUE.sub(sub, text)


_JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


def shown_value(value: Any) -> str:
    """A captured value as the page shows it: a token is abbreviated, never printed whole."""
    text = value if isinstance(value, str) else json.dumps(value)
    return _JWT.sub(lambda m: m.group(0)[:16] + "…" + m.group(0)[-6:], text)


def action_kind(action: dict[str, Any]) -> str:
    for key in _KIND_KEYS:
        if key in action:
            return key
    return "unknown"


def render_action(action: dict[str, Any], values: dict[str, str], step_number: int = 0) -> str:
    kind = action_kind(action)
    heading = [f"#### `{action.get('id', '?')}`", ""]
    lines: list[str] = []
    if action.get("say"):
        lines += [fill(str(action["say"]), values), ""]
    spec = hide_secrets(action.get(kind))
    if kind == "request" and isinstance(spec, dict):
        lines += ["```http", _request_text(spec, values), "```", ""]
    else:
        dumped = yaml.safe_dump({kind: spec}, sort_keys=False, allow_unicode=True).strip()
        lines += ["```yaml", fill(dumped, values), "```", ""]
    expects = action.get("expect") or []
    if expects:
        lines += ['!!! success "Expected"', ""]
        for item in expects:
            lines.append(f"    - {_expect_text(item, values)}")
        lines.append("")
    if action.get("solution") is True:
        lines = _answer_block(lines, step_number)
    return "\n".join(heading + lines)


def _answer_block(lines: list[str], step_number: int) -> list[str]:
    """A challenge's answer, folded: the reader opens it only when they want the spoiler."""
    n = str(step_number) if step_number else "N"
    intro = (
        f"A plain `lab step {n}` stops before this action: it is yours to do. "
        f"`lab step {n} --solution`, `lab run` and `lab verify` apply it."
    )
    # Entries may hold several lines (a request with its body): indent every physical line.
    body = "\n".join([intro, "", *lines]).splitlines()
    return ['??? tip "Part of the answer (open it when you want the spoiler)"', ""] + [
        f"    {line}" if line else "" for line in body
    ]


def hide_secrets(value: Any) -> Any:
    """Literal secrets (a password, a client secret) as the engine prints them: ``***``.

    References such as ``${id_jag}`` stay: they teach where a value comes from.
    """
    from lab.steps.redact import REDACTED, SECRET_FIELDS

    if isinstance(value, dict):
        return {
            k: REDACTED
            if str(k).lower() in SECRET_FIELDS and isinstance(v, str) and not _VALUE.search(v)
            else hide_secrets(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [hide_secrets(v) for v in value]
    return value


def _request_text(spec: dict[str, Any], values: dict[str, str]) -> str:
    method = str(spec.get("method", "GET")).upper()
    lines = [f"{method} {fill(str(spec.get('url', '')), values)}"]
    for name, value in (spec.get("headers") or {}).items():
        lines.append(f"{name}: {fill(str(value), values)}")
    auth = spec.get("auth")
    if auth == "admin":
        lines.append("Authorization: Bearer <assertion signed by user.athenz_admin>")
    elif isinstance(auth, dict) and "bearer" in auth:
        lines.append(f"Authorization: Bearer {fill(str(auth['bearer']), values)}")
    elif isinstance(auth, dict) and "basic" in auth:
        lines.append("Authorization: Basic <client id and secret>")
    if "json" in spec:
        lines += ["", fill(json.dumps(spec["json"], indent=2), values)]
    elif "form" in spec:
        form = dict(spec["form"] or {})
        if isinstance(auth, dict) and "client_assertion" in auth:
            form["client_assertion_type"] = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
            form["client_assertion"] = f"<assertion signed by {auth['client_assertion']}>"
        lines += [""] + [f"{k}={fill(str(v), values)}" for k, v in form.items()]
    elif "body" in spec:
        lines += ["", fill(str(spec["body"]), values)]
    return "\n".join(lines)


def _expect_text(item: dict[str, Any], values: dict[str, str]) -> str:
    why = item.get("why")
    parts = [f"`{k}: {_short(v)}`" for k, v in item.items() if k != "why"]
    text = " ".join(parts)
    return fill(f"{text} — {why}" if why else text, values)


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 80 else text[:77] + "..."


def render_step_page(
    step: StepPage,
    steps: list[StepPage],
    run: dict[str, Any] | None,
    svg_name: str | None,
) -> str:
    values = default_values()
    if run:
        values.update({k: shown_value(v) for k, v in (run.get("captures") or {}).items()})
    out = [f"# Step {step.number}: {step.title}", ""]
    if step.teaches:
        out += [f"*Teaches: {step.teaches}*", ""]
    out += [fill(step.body, values), "", "## What the lab does", ""]
    out += [render_action(a, values, step.number) for a in step.actions]
    if run:
        out += _run_section(run, svg_name)
    elif svg_name:
        out += [
            "## What you will see",
            "",
            f"![terminal output of step {step.number}]({svg_name})",
            "",
        ]
    out += [
        f"*Source: `steps/{step.source.name}`. Run it with `lab step {step.number}`; "
        f"type it yourself with `lab step {step.number} --manual`.*",
        "",
    ]
    following = [s for s in steps if s.number > step.number]
    if following:
        nxt = following[0]
        out += [f"Next: [Step {nxt.number}: {nxt.title}]({nxt.number:02d}-{nxt.slug}.md)", ""]
    return "\n".join(out)


def _run_section(run: dict[str, Any], svg_name: str | None) -> list[str]:
    out = ["## From a real run", ""]
    status = run.get("status", "?")
    duration = run.get("duration_ms")
    took = f"{duration:.0f} ms" if isinstance(duration, (int, float)) else "? ms"
    out += [f"Status in the captured `lab verify` run: **{status}** ({took}).", ""]
    if svg_name:
        out += [
            "What `lab step` printed (the run used the default ports shown here):",
            "",
            f"![terminal output]({svg_name})",
            "",
        ]
    if run.get("sequence") and any(
        str(e.get("label", "")).startswith("exchanged") for e in run.get("lineage") or []
    ):
        # The same hops `lab step` draws as terminal swimlanes, as an SVG drawn at build time.
        from lab.render.sequence_svg import sequence_svg

        title = f"Step {run.get('number')}: the calls of the run"
        out += [
            "### The sequence",
            "",
            f'<figure class="lab-diagram">{sequence_svg(run["sequence"], title)}</figure>',
            "",
        ]
    tokens = [t for t in (_token_parts(t) for t in run.get("tokens") or []) if t]
    if tokens:
        out += ["### Tokens issued in this step", ""]
    for label, action, decoded in tokens[:MAX_TOKENS]:
        where = f" (action `{action}`)" if action else ""
        out += [f'??? note "Decoded {label}{where}"', "", "    ```json"]
        out += ["    " + line for line in json.dumps(decoded, indent=2).splitlines()]
        out += ["    ```", ""]
    return out


#: A step page shows at most this many decoded tokens (step 13 issues six).
MAX_TOKENS = 8


def _token_parts(token: Any) -> tuple[str, str, dict[str, Any]] | None:
    """(label, action, {header, claims}) from a ``lab verify --json`` token record.

    The record already carries the decoded header and claims (``TokenSeen.as_dict``); they are
    used as they are, so the raw token itself never reaches the page. A bare JWT string (older
    captures) is decoded without verification.
    """
    if isinstance(token, dict) and isinstance(token.get("claims"), dict):
        decoded = {"header": token.get("header") or {}, "claims": token["claims"]}
        return str(token.get("label", "token")), str(token.get("action", "")), decoded
    raw = token.get("token") if isinstance(token, dict) else token
    decoded_raw = _decode(raw)
    if decoded_raw is None:
        return None
    label = str(token.get("label", "token")) if isinstance(token, dict) else "token"
    return label, "", decoded_raw


def _decode(token: Any) -> dict[str, Any] | None:
    if not isinstance(token, str) or token.count(".") != 2:
        return None
    import jwt

    try:
        return {
            "header": jwt.get_unverified_header(token),
            "claims": jwt.decode(token, options={"verify_signature": False}),
        }
    except jwt.PyJWTError:
        return None


def render_steps_index(steps: list[StepPage], runs: dict[int, dict[str, Any]]) -> str:
    out = [
        "# Steps",
        "",
        "Seventeen steps, each building on the state the previous one left. Three deliberate "
        "failures are the heart of the lab: **F1** (no token, 401), **F2** (role configured, "
        "membership missing), **F3** (delegation not granted, the chain breaks).",
        "",
        "| # | step | teaches |" + (" last captured run |" if runs else ""),
        "|---|---|---|" + ("---|" if runs else ""),
    ]
    for step in steps:
        row = (
            f"| {step.number} | [{step.title}]({step.number:02d}-{step.slug}.md) | {step.teaches} |"
        )
        if runs:
            row += f" {runs.get(step.number, {}).get('status', '—')} |"
        out.append(row)
    out.append("")
    return "\n".join(out)


def render_cli_reference() -> str:
    """``lab --help`` and each command's help, straight from the typer app."""
    out = ["# CLI reference", "", "Generated from the `lab` command's own help text.", ""]
    try:
        import click
        import typer

        from lab.cli.main import app
    except Exception as exc:  # noqa: BLE001 - the page says why it is short instead of failing
        return "\n".join(
            out + [f"The CLI could not be loaded while building the docs: `{exc}`.", ""]
        )
    command = typer.main.get_command(app)
    out += _command_help(command, ["lab"], click)
    return "\n".join(out)


def _command_help(command: Any, path: list[str], click: Any) -> list[str]:
    ctx = click.Context(command, info_name=" ".join(path), terminal_width=90)
    with ctx:
        text = command.get_help(ctx)
    heading = "#" * min(2 + len(path) - 1, 4)
    out = [f"{heading} `{' '.join(path)}`", "", "```text", _plain(text), "```", ""]
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not getattr(sub, "hidden", False):
                out += _command_help(sub, [*path, name], click)
    return out


def _plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


# ---------------------------------------------------------------------- data files

REALM_FILE = REPO_ROOT / "keycloak" / "realm-idjag.json"
BASELINE_FILE = REPO_ROOT / "athenz" / "baseline.json"
DATA_FILES_PAGE = "reference/data-files.md"


def render_data_summary(realm_file: Path = REALM_FILE, baseline_file: Path = BASELINE_FILE) -> str:
    """What the realm and PDP baseline files hold today, read from the files themselves.

    Secrets (the client secret, user credentials) are named, never shown.
    """
    out = ["## What the files hold (generated from them)", ""]
    try:
        realm = json.loads(realm_file.read_text(encoding="utf-8"))
        baseline = json.loads(baseline_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return "\n".join(out + [f"The data files could not be read while building: `{exc}`.", ""])
    out += [
        f"Realm `{realm.get('realm')}`: access tokens live "
        f"{realm.get('accessTokenLifespan', '?')} s, "
        f"authorization codes {realm.get('accessCodeLifespan', '?')} s.",
        "",
    ]
    out += ["| client | type | flows | PKCE | redirect URIs |", "|---|---|---|---|---|"]
    for client in realm.get("clients", []):
        kind = "public" if client.get("publicClient") else "confidential (secret in the file)"
        flows = [
            name
            for key, name in (
                ("standardFlowEnabled", "code"),
                ("directAccessGrantsEnabled", "password"),
                ("serviceAccountsEnabled", "client credentials"),
            )
            if client.get(key)
        ]
        pkce = (client.get("attributes") or {}).get("pkce.code.challenge.method", "—")
        uris = ", ".join(f"`{u}`" for u in client.get("redirectUris", []))
        out.append(
            f"| `{client.get('clientId')}` | {kind} | {', '.join(flows)} | {pkce} | {uris} |"
        )
    out += ["", "| user | name | email | enabled |", "|---|---|---|---|"]
    for user in realm.get("users", []):
        name = f"{user.get('firstName', '')} {user.get('lastName', '')}".strip()
        out.append(
            f"| `{user.get('username')}` | {name} | {user.get('email', '')} | "
            f"{'yes' if user.get('enabled') else 'no'} |"
        )
    domains = [d.get("name", "?") for d in baseline.get("domains", []) if isinstance(d, dict)]
    out += [
        "",
        f"PDP baseline (`athenz/baseline.json`, version {baseline.get('version', '?')}): "
        + (
            f"domains {', '.join(f'`{d}`' for d in domains)}."
            if domains
            else "no domains — every domain, role and policy is created by the steps."
        ),
        "",
    ]
    return "\n".join(out)
