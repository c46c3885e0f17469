"""Values from outside the lab reach the learner's terminal as text, never as control sequences
or Rich markup (docs/dev/security-tests.md, "reads of stored values in a terminal").

Each test puts a hostile value where a server, a client or an editable file puts it, runs the
command's output path, and finds the value shown as escapes (``\\x1b``): ESC would clear,
recolour or link (OSC 8), CR overwrite the line, U+009B act as an 8-bit CSI, a bidi override
reverse the text; ``[bold red]`` or ``[link=…]`` would be read as a style. ``--json`` keeps
values as sent.
"""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from lab.backends.base import BackendStatus, PartStatus
from lab.cli import common
from lab.render.shown import shown, shown_lines, shown_markup
from tests.cli.conftest import Lab

HOSTILE = "a\x1b[2J\x1b]8;;http://evil/\x1b\\b\x9b31m\r\u202eevil[bold red]x[/][link=http://evil]l"
RAW = ("\x1b", "\x9b", "\r", "\u202e")


def assert_shown(text: str) -> None:
    for raw in RAW:
        assert raw not in text, (raw, text)
    assert "\\x1b[2J" in text and "\\x9b31m" in text and "\\u202e" in text, text


def test_the_shared_function_escapes_controls_and_keeps_text() -> None:
    assert shown("scope x\x1b[2J") == "scope x\\x1b[2J"
    assert shown("a\nb\tc") == "a\\x0ab\\x09c"  # one line: a newline would start a forged one
    assert shown_lines("a\nb\tc\rd") == "a\nb\tc\\x0dd"  # bodies keep their lines
    assert shown("\u202eevil \ud800 \x7f") == "\\u202eevil \\ud800 \\x7f"
    assert shown("plain ünïcödé [x] 日本") == "plain ünïcödé [x] 日本"
    assert shown_markup("[bold red]x[/]") == "\\[bold red]x\\[/]"


def test_an_error_quoting_a_hostile_value_is_shown_not_obeyed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every command's error path (one sentence and a fix) quotes what a server answered."""
    common.report_error(f"the IdP refused: {HOSTILE}", f"check {HOSTILE}")
    err = capsys.readouterr().err
    assert_shown(err)
    assert "[bold red]x[/]" in err and "[link=http://evil]" in err, err  # not read as markup


def test_status_shows_a_parts_detail_as_text(lab: Lab) -> None:
    from lab.cli.lifecycle import print_status

    out = io.StringIO()
    console = Console(file=out, width=200, force_terminal=True, color_system=None)
    status = BackendStatus(
        "embedded", True, (PartStatus("idp", "http://127.0.0.1:1", False, HOSTILE),), HOSTILE
    )
    print_status(console, status)
    assert_shown(out.getvalue())
    assert "[bold red]x[/]" in out.getvalue()


def test_logs_show_a_logged_client_value_as_text_on_its_own_line(lab: Lab) -> None:
    """`lab logs` of a file holding what a client sent: each line's controls are escapes, and a
    carriage return stays inside its line instead of breaking it."""
    logs = lab.home / "logs"
    logs.mkdir(parents=True)
    (logs / "idp.log").write_text(
        f"INFO lab.idp: sign-in refused for {HOSTILE}\nINFO lab.idp: next\n", newline=""
    )
    shown_log = lab.invoke("logs", "idp")
    assert shown_log.exit_code == 0, shown_log.output
    assert_shown(shown_log.output)
    lines = shown_log.output.splitlines()
    assert len(lines) == 2 and lines[1] == "INFO lab.idp: next", lines
    assert "\\x0devil" not in lines[0] and "\\x0d\\u202eevil" in lines[0], lines


