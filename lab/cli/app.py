"""The ``lab`` Typer app: one small Typer app per command group, composed here, loaded lazily.

A command imports only what it runs: :data:`COMMANDS` names the module of each command, and the
root group (:class:`LabGroup`) imports that module when the command is looked up, not before.
``lab --help`` (and shell completion) looks every command up, so it lists all of them with the
help text their modules declare; ``lab reset`` imports ``lab.cli.reset`` and nothing else.
The console-script entry point is :func:`lab.cli.main.run`.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any

import typer
from typer.core import TyperGroup

from lab.cli import common
from lab.cli.lazy_params import defer_param, defer_type_adapters

BACKENDS = ("embedded", "kind")
GATEWAY = "Bring your own AI client: a local MCP gateway that does the ID-JAG chain for it."


@dataclass(frozen=True)
class CommandSource:
    """Where a command lives: a Typer app in a module, merged into the root or as a group."""

    module: str
    attribute: str = "app"
    #: The group's name (``lab agent …``), or None when the app's commands join the root.
    group: str | None = None
    help: str | None = None
    #: Ships with an optional backend: when its module cannot be imported, the command is absent.
    optional: bool = False


LIFECYCLE = CommandSource("lab.cli.lifecycle")
STEPS = CommandSource("lab.cli.steps")
TOKENS = CommandSource("lab.cli.tokens")

#: Every command of ``lab``, in the order ``lab --help`` lists them.
#: ``tests/cli/test_lazy_commands.py`` checks each module declares exactly these names.
COMMANDS: dict[str, CommandSource] = {
    "up": LIFECYCLE,
    "down": LIFECYCLE,
    "status": LIFECYCLE,
    "logs": LIFECYCLE,
    "steps": STEPS,
    "step": STEPS,
    "captured": STEPS,
    "run": STEPS,
    "verify": STEPS,
    "reset": CommandSource("lab.cli.reset"),
    "decode": TOKENS,
    "sign-assertion": TOKENS,
    "keygen": CommandSource("lab.cli.keys"),
    "audit": CommandSource("lab.cli.audit"),
    "doctor": CommandSource("lab.cli.doctor"),
    "ui": CommandSource("lab.cli.ui"),  # `lab ui`, the web view
    "agent": CommandSource(
        "lab.cli.agent", group="agent", help='Act as the AI agent: lab agent "get docs".'
    ),
    "providers": CommandSource(
        "lab.cli.keys",
        "providers_app",
        group="providers",
        help="The PDP's trusted identity providers.",
    ),
    "policy": CommandSource("lab.cli.policy", group="policy", help="Show what the PDP holds."),
    "mcp": CommandSource("lab.cli.mcp", group="mcp", help="Talk to the MCP server directly."),
    "gateway": CommandSource("lab.cli.gateway", group="gateway", help=GATEWAY),
    # The classroom commands ship with the kind backend; the lab works without them.
    "room": CommandSource("lab.cli.room", "room_app", group="room", optional=True),
}

#: The root's settings, which Typer hands down to every command it builds (markup, exceptions).
ROOT_SETTINGS: dict[str, Any] = {
    "pretty_exceptions_show_locals": False,  # locals may hold keys and tokens; CI keeps logs
    "add_completion": False,
    "rich_markup_mode": None,
}


def build_commands(source: CommandSource) -> dict[str, Any]:
    """The click commands one source contributes, built exactly as Typer builds the root's."""
    module = importlib.import_module(source.module)
    holder = typer.Typer(**ROOT_SETTINGS)
    options: dict[str, Any] = {}
    if source.group is not None:
        options["name"] = source.group
    if source.help is not None:  # else the group's own Typer(help=...) stands
        options["help"] = source.help
    holder.add_typer(getattr(module, source.attribute), **options)
    commands = dict(typer.main.get_group(holder).commands)
    for command in commands.values():
        defer_type_adapters(command)
    return commands


class LazyCommands(MutableMapping[str, Any]):
    """The root's ``commands``: every name in :data:`COMMANDS`, each built when first looked up.

    Typer reads ``group.commands`` directly (help listing, "did you mean", resolving a command),
    so laziness lives in the mapping and every Typer code path works unchanged.
    """

    def __init__(self, sources: dict[str, CommandSource], added: dict[str, Any]) -> None:
        self._sources = sources
        self._built: dict[str, Any] = dict(added)
        self._missing: set[str] = set()
        self._by_source: dict[CommandSource, dict[str, Any]] = {}

    def __getitem__(self, name: str) -> Any:
        if name in self._built:
            return self._built[name]
        source = self._sources.get(name)
        if source is None or name in self._missing:
            raise KeyError(name)
        if source not in self._by_source:
            try:
                self._by_source[source] = build_commands(source)
            except ImportError:
                if not source.optional:
                    raise
                self._missing.update(n for n, s in self._sources.items() if s == source)
                raise KeyError(name) from None
        command = self._by_source[source].get(name)
        if command is None:
            raise KeyError(name)
        self._built[name] = command
        return command

    def __setitem__(self, name: str, command: Any) -> None:
        self._built[name] = command

    def __delitem__(self, name: str) -> None:
        self._built.pop(name, None)
        self._missing.add(name)

    def __iter__(self) -> Iterator[str]:
        names = [n for n in self._sources if n not in self._missing]
        return iter(names + [n for n in self._built if n not in self._sources])

    def __len__(self) -> int:
        return sum(1 for _ in self)


class LabGroup(TyperGroup):
    """The root group: commands load on first use; every command runs inside
    ``common.handled_errors`` (a failure is one sentence)."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.commands = LazyCommands(COMMANDS, dict(self.commands))
        defer_type_adapters(self)

    def list_commands(self, ctx: Any) -> list[str]:
        return list(self.commands)

    def get_help_option(self, ctx: Any) -> Any:
        return defer_param(super().get_help_option(ctx))

    def resolve_command(self, ctx: Any, args: list[str]) -> tuple[Any, Any, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        # The command's ``--help`` option is made on first use, outside what we built: made
        # here from the same context (nothing in the lab changes help_option_names), deferred.
        if command is not None and "help_option_names" not in command.context_settings:
            defer_param(command.get_help_option(ctx))
        return name, command, rest

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
    **ROOT_SETTINGS,
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
