"""``lab gateway``: the AI Client Gateway — bring your own AI client into the chain.

``lab gateway`` serves Streamable HTTP on loopback (``LAB_GATEWAY_PORT``, default 8102) under a
secret per-launch path; ``lab gateway --stdio`` is the form an AI client launches itself.
``lab gateway config claude|codex|cursor|vscode|inspector`` prints what to paste or run.
"""

from __future__ import annotations

import logging
import sys
import webbrowser
from typing import Any

import typer

from lab.cli import common

app = typer.Typer(no_args_is_help=False)


@app.callback(invoke_without_command=True)
def serve(
    ctx: typer.Context,
    stdio: bool = typer.Option(
        False,
        "--stdio",
        help="Serve MCP on stdin/stdout (clients that launch a command) instead of HTTP.",
    ),
    headless: bool = typer.Option(
        False,
        "--headless",
        help="Sign the lab's learner in without a browser (CI); default: sign in in your browser.",
    ),
    username: str = typer.Option("idjag-learner", "--user", help="Who signs in with --headless."),
    password: str = typer.Option("password", "--password", help="Their password (lab users only)."),
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to bind (loopback only unless --allow-remote)."
    ),
    port: int | None = typer.Option(
        None, "--port", help="HTTP port (default LAB_GATEWAY_PORT, else 8102; 0 picks a free one)."
    ),
    allow_remote: bool = typer.Option(
        False,
        "--allow-remote",
        help="Allow a non-loopback bind (anyone who can reach it acts as the signed-in user).",
    ),
    every_call: bool = typer.Option(
        False,
        "--chain-every-call",
        help="Run ID-JAG and token request again for every MCP request (see each refusal at "
        "once; default: reuse the access token until it nears expiry).",
    ),
    margin: float | None = typer.Option(
        None,
        "--renew-margin",
        help="Renew tokens this many seconds before they expire (default 60).",
    ),
) -> None:
    """Run the gateway: a local MCP server that does the ID-JAG chain for your AI client."""
    if ctx.invoked_subcommand is not None:
        return
    import anyio

    from lab.gateway.chain import BROWSER, HEADLESS, SignInPlan
    from lab.gateway.launch import Gateway, run_stdio
    from lab.gateway.settings import GatewaySettings, RemoteBindRefused, check_bind

    settings = common.settings()
    bind_port = 0
    if not stdio:  # LAB_GATEWAY_PORT means nothing to --stdio: a bad one must not stop it
        gateway_settings = _gateway_settings(GatewaySettings)
        bind_port = gateway_settings.port if port is None else port
        try:
            check_bind(host, allow_remote)
        except RemoteBindRefused as refused:
            common.fail(
                str(refused), "bind 127.0.0.1, or pass --allow-remote", common.ExitCode.USAGE
            )
        if allow_remote and host not in ("127.0.0.1", "localhost", "::1"):
            common.err().print(
                f"[bold yellow]warning:[/] binding {host}: anyone who can reach this port and "
                "learns the URL calls the lab as the signed-in user."
            )
        common.backend(settings).endpoints()  # at a terminal: say `lab up` now, exit 3
    # An AI client launches `--stdio` whenever it starts, lab up or not: the gateway speaks MCP
    # at once and finds the lab at each request (a tool error names `lab up` while it is down).
    _configure_logging(settings.logs_dir)
    plan = SignInPlan(
        mode=HEADLESS if headless else BROWSER,
        username=username,
        password=password,
        opener=_open_browser,
    )
    locate = _lab_locator(settings)
    gateway = Gateway.find_lab(settings, locate, plan, margin_s=margin, reuse=not every_call)
    try:
        if stdio:
            anyio.run(run_stdio, gateway)
        else:
            anyio.run(_serve_http, gateway, settings, host, bind_port, allow_remote)
    except KeyboardInterrupt:
        pass
    finally:
        gateway.close()


async def _serve_http(gateway: Any, settings: Any, host: str, port: int, remote: bool) -> None:
    from lab.gateway.launch import run_http

    def announce(url: str) -> None:
        sys.stdout.write(f"{url}\n")
        sys.stdout.flush()
        common.err().print(
            f"The gateway answers at {url} (this URL changes at each launch).\n"
            "Configure your client with `lab gateway config claude|codex|cursor|vscode|inspector`."
            " Stop with Ctrl-C.",
            soft_wrap=True,
        )

    await run_http(gateway, settings, host, port, allow_remote=remote, announce=announce)