@pytest.fixture
def saved_loggers() -> Iterator[None]:
    """Logging is process-wide: the loggers a test configures are put back as they were."""
    names = [
        "",
        "lab",
        "lab.gateway",
        "lab.idp",
        "lab.pdp",
        "lab.policy",
        "lab.docapi",
        "lab.mcpserver",
        "mcp",
    ]
    saved = {
        n: (
            list(logging.getLogger(n).handlers),
            logging.getLogger(n).propagate,
            logging.getLogger(n).level,
        )
        for n in names
    }
    yield
    for name, (handlers, propagate, level) in saved.items():
        logger = logging.getLogger(name)
        for handler in logger.handlers:
            if handler not in handlers:
                handler.close()
        logger.handlers[:] = handlers
        logger.propagate, logger.level = propagate, level


def _log_hostile(name: str) -> None:
    logger = logging.getLogger(name)
    logger.warning("refused %s", "bob\nINFO lab.idp: admin signed in\x1b[2J")
    try:
        raise ValueError("x")
    except ValueError:
        logger.exception("with a traceback")
    for handler in logger.handlers:
        handler.flush()


FORGED = "refused bob\\x0aINFO lab.idp: admin signed in\\x1b[2J"


def test_a_parts_log_line_cannot_be_split_or_carry_controls(
    tmp_path: Path, saved_loggers: None
) -> None:
    """The parts' log files (``lab up``): a username with a newline would forge the next line
    of the log, and an ESC drive the terminal of whoever tails it."""
    from lab.backends.embedded.logs import configure_logging
    from lab.config import Settings

    settings = Settings.from_env({"LAB_HOME": str(tmp_path / "home")})
    configure_logging(settings)
    _log_hostile("lab.idp")
    text = (settings.logs_dir / "idp.log").read_text()
    assert text.splitlines()[0].endswith(FORGED), text
    assert "\x1b" not in text and "Traceback (most recent call last):\n" in text


def test_a_commands_own_log_line_cannot_be_split_or_carry_controls(
    tmp_path: Path, saved_loggers: None
) -> None:
    """``cli.log``: what an in-process part (the gateway of step 20) logs while a command runs."""
    from lab.cli.part_logs import CLI_LOG, keep_part_logs_off_the_screen

    home = tmp_path / "home"
    keep_part_logs_off_the_screen(["step", "20"], {"LAB_HOME": str(home)})
    _log_hostile("lab.gateway")
    text = (home / "logs" / CLI_LOG).read_text()
    assert text.splitlines()[0].endswith(FORGED), text
    assert "\x1b" not in text and "Traceback (most recent call last):\n" in text


