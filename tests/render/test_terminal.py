"""Terminal rendering: 80 columns, decoded tokens with key claims, diffs, ✓/✗ with reproduction."""

from __future__ import annotations

import dataclasses
import io
import json
import re
from pathlib import Path

from rich.console import Console

from lab.agent.recorder import Exchange
from lab.render.run_model import step_model
from lab.render.terminal import print_step_result, shorten_tokens, step_result_text
from lab.steps.model import ActionResult, CheckResult, StepResult
from tests.render.results import passed_and_failed, token_seen


def test_verbose_step_shows_decoded_tokens_and_diff(tmp_path: Path) -> None:
    ok = passed_and_failed(tmp_path)[0]
    text = step_result_text(ok, verbose=True)
    assert all(len(line) <= 80 for line in text.splitlines())
    assert "access_token  at+jwt  fp " in text
    assert "sub         human.idjag-learner" in text
    assert "(" in text and "UTC)" in text  # exp shown as a time too
    assert "changed since get.access_token:" in text
    assert "client_id: (absent) → mcp.api-mcp" in text
    assert 'act: (absent) → {"sub": "mcp.api-mcp"}' in text
    assert ok.tokens[0].token not in text  # raw tokens stay in reports, not on screen
    assert "✓ The learner holds the role." in text
    assert "PASSED  1/1 checks" in text and "Next: lab step 5" in text
    assert "You now hold docs-getter." in text


def test_failed_check_shows_expected_actual_and_reproduction(tmp_path: Path) -> None:
    text = step_result_text(passed_and_failed(tmp_path)[1])
    assert "✗ The MCP server lets the learner in." in text
    assert "steps/08-protect-mcp.md: action call: status equals 200" in text
    assert "expected: 200" in text and "actual:   403" in text
    assert "reproduce with:" in text and "lab mcp call list_docs --token T" in text
    assert "FAILED  0/1 checks" in text and "Next:" not in text


def test_action_error_is_shown(tmp_path: Path) -> None:
    text = step_result_text(passed_and_failed(tmp_path)[2])
    assert "✗ steps/09-sign-in.md: action sign_in: connection refused" in text
    assert "ERROR" in text


def test_key_claims_are_highlighted_on_a_colour_terminal(tmp_path: Path) -> None:
    out = io.StringIO()
    # no_color=False: a NO_COLOR left in the environment by another test must not decide this.
    console = Console(
        file=out, width=80, force_terminal=True, color_system="standard", no_color=False
    )
    print_step_result(console, passed_and_failed(tmp_path)[0], verbose=True)
    assert "\x1b[1;33msub" in out.getvalue()  # bold yellow claim name


def test_shorten_tokens_keeps_head_and_tail() -> None:
    token = "eyJhbGciOiJFUzI1NiJ9." + "a" * 40 + "." + "b" * 40
    assert shorten_tokens(f"Bearer {token}") == "Bearer eyJhbGciOi…bbbbbb"


def test_lineage_and_sequence_follow_the_chain(tmp_path: Path) -> None:
    from dataclasses import replace

    from lab.agent.recorder import Exchange
    from lab.steps.model import ActionResult

    ok = passed_and_failed(tmp_path)[0]
    calls = tuple(
        Exchange("POST", url, 200, {}, "", {}, "", 1.0)
        for url in (
            "http://127.0.0.1:1/realms/idjag/protocol/openid-connect/token",
            "http://127.0.0.1:2/zts/v1/oauth2/token",
            "http://127.0.0.1:3/mcp",
        )
    )
    tool = {"data": {"docs": [], "exchanged_token": {"sub": "human.idjag-learner", "aud": "api"}}}
    agent = ActionResult("prompt", "agent", "Prompt.", calls, tool)
    text = step_result_text(replace(ok, actions=(*ok.actions, agent)), verbose=True)
    assert all(len(line) <= 80 for line in text.splitlines())
    lineage = text.split("Token lineage", 1)[1]
    assert lineage.index("access_token") < lineage.index("exchanged by the MCP server")
    assert lineage.count("exchanged by the MCP server") == 1  # each token once
    assert re.search(r"\bact\b", lineage) and "mcp.api-mcp" in lineage
    sequence = text.split("Sequence", 1)[1]
    lanes = sequence.splitlines()[1]
    assert re.search(r"agent\s+IdP\s+PDP\s+MCP server\s+document API", lanes)
    assert "code → ID token 200" in sequence and "POST /mcp 200" in sequence
    assert "RFC 8693 exchange → aud api 200" in sequence
    assert "◀" in sequence and "▶" in sequence  # arrows both ways: swimlanes, not a table


