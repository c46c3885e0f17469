"""``lab gateway config``'s snippets parse, and carry the keys each client documents."""

from __future__ import annotations

import json
import shlex
import tomllib

import pytest

from lab.gateway.clients import CLIENTS, Launch, config_for, stdio_launch

URL = "http://127.0.0.1:8102/s3cr3t-path/mcp"
HTTP = Launch("http", url=URL)
STDIO = stdio_launch({"LAB_HOME": "/home/learner/lab/.lab"}, headless=False)


def test_claude_http_is_the_documented_mcp_add_command() -> None:
    words = shlex.split(config_for("claude", HTTP).text)
    assert words == ["claude", "mcp", "add", "--transport", "http", "idjag-lab", URL]


def test_claude_stdio_puts_options_before_the_name_and_the_command_after_dashes() -> None:
    words = shlex.split(config_for("claude", STDIO).text)
    assert words[:5] == ["claude", "mcp", "add", "--transport", "stdio"]
    assert words[5:8] == ["--env", "LAB_HOME=/home/learner/lab/.lab", "idjag-lab"]
    assert words[8] == "--"
    assert words[9:] == [*STDIO.command]
    assert words[-2:] == ["gateway", "--stdio"]


def test_codex_snippet_is_an_mcp_servers_table_in_toml() -> None:
    stdio = tomllib.loads(config_for("codex", STDIO).text)["mcp_servers"]["idjag-lab"]
    command, *args = STDIO.command
    assert stdio == {
        "command": command,
        "args": args,
        "env": {"LAB_HOME": "/home/learner/lab/.lab"},
    }
    http = tomllib.loads(config_for("codex", HTTP).text)["mcp_servers"]["idjag-lab"]
    assert http == {"url": URL}


def test_codex_quotes_names_and_values_toml_would_misread() -> None:
    launch = stdio_launch({"LAB_HOME": 'C:\\lab "home"'})
    parsed = tomllib.loads(config_for("codex", launch, name="my lab").text)
    assert parsed["mcp_servers"]["my lab"]["env"]["LAB_HOME"] == 'C:\\lab "home"'


def test_cursor_snippet_uses_mcp_servers_with_command_or_url() -> None:
    stdio = json.loads(config_for("cursor", STDIO).text)["mcpServers"]["idjag-lab"]
    assert set(stdio) == {"command", "args", "env"}
    assert "type" not in stdio
    assert json.loads(config_for("cursor", HTTP).text) == {
        "mcpServers": {"idjag-lab": {"url": URL}}
    }


def test_vscode_snippet_uses_servers_with_a_type() -> None:
    stdio = json.loads(config_for("vscode", STDIO).text)["servers"]["idjag-lab"]
    assert stdio["type"] == "stdio" and stdio["command"] == STDIO.command[0]
    assert stdio["args"][-2:] == ["gateway", "--stdio"]
    http = json.loads(config_for("vscode", HTTP).text)["servers"]["idjag-lab"]
    assert http == {"type": "http", "url": URL}


def test_inspector_commands_run_the_cli_against_url_or_command() -> None:
    http = shlex.split(config_for("inspector", HTTP).text)
    assert http == [
        "npx",
        "@modelcontextprotocol/inspector",
        "--cli",
        URL,
        "--transport",
        "http",
        "--method",
        "tools/list",
    ]
    stdio = shlex.split(config_for("inspector", STDIO).text)
    assert stdio[3:5] == ["-e", "LAB_HOME=/home/learner/lab/.lab"]
    assert stdio[stdio.index("--") + 1 :] == [*STDIO.command]


def test_headless_stdio_passes_headless_to_the_gateway() -> None:
    assert stdio_launch({}, headless=True).command[-3:] == ("gateway", "--stdio", "--headless")


@pytest.mark.parametrize("client", CLIENTS)
def test_every_client_has_both_transports(client: str) -> None:
    assert URL in config_for(client, HTTP).text
    assert "--stdio" in config_for(client, STDIO).text


def test_unknown_client_and_incomplete_launches_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown client"):
        config_for("emacs", HTTP)
    with pytest.raises(ValueError, match="needs the gateway's URL"):
        Launch("http")
    with pytest.raises(ValueError, match="transport must be"):
        Launch("sse", url=URL)
