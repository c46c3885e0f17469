"""``lab ui``: serve the web view of the lab on loopback (issue #19)."""

from __future__ import annotations

import os

import typer

from lab.cli import common

app = typer.Typer()

PORT_VARIABLE = "LAB_UI_PORT"
DEFAULT_PORT = 8700


@app.command("ui")
def ui(
    port: int | None = typer.Option(
        None,
        "--port",
        min=0,
        max=65535,
        help=f"Port to serve on (default: {PORT_VARIABLE}, else {DEFAULT_PORT}).",
    ),
) -> None:
    """Serve the steps and each step's last run as a page on 127.0.0.1 (Ctrl-C stops it).

    Reading is open to this machine; running or resetting from the page needs the token in
    the URL this command prints.
    """
    import asyncio

    import uvicorn

    from lab.serving import PortInUse, bind_socket, uvicorn_config
    from lab.ui.app import LabCommands, create_app
    from lab.ui.guard import new_token

    settings = common.settings()
    chosen = port if port is not None else ui_port()
    try:
        sock = bind_socket("127.0.0.1", chosen, PORT_VARIABLE)
    except PortInUse as exc:
        common.fail(str(exc), f"set {PORT_VARIABLE} (or --port) to a free port")
    token = new_token()
    # The running backend's endpoints (read per use: `lab up` may come after `lab ui`).
    app_ = create_app(
        settings,
        token,
        LabCommands(env=dict(os.environ)),
        endpoints=lambda: common.backend(settings).endpoints(),
    )
    actual = sock.getsockname()[1]
    # Plain echo, not rich: a URL folded at the terminal's width could not be clicked or pasted.
    typer.echo(f"The lab view: http://127.0.0.1:{actual}/#token={token}", err=True)
    common.err().print(
        "Open it in a browser on this machine; the token lets the page run and reset steps. "
        "Ctrl-C stops it.",
        highlight=False,
    )
    server = uvicorn.Server(uvicorn_config(app_))
    try:
        asyncio.run(server.serve(sockets=[sock]))
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()


def ui_port() -> int:
    raw = os.environ.get(PORT_VARIABLE, "")
    if not raw:
        return DEFAULT_PORT
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        common.fail(
            f"{PORT_VARIABLE}={raw!r} is not valid: expected a port number between 0 and 65535",
            f"fix or unset {PORT_VARIABLE}",
        )
    return value