def test_html_pages_and_mcp_handshakes_are_summarised() -> None:
    from lab.agent.recorder import Exchange
    from lab.render.run_model import call_model
    from lab.render.terminal import render_call_verbose

    console = Console(file=io.StringIO(), width=80, record=True, color_system=None)
    page = Exchange("GET", "http://h/realms/idjag/auth", 200, {}, "", {"content-type": "text/html"},
                    "<html>" + "x" * 500 + "</html>", 1.0)  # fmt: skip
    result = {"protocolVersion": "2025-11-25", "serverInfo": {"name": "docs"}}
    init = json.dumps({"jsonrpc": "2.0", "id": 1, "result": result})
    handshake = Exchange(
        "POST", "http://h/mcp", 200, {}, "", {"content-type": "application/json"}, init, 1.0
    )
    console.print(render_call_verbose(call_model(page), with_request=True))
    handshake.request_body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize"})
    console.print(render_call_verbose(call_model(handshake), with_request=False))
    text = console.export_text()
    assert "(an HTML page, 513 characters)" in text and "xxxx" not in text
    assert "(MCP initialize: server docs, protocol 2025-11-25)" in text


def test_default_view_is_focused_opening_first_claims_that_matter(tmp_path: Path) -> None:
    from dataclasses import replace

    ok = passed_and_failed(tmp_path)[0]
    # The step declares the claims that matter here (show:, or claims its expectations read).
    declared = replace(ok, actions=(replace(ok.actions[0], show=("client_id",)),))
    text = step_result_text(declared)
    lines = text.splitlines()
    assert lines[1].startswith("You now hold docs-getter")  # the narrative's opening first
    assert "fp " not in text and "header.alg" not in text  # every claim only with --verbose
    assert "client_id mcp.api-mcp" in " ".join(text.split())  # a claim the step declares
    assert "✓ The learner holds the role." in text and "(status equals 200)" not in text
    # Without a declaration the default view says only what changed (claims: --verbose).
    plain = " ".join(step_result_text(ok).split())
    assert "client_id mcp.api-mcp" not in plain and "(changed: act, client_id)" in plain


def test_copyable_commands_break_between_words_only_and_paste_back_whole() -> None:
    import subprocess

    from lab.render.terminal import fit_command

    token = "eyJhbGciOiJFUzI1NiJ9." + "a" * 120 + "." + "b" * 40
    command = (
        "printf '%s|' -sS -i -X POST http://127.0.0.1:8443/zts/v1/oauth2/token -H "
        "'Content-Type: application/x-www-form-urlencoded' --data-urlencode "
        f'"subject_token={token}" --data-urlencode scope=api:role.docs-getter'
    )
    lines = fit_command(command, 60)
    assert all(len(line) <= 60 for line in lines)
    assert all(line.endswith("\\") for line in lines[:-1])
    pasted = subprocess.run(["bash", "-c", "\n".join(lines)], capture_output=True, text=True)
    original = subprocess.run(["bash", "-c", command], capture_output=True, text=True)
    assert pasted.stdout == original.stdout and f"subject_token={token}|" in pasted.stdout


def test_default_view_lists_the_tools_once_and_shortens_a_repeated_request(tmp_path: Path) -> None:
    """Issue #17: "every MCP call dumps the tool list" — once per step in the default view."""
    from dataclasses import replace

    from lab.agent.recorder import Exchange
    from lab.steps.model import ActionResult

    def rpc(method: str, result: dict) -> Exchange:
        call = Exchange("POST", "http://127.0.0.1:3/mcp", 200, {}, "", {},
                        json.dumps({"jsonrpc": "2.0", "id": 1, "result": result}), 1.0)  # fmt: skip
        call.request_body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method})
        return call

    tools = {"tools": [{"name": "list_docs"}, {"name": "get_doc"}]}
    called = {"content": [{"type": "text", "text": "[]"}], "isError": False}
    prompts = tuple(
        ActionResult(
            name,
            "agent",
            f"Prompt {name}.",
            (rpc("tools/list", tools), rpc("tools/call", called)),
            {"is_error": False},
        )  # fmt: skip
        for name in ("first", "second")
    )
    ok = passed_and_failed(tmp_path)[0]
    repeat = replace(ok.actions[0], action_id="again", say="The same request again.")
    result = replace(ok, actions=(*ok.actions, repeat, *prompts))
    text = step_result_text(result)
    assert text.count("list_docs, get_doc") == 1, text  # the tool list once per step
    assert text.count("MCP tools/list") == 1 and text.count("MCP tools/call") == 2, text
    # The same token endpoint again: its status, not the whole request line a second time.
    assert text.count("POST PDP /zts/v1/oauth2/token") == 1, text
    verbose = step_result_text(result, verbose=True)
    assert verbose.count("tools/list") >= 2  # --verbose shows every call


