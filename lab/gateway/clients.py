"""What each AI client needs to reach the gateway, in that client's documented format.

Formats, as each client's documentation gives them (checked November 2026):

- Claude Code (docs "Connect Claude Code to tools via MCP"): ``claude mcp add --transport http
  <name> <url>``; stdio ``claude mcp add --transport stdio --env KEY=VALUE <name> -- <command>
  [args...]`` (options before the name, the command after ``--``).
- Codex (docs ``config.md``, section ``mcp_servers``): a ``[mcp_servers.<name>]`` table in
  ``~/.codex/config.toml`` with ``command``, ``args``, ``env`` for stdio, ``url`` for
  Streamable HTTP.
- Cursor (docs "Model Context Protocol"): ``.cursor/mcp.json`` (or ``~/.cursor/mcp.json``),
  ``{"mcpServers": {<name>: {"command", "args", "env"} | {"url"}}}``.
- VS Code (docs "MCP configuration reference"): ``.vscode/mcp.json``,
  ``{"servers": {<name>: {"type": "stdio", "command", "args", "env"} | {"type": "http",
  "url"}}}``.
- MCP Inspector (docs "CLI client"): ``npx @modelcontextprotocol/inspector --cli <url>
  --transport http --method tools/list``; stdio with ``-e KEY=VALUE`` and the server command
  after ``--``.
"""

from __future__ import annotations

import json
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

CLIENTS = ("claude", "codex", "cursor", "vscode", "inspector")
TRANSPORTS = ("stdio", "http")
DEFAULT_NAME = "idjag-lab"
INSPECTOR_PACKAGE = "@modelcontextprotocol/inspector"


@dataclass(frozen=True)
class Launch:
    """How a client reaches the gateway: a command to start (stdio) or a URL (http)."""

    transport: str
    command: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    url: str | None = None

    def __post_init__(self) -> None:
        if self.transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}")
        if self.transport == "http" and not self.url:
            raise ValueError("an http launch needs the gateway's URL")
        if self.transport == "stdio" and not self.command:
            raise ValueError("a stdio launch needs the command that starts the gateway")


@dataclass(frozen=True)
class ClientConfig:
    client: str
    text: str  # exactly what to paste or run
    where: str  # where it goes, for a person


def lab_command() -> tuple[str, ...]:
    """An absolute command for ``lab``: clients start servers from their own directory."""
    script = Path(sys.executable).parent / "lab"
    if script.exists():
        return (str(script),)
    return (sys.executable, "-m", "lab.cli")


def stdio_launch(env: dict[str, str], headless: bool = False) -> Launch:
    args = ("gateway", "--stdio", *(("--headless",) if headless else ()))
    return Launch("stdio", (*lab_command(), *args), env)


def config_for(client: str, launch: Launch, name: str = DEFAULT_NAME) -> ClientConfig:
    builders = {
        "claude": claude,
        "codex": codex,
        "cursor": cursor,
        "vscode": vscode,
        "inspector": inspector,
    }
    if client not in builders:
        raise ValueError(f"unknown client {client!r}: choose one of {', '.join(CLIENTS)}")
    return builders[client](launch, name)


def claude(launch: Launch, name: str) -> ClientConfig:
    if launch.transport == "http":
        words = ["claude", "mcp", "add", "--transport", "http", name, str(launch.url)]
    else:
        env = [part for k, v in launch.env.items() for part in ("--env", f"{k}={v}")]
        words = ["claude", "mcp", "add", "--transport", "stdio", *env, name, "--", *launch.command]
    return ClientConfig("claude", shlex.join(words), "run it in a terminal (Claude Code CLI)")


def codex(launch: Launch, name: str) -> ClientConfig:
    lines = [f"[mcp_servers.{_toml_key(name)}]"]
    if launch.transport == "http":
        lines.append(f"url = {_toml_string(str(launch.url))}")
    else:
        command, *args = launch.command
        lines.append(f"command = {_toml_string(command)}")
        lines.append(f"args = [{', '.join(_toml_string(a) for a in args)}]")
        if launch.env:
            pairs = ", ".join(f"{_toml_key(k)} = {_toml_string(v)}" for k, v in launch.env.items())
            lines.append(f"env = {{ {pairs} }}")
    return ClientConfig("codex", "\n".join(lines), "add it to ~/.codex/config.toml")


def cursor(launch: Launch, name: str) -> ClientConfig:
    server = _json_server(launch, typed=False)
    text = json.dumps({"mcpServers": {name: server}}, indent=2)
    return ClientConfig("cursor", text, "merge it into .cursor/mcp.json (or ~/.cursor/mcp.json)")


def vscode(launch: Launch, name: str) -> ClientConfig:
    server = _json_server(launch, typed=True)
    text = json.dumps({"servers": {name: server}}, indent=2)
    return ClientConfig("vscode", text, "merge it into .vscode/mcp.json")


def inspector(launch: Launch, name: str) -> ClientConfig:
    base = ["npx", INSPECTOR_PACKAGE, "--cli"]
    method = ["--method", "tools/list"]
    if launch.transport == "http":
        words = [*base, str(launch.url), "--transport", "http", *method]
    else:
        env = [part for k, v in launch.env.items() for part in ("-e", f"{k}={v}")]
        words = [*base, *env, *method, "--", *launch.command]
    where = "run it in a terminal; then try --method tools/call --tool-name list_docs"
    return ClientConfig("inspector", shlex.join(words), where)


def _json_server(launch: Launch, *, typed: bool) -> dict[str, object]:
    server: dict[str, object] = {"type": launch.transport} if typed else {}
    if launch.transport == "http":
        server["url"] = launch.url
        return server
    command, *args = launch.command
    server.update(command=command, args=args)
    if launch.env:
        server["env"] = dict(launch.env)
    return server


def _toml_string(value: str) -> str:
    # A TOML basic string accepts JSON's escapes (\" \\ \n \uXXXX) (TOML 1.0, "String").
    return json.dumps(value, ensure_ascii=False)


def _toml_key(key: str) -> str:
    bare = key and all(c.isascii() and (c.isalnum() or c in "-_") for c in key)
    return key if bare else _toml_string(key)
