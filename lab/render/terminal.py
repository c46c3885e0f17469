"""Terminal rendering of a step run (rich), drawn from the one model of a run
(:func:`lab.render.run_model.step_model`, what ``lab verify --json`` writes).

Two renderings of the same record:

- the default, focused view is a lesson: the narrative's opening, then per action the request
  line, the status, the claims that matter for this step and what changed, ✓/✗ with the reason;
  tool lists once per step; long bodies summarized;
- ``--verbose`` adds every header, body and claim, the commands and the captured names.

Everything fits 80 columns. Prose wraps at word boundaries; commands are never wrapped inside a
word: they break between arguments with a `` \\`` continuation, so a copy pastes as it reads.
"""

from __future__ import annotations

import io
import json
import re
import shlex
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.markdown import Markdown
from rich.padding import Padding
from rich.rule import Rule
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from lab.render.run_model import KEY_CLAIMS, LANES, step_model
from lab.render.shown import shown_data
from lab.steps.model import StepResult

TIME_CLAIMS = ("exp", "iat", "nbf", "auth_time")
SHOWN_HEADERS = ("content-type", "www-authenticate", "location", "etag")
MAX_BODY_LINES = 30  # --verbose: a body longer than this is clipped
FOCUS_BODY_LINES = 8  # default view: a JSON body longer than this is summarized
COMPACT_JSON = 150  # default view: a JSON body this short (as one line) is shown on one line
LONG_VALUE = 120
PASS, FAIL = "✓", "✗"
INDENT = 2
#: Marks, among a step's seen things, a request line already shown (a repeat is shortened).
SEEN_REQUEST = "request:"
#: MCP calls before the tool call: the default view shows them on a step's first MCP action.
MCP_HANDSHAKE = ("server/discover", "initialize", "tools/list")


def print_step_result(
    console: Console,
    result: StepResult,
    *,
    show_body: bool = True,
    verbose: bool = False,
    program: str = "lab",
) -> None:
    model = step_model(result)
    for renderable in render_model(model, show_body=show_body, verbose=verbose, program=program):
        console.print(renderable)


def step_result_text(
    result: StepResult,
    width: int = 80,
    show_body: bool = True,
    verbose: bool = False,
    program: str = "lab",
) -> str:
    """The rendering as plain text (tests, logs, docs)."""
    console = Console(
        width=width, record=True, color_system=None, force_terminal=False, file=io.StringIO()
    )
    print_step_result(console, result, show_body=show_body, verbose=verbose, program=program)
    return "\n".join(line.rstrip() for line in console.export_text().splitlines()) + "\n"


def render_model(
    model: dict[str, Any], *, show_body: bool = True, verbose: bool = False, program: str = "lab"
) -> list[RenderableType]:
    # The model holds what servers and clients sent (bodies, headers, claims, error texts):
    # every string is made showable once here, so no renderer below prints a control sequence.
    model = shown_data(model)
    mode = "" if model["mode"] == "run" else f" [{model['mode']}]"
    # A Text title: "[check]" in a markup string would be swallowed as a style tag.
    out: list[RenderableType] = [
        Rule(Text(f"Step {model['number']} · {model['title']}{mode}"), style="bold")
    ]
    narrative = model["narrative"]
    if show_body and narrative["opening"]:
        out.extend(render_prose(narrative["opening"]))
    seen_tools: set[str] = set()
    for action in model["actions"]:
        out.extend(render_action(action, model, verbose=verbose, seen_tools=seen_tools))
    if model["message"] and not model["actions"]:
        out.append(
            Text(model["message"], style="yellow" if model["status"] == "skipped" else "red")
        )
    # The default view draws the lineage and the swimlanes for a whole chain (through the MCP
    # server's exchange to the document API); --verbose draws them whenever there are any.
    # The whole ID-JAG chain: an ID-JAG and the MCP server's exchanged token (steps 7 and 8
    # exchange without an ID-JAG; their diagrams are behind --verbose) ...
    labels = [str(e["label"]) for e in model["lineage"]]
    to_api = [h for h in model["sequence"] if h.get("to") == "document API"]
    whole_chain = (
        any(x.startswith("exchanged") for x in labels)
        and any("id-jag" in str(e.get("typ", "")) for e in model["lineage"])
        # ... that went through: a chain refused at the end (step 15's DENY) is drawn with
        # --verbose; the refusal is in its actions already.
        and bool(to_api)
        and (to_api[-1].get("status") or 500) < 400
    )
    if model["lineage"] and (verbose or whole_chain):
        out.append(render_lineage(model["lineage"]))
    if model["sequence"] and (verbose or whole_chain):
        out.append(Group(Text(""), Text("Sequence", style="bold"), Swimlanes(model["sequence"])))
    # A challenge stops before its answer and --check runs only the checks: the rest of the
    # narrative describes values of the full run, which these modes do not have.
    if (
        show_body
        and narrative["rest"]
        and model["status"] != "challenge"
        and model["mode"] != "check"
    ):
        out.extend(
            render_narrative_rest(narrative["rest"], model, verbose=verbose, program=program)
        )
    out.append(render_summary(model, program, verbose=verbose))
    return out