def test_a_long_single_quoted_word_is_cut_whole_and_pastes_back() -> None:
    """`lab providers set '[…]'` in step 10: rich folded the JSON mid-URL (default view) or
    cropped it at the margin (--verbose); the cut closes and reopens the quote instead."""
    import subprocess

    from rich.console import Console

    from lab.render.terminal import CommandBlock, fit_command

    providers = (
        '[{"issuerUri":"http://127.0.0.1:26090/realms/idjag","jwksUri":"http://127.0.0.1:26090/'
        'realms/idjag/protocol/openid-connect/certs","principalTemplate":"human.{x}"}]'
    )
    command = f"printf '%s|' providers set '{providers}'"
    lines = fit_command(command, 60, indent=2)
    assert len(lines) > 2 and all(len(line) <= 60 for line in lines)
    assert all(line.endswith("\\") for line in lines[:-1])
    assert lines[0].startswith("  printf") and not lines[2].startswith(" ")  # cut: column 0
    pasted = subprocess.run(["bash", "-c", "\n".join(lines)], capture_output=True, text=True)
    assert pasted.stdout == f"providers|set|{providers}|"

    console = Console(width=60, record=True, color_system=None)
    console.print(CommandBlock(command, indent=2))
    shown = console.export_text().splitlines()
    assert [line.rstrip() for line in shown] == lines  # nothing cropped at the margin


def test_the_reproduction_follows_its_check_at_column_0(tmp_path: Path) -> None:
    """Command blocks lay themselves out in their place: one moved the reproduction above the
    action's requests; at column 0 a cut word pastes back whole."""
    lines = step_result_text(passed_and_failed(tmp_path)[1]).splitlines()
    at = next(i for i, line in enumerate(lines) if "reproduce with:" in line)
    assert lines[at + 1].startswith("lab mcp call list_docs --token T")


#: What a hostile server or client puts in a value the lab shows: ESC sequences (clear the
#: screen, recolour, an OSC 8 link), the 8-bit CSI, a carriage return that overwrites the line
#: and a bidi override that shows text reversed.
HOSTILE_CONTROLS = ("\x1b[2J", "\x1b]8;;http://evil/\x1b\\", "\x9b31m", "\r", "\u202e")


def _hostile_result(key_dir: Path) -> StepResult:
    """A step whose response body, headers, token claims (names too), check values and error
    texts all carry control sequences, as a hostile server or a pasted token would."""
    bad = "x\x1b[2J\x1b]8;;http://evil/\x1b\\y\x9b31m\r\u202eevil"
    token = token_seen(key_dir, "access_token", {"sub": bad, "aud": "api", f"n{bad}": bad})
    exchange = Exchange(
        "POST",
        "http://127.0.0.1:1/zts/v1/oauth2/token",
        400,
        {},
        "grant_type=x",
        {"content-type": "text/plain", "www-authenticate": f'Bearer error="{bad}"'},
        f"error: {bad}\nsecond line",
        3.0,
    )
    check = CheckResult("get", f"status equals {bad}", bad, bad, False, bad, "equals", "status")
    action = ActionResult(
        "get",
        "request",
        "Get a token.",
        (exchange,),
        {"status": 400, "error_description": bad},
        (token,),
        (check,),
        error=f"refused: {bad}",
    )
    return StepResult(
        4, "x", "Step", "failed", 1.0, (action,), "steps/04-x.md", message=f"failed: {bad}"
    )


def test_values_a_server_sent_reach_the_terminal_as_escapes_never_as_controls(
    tmp_path: Path,
) -> None:
    """A response body, a header, a claim (its name too), an error description: each came from
    outside the lab, and printed as it was a terminal would clear, recolour, link or reverse
    the learner's screen. Every one is shown as its escape (``\\x1b``), in both views and on a
    colour terminal; the run's ``--json`` model keeps the values as sent."""
    result = _hostile_result(tmp_path)
    for verbose in (False, True):
        out = io.StringIO()
        console = Console(
            file=out, width=80, force_terminal=True, color_system="standard", no_color=False
        )
        print_step_result(console, result, verbose=verbose)
        # Rich's own colours are ESC sequences too: take them out, then no control is left.
        text = re.sub(r"\x1b\[[0-9;]*m", "", out.getvalue())
        for raw in HOSTILE_CONTROLS:
            assert raw not in text, (verbose, raw, text)
        assert "\\x1b[2J" in text and "\\u202e" in text, text
        plain = step_result_text(result, verbose=verbose)
        assert "\\x9b31m" in plain, plain
    model = step_model(result)
    assert model["actions"][0]["calls"][0]["response_body"].startswith("error: x\x1b[2J")


def test_a_link_in_the_narrative_shows_its_target_never_a_hidden_hyperlink(
    tmp_path: Path,
) -> None:
    """The narrative is filled with captured values, which servers sent: a value of
    ``[the docs](http://evil.example/)`` was drawn as a terminal hyperlink (OSC 8) whose target
    the learner could not see. The target is shown beside the text."""
    ok = dataclasses.replace(
        passed_and_failed(tmp_path)[0],
        body="Your token's issuer is [the lab's IdP](http://evil.example/steal).\n",
    )
    out = io.StringIO()
    console = Console(
        file=out, width=80, force_terminal=True, color_system="standard", no_color=False
    )
    print_step_result(console, ok, verbose=True)
    assert "\x1b]8;" not in out.getvalue(), repr(out.getvalue())
    plain = step_result_text(ok, verbose=True)
    assert "the lab's IdP (http://evil.example/steal)" in plain, plain