@app.command("config")
def config(
    client: str = typer.Argument(..., help="claude, codex, cursor, vscode or inspector."),
    transport: str | None = typer.Option(
        None,
        "--transport",
        help="stdio or http (default: http when a gateway runs for this LAB_HOME, else stdio).",
    ),
    name: str = typer.Option("idjag-lab", "--name", help="The server's name in the client."),
    headless: bool = typer.Option(
        False, "--headless", help="stdio: sign the lab's learner in without a browser."
    ),
) -> None:
    """Print the exact snippet or command that connects CLIENT to the gateway."""
    import os

    from lab.gateway.clients import CLIENTS, TRANSPORTS, Launch, config_for, stdio_launch
    from lab.gateway.state import read_state

    if client not in CLIENTS:
        common.fail(f"unknown client {client!r}", f"choose one of {', '.join(CLIENTS)}", 2)
    if transport is not None and transport not in TRANSPORTS:
        common.fail(f"unknown transport {transport!r}", "use --transport stdio or http", 2)
    settings = common.settings()
    running = read_state(settings.home)
    chosen = transport or ("http" if running else "stdio")
    if chosen == "http":
        if running is None:
            common.fail(
                f"no gateway is running for LAB_HOME={settings.home}",
                "start one with `lab gateway` in another terminal, or use --transport stdio",
            )
        launch = Launch("http", url=running.url)
    else:
        env = {"LAB_HOME": str(settings.home.resolve())}
        if os.environ.get("LAB_BACKEND"):
            env["LAB_BACKEND"] = os.environ["LAB_BACKEND"]
        launch = stdio_launch(env, headless=headless)
    result = config_for(client, launch, name)
    sys.stdout.write(result.text + "\n")
    common.err().print(f"({chosen}: {result.where})", soft_wrap=True)


def _lab_locator(settings: Any) -> Any:
    """Where the lab runs now, and an identity that changes when it restarts (the runtime
    record); ChainBroken naming `lab up` when it is down."""
    import hashlib
    import json

    from lab.backends.base import BackendError
    from lab.gateway.attach import lab_not_running

    def locate() -> tuple[str, Any]:
        # One read of the record per look: its bytes are the identity, and the same bytes,
        # parsed, choose the backend and give the endpoints (identity and endpoints can
        # never come from two different runs of the lab).
        try:
            raw = settings.runtime_file.read_bytes()
            record = json.loads(raw)
        except OSError:
            raw, record = b"", None
        except ValueError:
            record = None
        try:
            # {}: the file was read and records nothing, so do not read it again to choose.
            chosen = common.backend(settings, record if isinstance(record, dict) else {})
            endpoints = chosen.endpoints_in(record)
        except BackendError as exc:
            raise lab_not_running(exc.message, exc.fix) from None
        return hashlib.sha256(raw).hexdigest(), endpoints

    return locate


def _gateway_settings(cls: Any) -> Any:
    from lab.config import SettingsError

    try:
        return cls.from_env()
    except SettingsError as exc:
        common.fail(str(exc), f"fix or unset {exc.variable}")


def _open_browser(url: str) -> None:
    """Say where to sign in (stderr: stdout may be the MCP stream) and try the browser."""
    sys.stderr.write(f"lab gateway: sign in at {url}\n")
    sys.stderr.flush()
    try:
        webbrowser.open(url)
    except webbrowser.Error:
        return


def _configure_logging(logs_dir: Any) -> None:
    """Hops and refusals to stderr and to $LAB_HOME/logs/gateway.log (never stdout)."""
    from lab.render.shown import ShownFormatter

    logger = logging.getLogger("lab.gateway")
    logger.setLevel(logging.INFO)
    formatter = ShownFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    try:
        logs_dir.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(logs_dir / "gateway.log"))
    except OSError:
        pass
    for handler in handlers:
        handler.setFormatter(formatter)
        logger.addHandler(handler)