def render_narrative_rest(
    rest: str, model: dict[str, Any], *, verbose: bool, program: str = "lab"
) -> list[RenderableType]:
    """After the actions: --verbose gives the whole narrative; the default view, which must
    fit a few 80×24 screens, its closing paragraph (what the learner should now see) and where
    the whole explanation is."""
    paragraphs = [p for p in re.split(r"\n[ \t]*\n", rest.strip()) if p.strip()]
    if verbose or len(paragraphs) <= 1:
        return [Rule(style="dim"), *render_prose(rest)]
    # The rule that ends the actions says where the whole explanation is.
    pointer = Text(f"whole explanation: {program} step {model['number']} --verbose")
    return [Rule(pointer, style="dim", align="right"), *render_prose(paragraphs[-1])]


def render_summary(
    model: dict[str, Any], program: str = "lab", *, verbose: bool = False
) -> RenderableType:
    checks = model["checks"]
    passed = sum(c["passed"] for c in checks)
    status = model["status"]
    style = {"passed": "bold green", "skipped": "bold yellow", "challenge": "bold yellow"}.get(
        status, "bold red"
    )
    if status == "skipped" and model["mode"] == "check" and not checks:
        # A step that changes no state: its reason is printed above; "0/0 checks" would say
        # nothing (and look like a check that forgot to run).
        line = Text("NOTHING TO CHECK", style=style)
    else:
        line = Text(status.upper(), style=style)
        line.append(
            f"  {passed}/{len(checks)} checks  {model['duration_ms']:.0f} ms", style="default"
        )
    # --verbose rules the summary off; the default view saves the line (PASSED stands out).
    parts: list[RenderableType] = [Rule(style="dim"), line] if verbose else [line]
    if status in ("failed", "error") and model["message"]:
        parts.append(Text(model["message"], style="red"))
    if status == "challenge" and model["message"]:
        parts.append(Text(model["message"], style="yellow"))
    if status == "passed" and model["mode"] in ("run", "solution"):
        if model["next_step"] is not None:
            follow = Text(f"Next: {program} step {model['next_step']}", style="bold")
            parts[-1] = SideBySide(line, follow)  # on the PASSED line when it fits
        else:
            parts.append(Text("You have finished the lab: every step is done.", style="bold"))
    return Group(*parts)


# --------------------------------------------------------------------------------------------
# Prose and commands


FENCE = re.compile(r"^```[^\n]*\n(.*?)^```\s*$", re.S | re.M)


def render_prose(text: str) -> list[RenderableType]:
    """Markdown prose wrapped at word boundaries; fenced blocks kept as commands (never split
    inside a word, so they paste). ``<role>`` placeholders stay text, not inline HTML.

    A link is shown with its target, ``text (url)``, never as a terminal hyperlink (OSC 8) whose
    target the reader cannot see: the narrative holds values a server sent (captured values
    filled in), and ``[a harmless name](http://elsewhere)`` is one such value."""
    text = re.sub(r"<([A-Za-z][\w .-]*)>", r"&lt;\1&gt;", text)
    out: list[RenderableType] = []
    last = 0
    for match in FENCE.finditer(text):
        before = text[last : match.start()].strip()
        if before:
            out.append(Markdown(before, hyperlinks=False))
        out.append(Padding(CommandBlock(match.group(1).rstrip("\n")), (0, 0, 0, INDENT)))
        last = match.end()
    rest = text[last:].strip()
    if rest:
        out.append(Markdown(rest, hyperlinks=False))
    return out


class CommandBlock:
    """Shell text laid out to fit: long lines break between words with `` \\``, and a word
    longer than a line is cut with a backslash-newline (see :func:`fit_command`), so what is
    shown is whole and pastes back as the same command.

    ``indent`` indents the block itself rather than leaving it to a ``Padding``: the continuation
    of a cut word must start at column 0, or a paste would split the word at the indent."""

    def __init__(self, text: str, style: str = "cyan", flush: bool = False, indent: int = 0):
        self.text = text
        self.style = style
        #: Printed at column 0 (or at its own ``indent``): never inside a ``Padding``.
        self.flush = flush or indent > 0
        self.indent = indent

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        for line in fit_command(self.text, options.max_width, self.indent):
            yield Text(line, style=self.style, no_wrap=True, overflow="ignore")