def test_agent_output_shows_what_the_mcp_server_sent_as_text(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from lab.cli.agent import print_summary

    summary: dict[str, Any] = {
        "ok": False,
        "stopped_at": HOSTILE,
        "message": f"refused: {HOSTILE}",
        "tool_results": [
            {
                "tool": HOSTILE,
                "arguments": {"q": HOSTILE},
                "is_error": True,
                "text": HOSTILE,
                "data": None,
            },
        ],
    }
    print_summary(summary)
    out = capsys.readouterr().out
    assert_shown(out)
    assert "[link=http://evil]" in out


def test_mcp_call_shows_the_servers_text_as_text(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    from lab.agent import mcp_client

    class Result:
        is_error, http_status, text, data = True, 403, f"{HOSTILE}\nsecond line", None

    class Chosen:
        def endpoints(self) -> Any:
            return type("E", (), {"mcp": "http://127.0.0.1:1/mcp"})()

    monkeypatch.setattr(mcp_client, "call_tools", lambda *a, **k: [Result()])
    monkeypatch.setattr(common, "backend", lambda *a, **k: Chosen())
    called = lab.invoke("mcp", "call", "list_docs", "--token", "T")
    assert called.exit_code == 1, called.output
    assert_shown(called.output)
    assert "second line" in called.output
    as_json = lab.invoke("mcp", "call", "list_docs", "--token", "T", "--json")
    assert json.loads(as_json.stdout)["text"].startswith(HOSTILE)


def test_the_gateways_log_line_cannot_be_split_or_carry_controls(
    tmp_path: Path, saved_loggers: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """`lab gateway` logs hops and refusals (an MCP client's method, a tool name) to stderr,
    the learner's terminal, and to ``gateway.log``."""
    from lab.cli.gateway import _configure_logging

    _configure_logging(tmp_path / "logs")
    _log_hostile("lab.gateway")
    for text in (capsys.readouterr().err, (tmp_path / "logs" / "gateway.log").read_text()):
        assert text.splitlines()[0].endswith(FORGED), text
        assert "\x1b" not in text, text


def test_an_errors_own_lines_stay_lines(capsys: pytest.CaptureFixture[str]) -> None:
    common.report_error("first line\nsecond line", None)
    assert "first line\nsecond line" in capsys.readouterr().err


def test_doctor_shows_a_checks_detail_as_text() -> None:
    from lab.backends import DoctorCheck
    from lab.cli.doctor import print_report

    checks = [DoctorCheck(HOSTILE, False, f"providers.json: {HOSTILE}", f"fix {HOSTILE}")]
    out = io.StringIO()
    console = Console(file=out, width=400, force_terminal=True, color_system=None)
    original = common.out
    common.out = lambda: console  # type: ignore[assignment]
    try:
        print_report({"embedded": checks}, "embedded")
    finally:
        common.out = original  # type: ignore[assignment]
    assert_shown(out.getvalue())
    assert "[link=http://evil]" in out.getvalue()


def test_a_captured_value_is_shown_on_a_terminal_and_unescaped_in_a_pipe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`lab captured NAME` prints what a server answered: on a terminal its controls are
    escapes; ``$(lab captured NAME)`` and pipes get the value unescaped."""
    from lab.cli.steps import captured
    from lab.config import Settings
    from lab.steps.captures import save_captures

    monkeypatch.setenv("LAB_HOME", str(tmp_path / "home"))
    save_captures(Settings.from_env(), {"error": HOSTILE}, set())
    captured("error")
    piped = capsys.readouterr().out  # not escaped (click's echo drops ESC sequences itself)
    assert "\r\u202eevil" in piped and "\\x" not in piped and "\\u" not in piped, piped
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    captured("error")
    assert_shown(capsys.readouterr().out)


def test_decode_shows_a_pasted_tokens_hostile_claims_as_text(lab: Lab) -> None:
    """A guard (right before this sweep): `lab decode` prints the header and claims as
    ASCII-escaped JSON and quotes an unknown issuer with repr."""
    from lab.oauth.jose import SigningKey

    key = SigningKey.load_or_create(lab.home / "k.pem")
    token = key.sign({"iss": HOSTILE, "sub": HOSTILE, HOSTILE: 1}, typ="at+jwt")
    decoded = lab.invoke("decode", token)
    for raw in RAW:
        assert raw not in decoded.output, (raw, decoded.output)
    assert "[link=http://evil]" in decoded.output


def test_policy_shows_what_the_pdp_answered_as_text() -> None:
    from lab.cli.policy import domain_tree

    data = {
        "name": HOSTILE,
        "roles": [{"name": HOSTILE, "members": [HOSTILE]}],
        "policies": [
            {"name": HOSTILE, "assertions": [{"action": HOSTILE, "resource": HOSTILE, "role": "r"}]}
        ],
        "services": [HOSTILE],
    }
    out = io.StringIO()
    Console(file=out, width=400, force_terminal=True, color_system=None).print(domain_tree(data))
    assert_shown(out.getvalue())
    assert "[link=http://evil]" in out.getvalue()


def test_lab_ups_progress_shows_a_parts_detail_as_text(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`lab up`'s progress quotes what answered on a part's port (maybe another program)."""
    from lab.cli.lifecycle import PartProgress

    progress = PartProgress()
    try:
        progress("idp", "failed", HOSTILE)
        rendered = io.StringIO()
        Console(file=rendered, width=400, force_terminal=True, color_system=None).print(
            progress.render()
        )
    finally:
        progress.stop()
    for text in (capsys.readouterr().err, rendered.getvalue()):
        assert_shown(text)
        assert "[link=http://evil]" in text
