"""``lab gateway`` and ``lab gateway config`` through the real Typer app (nothing running)."""

from __future__ import annotations

import json
import os
import tomllib

from lab.gateway.state import write_state
from tests.cli.conftest import Lab, lab  # noqa: F401 - the fixture, reused


def test_config_defaults_to_stdio_when_no_gateway_runs(lab: Lab) -> None:  # noqa: F811
    result = lab.invoke("gateway", "config", "codex")
    assert result.exit_code == 0, result.output
    server = tomllib.loads(result.stdout)["mcp_servers"]["idjag-lab"]
    assert server["args"] == ["gateway", "--stdio"]
    assert server["env"]["LAB_HOME"] == str(lab.home.resolve())


def test_config_uses_the_running_gateways_url(lab: Lab) -> None:  # noqa: F811
    url = "http://127.0.0.1:8102/secret/mcp"
    write_state(lab.home, url)  # this test process stands in for the running gateway
    try:
        result = lab.invoke("gateway", "config", "vscode")
    finally:
        os.unlink(lab.home / "gateway.json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"servers": {"idjag-lab": {"type": "http", "url": url}}}


def test_config_http_without_a_running_gateway_says_how_to_start_one(lab: Lab) -> None:  # noqa: F811
    result = lab.invoke("gateway", "config", "claude", "--transport", "http")
    assert result.exit_code == 3
    assert "no gateway is running" in result.output and "lab gateway" in result.output


def test_config_refuses_an_unknown_client(lab: Lab) -> None:  # noqa: F811
    result = lab.invoke("gateway", "config", "emacs")
    assert result.exit_code == 2
    assert "claude, codex, cursor, vscode, inspector" in result.output


def test_gateway_without_a_running_lab_is_an_environment_error(lab: Lab) -> None:  # noqa: F811
    result = lab.invoke("gateway", "--headless", "--port", "0")
    assert result.exit_code == 3
    assert "lab up" in result.output


def test_gateway_refuses_a_remote_bind_before_anything_else(lab: Lab) -> None:  # noqa: F811
    result = lab.invoke("gateway", "--host", "0.0.0.0")
    assert result.exit_code == 2
    assert "refusing to bind the gateway to 0.0.0.0" in result.output