def fit_command(text: str, width: int, indent: int = 0) -> list[str]:
    """``text`` as lines of at most ``width`` characters (``indent`` included), broken between
    shell words; a word longer than a line (a JWT, the JSON of `lab providers set '[…]'`) is cut
    with a backslash-newline, which the shell removes again, so the pasted command is the
    original one. A cut word continues at column 0: the shell would split it at any indent."""
    pad = " " * indent
    out: list[str] = []
    for logical in text.split("\n"):
        if len(logical) + indent <= width:
            out.append(pad + logical)
            continue
        words = shell_words(logical)
        if not words:
            out.append(pad + logical)
            continue
        lead = pad + re.match(r"\s*", logical).group(0)  # type: ignore[union-attr]
        current = lead + words[0]
        for word in words[1:]:
            if len(current) + 1 + len(word) + 2 <= width:
                current += " " + word
                continue
            out.append(current + " \\")
            current = lead + "    " + word
            while len(current) > width and width > 20:
                cut = cut_word(current, len(current) - len(word), width)
                if cut is None:
                    break
                line, current = cut
                out.append(line)
                word = current
        out.append(current)
    return out


def cut_word(line: str, start: int, width: int) -> tuple[str, str] | None:
    """Cut ``line``, whose last word begins at ``start``, into a first line of ``width``
    characters ending in a backslash and the rest of the word; None if it cannot be cut safely.

    A bare word is cut anywhere (backslash-newline joins it again). Inside single quotes a
    backslash is literal, so a ``'…'`` word closes its quote first and reopens it on the next
    line: ``'ab'\\⏎'cd'`` is the shell word ``abcd``. Other quoting is left whole."""
    word = line[start:]
    if "'" not in word:
        return line[: width - 1] + "\\", line[width - 1 :]
    quoted = word.startswith("'") and word.endswith("'") and word.count("'") == 2
    at = width - 2  # room for the closing quote and the backslash
    if not quoted or at <= start + 1:
        return None
    return line[:at] + "'\\", "'" + line[at:]


def shell_words(line: str) -> list[str]:
    """Split a shell line into words keeping their quoting, e.g. ``"Bearer $(lab x)"`` whole."""
    lexer = shlex.shlex(line.strip(), posix=False)
    lexer.whitespace_split = True
    lexer.commenters = ""
    try:
        words = list(lexer)
    except ValueError:
        return line.split()
    # shlex (non-POSIX) splits $(a b) outside quotes; glue such words back together.
    glued: list[str] = []
    depth = 0
    for word in words:
        if depth > 0:
            glued[-1] += " " + word
        else:
            glued.append(word)
        if not word.startswith(("'", '"')):
            depth = max(0, depth + word.count("(") - word.count(")"))
    return glued


# --------------------------------------------------------------------------------------------
# Actions


def render_action(
    action: dict[str, Any], model: dict[str, Any], *, verbose: bool, seen_tools: set[str]
) -> list[RenderableType]:
    title = Text("▸ ", style="bold cyan")
    if verbose or not action["say"]:
        title.append(action["id"], style="bold")
        if action["say"]:
            title.append(f" — {action['say']}")
    else:
        # The default view is read, not debugged: the sentence says what happens (a failed
        # check names the action id in its details).
        title.append(action["say"])
    # --verbose separates actions by a blank line; the default view keeps them on few screens.
    out: list[RenderableType] = [Text(""), title] if verbose else [HangingText(title)]
    body: list[RenderableType] = []
    if verbose:
        command = action["curl"] or action["command"]
        if command:
            body.append(CommandBlock(shorten_tokens(command), indent=INDENT))
        with_request = action["kind"] in ("agent", "mcp")
        body.extend(render_call_verbose(call, with_request) for call in action["calls"])
        if shows_result(action):
            body.append(render_json(action["result"]))
    else:
        if not action["calls"] and action["command"]:
            # Shell text, cut where the shell joins it again: rich's own wrapping folded the
            # JSON of `lab providers set '[…]'` mid-URL, and a copied command then broke.
            body.append(CommandBlock(f"$ {shorten_tokens(action['command'])}", indent=INDENT))
        if is_sign_in(action):
            body.append(sign_in_line(action["calls"]))
        else:
            body.extend(render_calls_focused(action, seen_tools))
        if action["kind"] == "audit" and isinstance(action["result"], dict):
            body.append(render_audit_summary(action["result"]))
        elif shows_result(action) and action["kind"] != "wait":
            body.append(render_focused_json(action["result"]))
    for token in action["tokens"]:
        if verbose or shows_token(token, action):
            body.append(render_token(token, verbose=verbose))
    if verbose and action["captured"]:
        body.append(Text(f"captured: {', '.join(action['captured'])}", style="dim"))
    for check in action["checks"]:
        body.extend(render_check(check, action, model, verbose=verbose))
    if action["error"]:
        body.append(Text(f"{FAIL} {action['error']}", style="bold red"))
    if not verbose:
        first = body[0] if body else None
        if isinstance(first, StatusLine) and first.plain.startswith("→"):
            # A repeated request's bare status ends the title's line when it fits there.
            body.pop(0)
            out[-1] = SideBySide(title, first, under=HangingText(title))
        # A command block lays itself out (its cut words continue at column 0), in its place;
        # the lines between command blocks pack.
        grouped: list[RenderableType] = []
        lines: list[RenderableType] = []
        for item in body:
            if isinstance(item, CommandBlock):
                if lines:
                    grouped.append(PackedLines(lines))
                    lines = []
                grouped.append(item)
            else:
                lines.append(item)
        if lines:
            grouped.append(PackedLines(lines))
        body = grouped
    out.extend(
        b if isinstance(b, CommandBlock) and b.flush else Padding(b, (0, 0, 0, INDENT))
        for b in body
    )
    return out


