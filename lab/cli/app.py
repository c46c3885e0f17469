"""The ``lab`` Typer app: one small Typer app per command group, composed here.

Imports stay lazy (each command imports what it needs when it runs) so ``lab`` starts fast.
The console-script entry point is :func:`lab.cli.main.run`.
"""

from __future__ import annotations

import importlib
from typing import Any

import typer
from typer.core import TyperGroup

from lab.cli import common

BACKENDS = ("embedded", "kind")
GATEWAY = "Bring your own AI client: a local MCP gateway that does the ID-JAG chain for it."


class LabGroup(TyperGroup):
    """Every command runs inside ``common.handled_errors``: a failure is one sentence."""

    def invoke(self, ctx: Any) -> Any:
        with common.handled_errors():
            return super().invoke(ctx)


app = typer.Typer(
    name="lab",
    cls=LabGroup,
    help=(
        "The ID-JAG lab: run, break and verify the Identity Assertion JWT Authorization Grant "
        "flow (IdP, Athenz-style PDP, MCP server, document API, agent)."
    ),
    epilog=common.EXIT_CODES_HELP,
    invoke_without_command=True,
    no_args_is_help=False,
    pretty_exceptions_show_locals=False,  # locals may hold keys and tokens; CI keeps logs
    add_completion=False,
    rich_markup_mode=None,
)


@app.callback()
def main(
    ctx: typer.Context,
    backend: str | None = typer.Option(
        None,
        "--backend",
        help="embedded or kind (default: LAB_BACKEND, else the one running, else embedded).",
    ),
    debug: bool = typer.Option(
        False, "--debug", help="Show tracebacks instead of one-line errors."
    ),
    version: bool = typer.Option(False, "--version", help="Print the lab's version and exit."),
) -> None:
    """Run `lab` alone to see where you are and what to run next."""
    if backend is not None and backend not in BACKENDS:
        raise typer.BadParameter(
            f"{backend!r} is not one of: {', '.join(BACKENDS)}", param_hint="--backend"
        )
    common.STATE.backend = backend
    common.STATE.debug = debug
    if version:
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as package_version

        try:
            typer.echo(f"idjag-lab {package_version('idjag-lab')}")
        except PackageNotFoundError:
            typer.echo("idjag-lab (not installed)")
        raise typer.Exit()
    if ctx.invoked_subcommand is None:
        from lab.cli.where import show_where

        show_where()


def _compose() -> None:
    from lab.cli import agent, audit, doctor, keys, lifecycle, mcp, policy, reset, steps, tokens

    for module in (lifecycle, steps, reset, tokens, keys, audit, doctor):
        app.add_typer(module.app)
    app.add_typer(importlib.import_module("lab.cli.ui").app)  # `lab ui`, the web view
    app.add_typer(agent.app, name="agent", help='Act as the AI agent: lab agent "get docs".')
    app.add_typer(
        keys.providers_app, name="providers", help="The PDP's trusted identity providers."
    )
    app.add_typer(policy.app, name="policy", help="Show what the PDP holds.")
    app.add_typer(mcp.app, name="mcp", help="Talk to the MCP server directly.")
    app.add_typer(importlib.import_module("lab.cli.gateway").app, name="gateway", help=GATEWAY)
    try:
        from lab.cli.room import room_app
    except ImportError:
        return  # the classroom commands ship with the kind backend; the lab works without them
    app.add_typer(room_app, name="room")


_compose()