def is_sign_in(action: dict[str, Any]) -> bool:
    """An agent action whose calls all went to the IdP: a sign-in (step 9 shows each call)."""
    calls = action["calls"]
    return (
        action["kind"] == "agent"
        and len(calls) > 1
        and all(c["party"] == "IdP" and not c["mcp"] for c in calls)
    )


def sign_in_line(calls: list[dict[str, Any]]) -> StatusLine:
    """The sign-in's calls on one line: how many, and the status of the last (the token)."""
    line = StatusLine(f"sign-in at the IdP: {len(calls)} calls ", style="cyan")
    line.append_text(status_text(calls[-1]))
    for call in calls:
        if (call["status"] or 0) >= 400 and call["summary"]:
            line.append(f"\n  {call['summary']}", style="yellow")
    return line


def shows_result(action: dict[str, Any]) -> bool:
    """A non-HTTP action (keygen, audit, wait) shows its result; HTTP actions show calls."""
    return bool(
        not action["calls"] and action["result"] and action["kind"] not in ("request", "setting")
    )


def render_calls_focused(action: dict[str, Any], seen_tools: set[str]) -> list[RenderableType]:
    """One line per call (request line and status), plus what the learner needs from it."""
    out: list[RenderableType] = []
    for call in action["calls"]:
        mcp = call["mcp"]
        if mcp and mcp["method"].startswith("notifications/"):
            continue
        if mcp and mcp["method"] in MCP_HANDSHAKE and (call["status"] or 0) < 400:
            # The handshake is shown once per step; later actions show their tool call.
            if f"#{mcp['method']}" in seen_tools:
                continue
            seen_tools.add(f"#{mcp['method']}")
        if mcp and (call["status"] or 0) >= 400 and not mcp.get("error") and out:
            last = out[-1]
            if (
                isinstance(last, Text)
                and last.plain.startswith("MCP ")
                and last.plain.endswith(f"  → {call['status']}")
            ):
                # The SDK's next probe refused the same way: one line names both.
                head = last.plain.rsplit("  → ", 1)[0]
                merged = Text(f"{head}, {mcp.get('method')}  ", style="cyan")
                merged.append_text(status_text(call))
                out[-1] = merged
                continue
        if mcp:
            line = Text(f"MCP {mcp.get('method')}", style="cyan")
            if mcp.get("tool"):
                line.append(f" {mcp['tool']}", style="bold cyan")
            line.append("  ")
            line.append_text(status_text(call))
            if (call["status"] or 0) < 400:  # a refused call is not "ok"
                line.append_text(mcp_outcome(mcp, seen_tools))
            out.append(line)
            out.extend(call_details(call, action, seen_tools))
            continue
        request = f"{SEEN_REQUEST}{call['method']} {call['party']} {call['path']}"
        repeated = request in seen_tools
        seen_tools.add(request)
        status = call["status"] or 0
        if repeated and status >= 400 and call["summary"] and not action["shown_headers"]:
            # An endpoint this step already showed: the status and the error on one line.
            out.append(HangingText(Text.assemble(status_text(call), "  ", call["summary"]), 2))
            continue
        if repeated and not action["shown_headers"]:
            out.append(StatusLine.assemble(status_text(call)))  # what follows may join it
            out.extend(call_details(call, action, seen_tools))
            continue
        out.append(RequestLine(call))
        out.extend(call_details(call, action, seen_tools))
    return out


class RequestLine:
    """``METHOD part /path  → status`` on one line: a path too long for the width loses its
    middle (``…``), never the status."""

    def __init__(self, call: dict[str, Any]) -> None:
        self.call = call

    def full_line(self) -> Text:
        line = Text(f"{self.call['method']} {self.call['party']} {self.call['path']}", "cyan")
        line.append("  ")
        line.append_text(status_text(self.call))
        return line

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        status = status_text(self.call)
        head = f"{self.call['method']} {self.call['party']} "
        path = self.call["path"]
        room = options.max_width - len(head) - 2 - len(status.plain)
        if len(path) > room > 10:
            keep = room - 1
            path = path[: keep // 2] + "…" + path[len(path) - (keep - keep // 2) :]
        line = Text(head + path, style="cyan")
        line.append("  ")
        line.append_text(status)
        yield line


def status_text(call: dict[str, Any]) -> Text:
    status = call["status"]
    if status is None:
        return Text(f"→ no response: {call['error']}", style="red")
    style = "green" if status < 400 else "yellow" if status < 500 else "red"
    return Text(f"→ {status}", style=f"bold {style}")


def call_details(
    call: dict[str, Any], action: dict[str, Any], seen_tools: set[str]
) -> list[RenderableType]:
    lines: list[RenderableType] = []
    mcp = call["mcp"]
    headers = call["response_headers"]
    for name in action["shown_headers"]:
        if headers.get(name):
            lines.append(Text(f"{_header_name(name)}: {headers[name]}", style="yellow"))
    if not mcp:
        challenge = str(headers.get("www-authenticate") or "") if lines else ""
        details = body_details(call, action)
        if challenge and all(_said_in(d, challenge) for d in details):
            details = []  # the shown challenge already carries the error and its description
        lines.extend(details)
    return [Padding(line, (0, 0, 0, INDENT)) for line in lines]


def _said_in(detail: RenderableType, challenge: str) -> bool:
    """An error summary (``code: description``) that the WWW-Authenticate header repeats."""
    if not isinstance(detail, Text):
        return False
    code, _, description = detail.plain.partition(": ")
    return f'error="{code}"' in challenge and description.strip() in challenge


def mcp_outcome(mcp: dict[str, Any], seen_tools: set[str]) -> Text:
    """What an MCP call gave, on its own line's end: the server, the tools (once), ok."""
    if mcp.get("error"):
        # The SDK's "Error executing tool NAME: " prefix repeats the line above (--verbose).
        error = re.sub(r"^Error executing tool [\w.-]+: ", "", str(mcp["error"]))
        return Text(f"\n  {error}", style="yellow")
    if mcp.get("tools") is not None:
        key = ",".join(mcp["tools"])
        if key in seen_tools:
            return Text(" (the same tools)", style="dim")
        seen_tools.add(key)
        return Text(f": {', '.join(mcp['tools'])}", style="dim")
    if mcp.get("method") == "initialize" and mcp.get("server"):
        return Text(f" ({mcp['server']})", style="dim")
    if mcp.get("tool"):
        return Text(", ok", style="green")
    return Text("")


def body_details(call: dict[str, Any], action: dict[str, Any]) -> list[RenderableType]:
    status = call["status"] or 0
    summary = call["summary"]
    if not summary:
        return []
    if status >= 400:
        return [Text(summary, style="yellow")]
    if action["kind"] not in ("request", "setting"):
        return []
    data = _json(call["response_body"])
    if isinstance(data, dict) and "access_token" in data and not _reads_response(action):
        return []  # the token is decoded below; the rest of the response: --verbose
    if isinstance(data, dict) and "access_token" in data:
        # The token itself is decoded below; the rest of a token response fits one line.
        rest = ", ".join(
            f"{k} {v}" for k, v in data.items() if not str(k).endswith("token") and k != "scope"
        )
        return [Text(f"token response: {rest}", style="dim")]
    if data is not None and len(compact := json.dumps(_shorten_in(data))) <= COMPACT_JSON:
        return [Text(compact)]  # a small body on a line or two, not a column of braces
    if data is not None and _json_lines(data) <= FOCUS_BODY_LINES:
        return [render_json(data)]
    lines = _json_lines(data) if data is not None else 0
    more = f" ({lines} lines; --verbose shows it)" if lines else ""
    return [Text(f"{summary}{more}", style="dim")]


def render_audit_summary(result: dict[str, Any]) -> RenderableType:
    """An audit action in a few words: how many records (of this run: after the run start
    `lab reset` recorded), allows and denies, the last decision, and a verdict."""
    records = [r for r in result.get("records") or [] if isinstance(r, dict)]
    decisions = [str(r.get("decision")) for r in records]
    text = Text(f"{len(records)} record(s)", style="dim")
    if result.get("run_start") is not None:
        text.append(f" since the last lab reset (after #{result['run_start']})")
    text.append(f": {decisions.count('allow')} allow, {decisions.count('deny')} deny")
    if records:
        last = records[-1]
        who = " for ".join(
            str(last[k]) for k in ("client", "subject") if last.get(k) not in (None, "")
        )
        text.append(f"; last #{last.get('seq', '?')}: {last.get('decision')} {who}")
    if result.get("valid") is True:
        text.append("; the chain verifies")
    elif result.get("valid") is False:
        problems = result.get("problems") or []
        text.append(f"; broken: {_short('; '.join(map(str, problems)), 160)}")
    return text


def _reads_response(action: dict[str, Any]) -> bool:
    """Whether the action's expectations read a field of a token response besides the token
    (``issued_token_type``, ``token_type``, ``expires_in`` ...)."""
    return any(
        c["query"].startswith("json $.") and not c["query"].startswith("json $.access_token")
        for c in action["checks"]
    )


def render_focused_json(data: Any) -> RenderableType:
    if _json_lines(data) <= FOCUS_BODY_LINES:
        return render_json(data)
    keys = ", ".join(list(data)[:6]) if isinstance(data, dict) else f"{len(data)} items"
    return Text(f"result: {keys} ({_json_lines(data)} lines; --verbose shows it)", style="dim")


def render_call_verbose(call: dict[str, Any], with_request: bool) -> RenderableType:
    parts: list[RenderableType] = []
    if with_request:
        parts.append(Text(f"→ {call['method']} {call['url']}", style="cyan", overflow="fold"))
    if call["status"] is None:
        parts.append(Text(f"← no response: {call['error']}", style="red"))
        return Group(*parts)
    status = call["status"]
    style = "green" if status < 400 else "yellow" if status < 500 else "red"
    parts.append(Text(f"← {status}", style=f"bold {style}"))
    for name in SHOWN_HEADERS:
        value = call["response_headers"].get(name)
        if value:
            parts.append(
                Text(
                    f"  {_header_name(name)}: {value}",
                    style="dim" if name != "www-authenticate" else "yellow",
                    overflow="fold",
                )
            )
    body = call["response_body"] or ""
    mcp = call["mcp"]
    if "text/html" in call["response_headers"].get("content-type", ""):
        # A login page is for a browser; the learner needs to know it was served, not its markup.
        parts.append(Text(f"  ({call['summary']})", style="dim"))
    elif mcp and mcp.get("method") == "initialize":
        parts.append(
            Text(
                f"  (MCP initialize: server {mcp.get('server')}, protocol {mcp.get('protocol')})",
                style="dim",
            )
        )
    elif body.strip():
        parts.append(render_body_text(body))
    return Group(*parts)


def render_body_text(body: str) -> RenderableType:
    data = _json(body)
    if data is None:
        lines = body.splitlines()
        clipped = "\n".join(lines[:MAX_BODY_LINES]) + (
            f"\n… {len(lines) - MAX_BODY_LINES} more lines" if len(lines) > MAX_BODY_LINES else ""
        )
        return Text(clipped)
    return render_json(data)


def render_json(data: Any) -> RenderableType:
    text = json.dumps(_shorten_in(data), indent=2, ensure_ascii=False, default=str)
    lines = text.splitlines()
    if len(lines) > MAX_BODY_LINES:
        text = "\n".join(lines[:MAX_BODY_LINES]) + f"\n… {len(lines) - MAX_BODY_LINES} more lines"
    return Syntax(text, "json", word_wrap=True, theme="ansi_dark")


def render_token(token: dict[str, Any], *, verbose: bool) -> RenderableType:
    if not verbose:
        return render_token_focused(token)
    title = Text(f"{token['label']}  {token['typ']}", style="bold magenta")
    if verbose:
        title.append(f"  fp {token['fingerprint']}", style="dim")
    table = Table(show_header=False, box=None, padding=(0, 1), pad_edge=False)
    table.add_column("name", no_wrap=True)
    table.add_column("value", overflow="fold")
    claims = token["claims"]
    if verbose:
        for name in ("alg", "kid", "typ"):
            if name in token["header"]:
                table.add_row(
                    Text(f"header.{name}", style="bold yellow" if name == "typ" else "dim"),
                    str(token["header"][name]),
                )
        names: Iterable[str] = claims
    else:
        names = token["focus"]
    for name in names:
        table.add_row(_claim_label(name), claim_value(name, claims[name]))
    parts: list[RenderableType] = [title, Padding(table, (0, 0, 0, 1))]
    if token["changes"] and verbose:
        parts.append(render_changes(token))
    elif token["changes"]:
        names = ", ".join(c["claim"] for c in token["changes"])
        since = token["previous"] or "the previous token"
        parts.append(Padding(Text(f"changed since {since}: {names}", style="dim"), (0, 0, 0, 1)))
    return Group(*parts)


def render_token_focused(token: dict[str, Any]) -> RenderableType:
    """One wrapped paragraph: the token's label and type, the claims that matter, then what
    changed since the token before it (every claim: --verbose)."""
    text = TokenLine(f"{token['label']} {token['typ']}:", style="bold magenta")
    claims = token["claims"]
    # The claims that matter: those the step declares (show:) or its expectations read. A
    # token no expectation reads shows what changed only (every claim: --verbose, --json).
    for name in token["focus"] if token.get("focus_declared", True) else ():
        text.append("  ")
        text.append_text(_claim_label(name))
        text.append(" ")
        text.append_text(claim_value(name, claims[name]))
    if token["changes"]:
        # Changed since the token before it in the chain (--verbose names it, with values).
        names = ", ".join(c["claim"] for c in token["changes"])
        text.append(f"  (changed: {names})", style="dim")
    return HangingText(text, hang=1)


def shows_token(token: dict[str, Any], action: dict[str, Any]) -> bool:
    """The default view leaves out the IdP's own access/refresh tokens (not links of the
    chain) unless the step's expectations read them."""
    if token["typ"].lower() not in ("jwt", "refresh"):
        return True
    # The ID token too: step 9 reads its claims; a later step's sign-in only needs the ✓.
    return any(
        c["query"].startswith(f"token {token['label']}")
        or c["query"].startswith(f"token $.{token['label']}")
        for c in action["checks"]
    )


def render_changes(token: dict[str, Any]) -> RenderableType:
    previous = token["previous"] or "the previous token"
    text = Text(f" changed since {previous}:", style="dim")
    for change in token["changes"]:
        text.append(f"\n   {change['claim']}: ", style="bold yellow")
        text.append(f"{_short(change['before'])} → {_short(change['after'])}")
    return text


def render_check(
    check: dict[str, Any], action: dict[str, Any], model: dict[str, Any], *, verbose: bool
) -> list[RenderableType]:
    mark = Text(f"{PASS} " if check["passed"] else f"{FAIL} ")
    mark.stylize("bold green" if check["passed"] else "bold red")
    line = Text.assemble(mark, check["why"] or check["check"])
    if check["passed"] and not verbose:
        passed = PassedCheck()
        passed.append_text(line)
        return [HangingText(passed)]
    if check["passed"]:
        if verbose:
            line.append(
                f"  ({check['query']} {check['predicate']} "
                f"{_short(json.dumps(check['expected'], default=str))})",
                style="dim",
            )
        return [HangingText(line)]
    details = Text(style="red")
    details.append(f"{model['file']}: action {action['id']}: {check['check']}")
    details.append(f"\nexpected: {_short(check['expected'], 200)}")
    details.append(f"\nactual:   {_short(check['actual'], 200)}")
    if check["error"]:
        details.append(f"\nerror:    {check['error']}")
    parts: list[RenderableType] = [HangingText(line), Padding(details, (0, 0, 0, 4))]
    reproduce = check.get("reproduce")
    if reproduce:
        parts.append(Text("    reproduce with:", style="dim"))
        parts.append(CommandBlock(reproduce, flush=True))
    return parts


class SideBySide:
    """Two lines on one when both fit (three spaces apart), else one under the other: a
    command is never wrapped inside to make it fit."""

    def __init__(self, left: Text, right: Text, under: RenderableType | None = None) -> None:
        self.left, self.right = left, right
        self.under = under  # how the left one is drawn when they do not fit side by side

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if len(self.left.plain) + 3 + len(self.right.plain) <= options.max_width:
            yield Text.assemble(self.left, "   ", self.right)
        else:
            yield self.left if self.under is None else self.under
            yield Padding(self.right, (0, 0, 0, INDENT)) if self.under is not None else self.right


class PassedCheck(Text):
    """A passed check's line (``✓ why``) in the default view: it may share a line."""


class PackedLines:
    """The default view's lines of one action, with a passed check moved up onto the line
    before it (a request's status line, the sign-in line or another passed check) when both
    fit whole on one line: short lines stop costing a line each, and nothing is cut or
    wrapped mid-sentence to make it fit."""

    def __init__(self, items: list[RenderableType]) -> None:
        self.items = items

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = options.max_width
        current: Text | None = None
        for item in self.items:
            text = _one_line(item, width)
            if (
                current is not None
                and isinstance(text, PassedCheck | TokenLine)
                and len(current.plain) + 2 + len(text.plain) <= width
            ):
                current = Text.assemble(current, "  ", text)
                continue
            if current is not None:
                yield current
                current = None
            if text is not None:
                current = text
            else:
                yield item
        if current is not None:
            yield current


def _one_line(item: RenderableType, width: int) -> Text | None:
    """The item as one line another may join, or None (it renders as it is)."""
    if isinstance(item, RequestLine):
        text = item.full_line()
    elif isinstance(item, HangingText) and isinstance(item.text, PassedCheck | TokenLine):
        text = item.text
    elif isinstance(item, StatusLine):
        text = item
    else:
        return None
    return text if len(text.plain) <= width and "\n" not in text.plain else None


class StatusLine(Text):
    """A call's status line that a passed check may join (the sign-in line)."""


class TokenLine(Text):
    """A token in the default view's few words: it may join a status line before it."""


class HangingText:
    """A ✓/✗ line whose continuation lines are indented under the text, not the mark."""

    def __init__(self, text: Text, hang: int = 2) -> None:
        self.text = text
        self.hang = hang

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        # The first line has the whole width; the rest hang under the text.
        lines = self.text.wrap(console, options.max_width)
        first, *rest = lines or [Text("")]
        if rest:
            # Re-wrap the continuation at the narrower width.
            tail = Text(" ").join(rest)
            rest = list(tail.wrap(console, options.max_width - self.hang))
        yield first
        for line in rest:
            yield Text.assemble(" " * self.hang, line)


# --------------------------------------------------------------------------------------------
# Lineage and sequence


def render_lineage(entries: list[dict[str, Any]]) -> RenderableType:
    """Each token of the chain once, one wrapped line of its key claims."""
    parts: list[RenderableType] = [
        Text(""),
        Text(f"Token lineage: {len(entries)} tokens, each once", style="bold"),
    ]
    for index, entry in enumerate(entries, start=1):
        line = Text(f"{index} ", style="bold")
        line.append(entry["label"], style="bold magenta")
        line.append(f" ({entry['typ']})")
        for name, value in entry["claims"].items():
            shown = claim_value(name, value).plain
            line.append(f"  {name} ", style="bold yellow")
            line.append(_short(shown, 66))
        parts.append(HangingText(line, hang=4))
    return Group(*parts)


class Swimlanes:
    """The sequence of calls as swimlanes: one column per part, one arrow per call."""

    def __init__(self, hops: list[dict[str, Any]]) -> None:
        self.hops = hops

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield from swimlane_lines(self.hops, options.max_width)


def swimlane_lines(hops: list[dict[str, Any]], width: int) -> list[Text]:
    lanes = [lane for lane in LANES if any(lane in (h["from"], h["to"]) for h in hops)]
    if len(lanes) < 2:
        return []
    step = max(8, (width - 2) // len(lanes))
    centers = {lane: 1 + step // 2 + i * step for i, lane in enumerate(lanes)}
    right = min(width, centers[lanes[-1]] + step // 2 + 1)

    def blank() -> list[str]:
        row = [" "] * right
        for x in centers.values():
            row[x] = "│"
        return row

    header = [" "] * right
    for lane, x in centers.items():
        name = lane[: step - 1]
        start = max(0, min(right - len(name), x - len(name) // 2))
        header[start : start + len(name)] = list(name)
    out = [Text("".join(header).rstrip(), style="bold")]
    for hop in hops:
        out.extend(hop_lines(hop, centers, blank, right))
    return out


def hop_lines(hop: dict[str, Any], centers: dict[str, int], blank: Any, right: int) -> list[Text]:
    """One arrow with its label inside when it fits, else the label on a line above."""
    a, b = centers[hop["from"]], centers[hop["to"]]
    status = "" if hop["status"] is None else f" {hop['status']}"
    label = f"{hop['call']}{status}"
    failed = isinstance(hop["status"], int) and hop["status"] >= 400
    style = "red" if failed else "cyan"
    low, high = min(a, b), max(a, b)
    arrow = blank()
    for x in range(low + 1, high):
        arrow[x] = "─"
    arrow[b] = "▶" if b > a else "◀"
    arrow[a] = "├" if b > a else "┤"
    if len(label) + 4 <= high - low - 1:
        start = low + 2
        arrow[start : start + len(label) + 2] = list(f" {label} ")
        line = Text("".join(arrow).rstrip(), style="dim")
        line.stylize(style, start + 1, start + 1 + len(label))
        return [line]
    row = blank()
    label = label[: max(0, right - 2)]
    start = max(0, min(low + 2, right - len(label)))
    row[start : start + len(label)] = list(label)
    above = Text("".join(row).rstrip())
    above.stylize(style, start, start + len(label))
    return [above, Text("".join(arrow).rstrip(), style="dim")]


# --------------------------------------------------------------------------------------------
# Small helpers


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


def _json(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _json_lines(data: Any) -> int:
    return len(json.dumps(_shorten_in(data), indent=2, default=str).splitlines())


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
