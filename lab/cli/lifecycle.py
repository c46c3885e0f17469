"""``lab up``, ``lab down``, ``lab status``, ``lab logs``: start, stop and inspect the backend."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from lab.cli import common

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from lab.backends.base import Backend, BackendStatus, Progress
    from lab.config import Endpoints, Settings

app = typer.Typer()

#: Shown beside each part in tables: what a learner knows it as.
PART_LABELS: dict[str, str] = {
    "idp": "IdP (OIDC, realm idjag)",
    "zms": "PDP management (ZMS)",
    "zts": "PDP token service (ZTS)",
    "docapi_protected": "document API (protected)",
    "docapi_unprotected": "document API (unprotected)",
    "mcp": "MCP server",
}


DRY_RUN_HELP = "Print what would be done and exit; start or stop nothing."
CONTEXT_HELP = "kind backend: deploy onto this existing kubeconfig context (no new cluster)."
NAMESPACE_HELP = "kind backend: the Kubernetes namespace to use (default idjag-lab)."
IDP_HELP = (
    "embedded (the lab's Keycloak-compatible IdP, default) or keycloak (real Keycloak as a local "
    "Java process, no Docker; Java 21+, fetched once). Default: LAB_IDP."
)


@app.command()
def up(
    json_output: bool = typer.Option(False, "--json", help="Print the endpoints as JSON."),
    dry_run: bool = typer.Option(False, "--dry-run", help=DRY_RUN_HELP),
    context: str | None = typer.Option(None, "--context", help=CONTEXT_HELP),
    namespace: str | None = typer.Option(None, "--namespace", help=NAMESPACE_HELP),
    idp: str | None = typer.Option(None, "--idp", help=IDP_HELP),
) -> None:
    """Start every part (IdP, PDP, document APIs, MCP server) and wait until each is healthy.

    Running it again is fine: a lab that is already up is left as it is.
    """
    settings = with_idp(common.settings(), idp)
    name = lifecycle_backend_name(settings, context, namespace)
    if dry_run and name == "embedded":
        print_plan("embedded", embedded_up_plan(settings), json_output)
        return
    if not dry_run and name != "embedded":
        refuse_while_embedded_runs(settings, f"lab --backend {name} up")
    chosen = lifecycle_backend(name, settings, context, namespace, dry_run)
    if dry_run:
        chosen.up()  # the kind backend only describes its plan (last_plan); no daemon is touched
        print_plan(chosen.name, getattr(chosen, "last_plan", ""), json_output)
        return
    with part_progress(enabled=not json_output) as progress:
        endpoints = chosen.up(progress=progress)
    if chosen.name == "embedded":
        say_the_running_lab_kept_its_ports(settings, endpoints)
    if json_output:
        common.print_json({"backend": chosen.name, "endpoints": endpoints.as_dict()})
        return
    console = common.out()
    shown = chosen.name
    if chosen.name == "embedded" and settings.idp == "keycloak":
        shown += ", IdP: real Keycloak"
    console.print(endpoints_table(endpoints, shown))
    console.print(next_after_up(settings))


def say_the_running_lab_kept_its_ports(settings: Settings, endpoints: Endpoints) -> None:
    """`lab up` on a running lab leaves it as it is, ports included. A learner who followed
    "set LAB_ZTS_PORT to another port" with the lab still up saw the same table and no word."""
    from lab.backends.embedded.health import part_urls

    wanted = part_urls(settings.endpoints)
    moved = [
        f"{PART_LABELS.get(name, name)} {url} (the settings now say {wanted[name]})"
        for name, url in part_urls(endpoints).items()
        if name in wanted and wanted[name] != url
    ]
    if moved:
        common.err().print(
            "note: the running lab keeps the addresses it started with: " + "; ".join(moved),
            highlight=False,
        )
        common.err().print(
            f"To move it: {common.lab_command('down')} && {common.lab_command('up')}",
            soft_wrap=True,
            highlight=False,
        )


def refuse_while_embedded_runs(settings: Settings, then: str) -> None:
    """One LAB_HOME runs one backend: its ``runtime.json`` records one. Starting kind (or
    joining a room) over a running embedded lab would overwrite that record and orphan the
    embedded process (and the two publish the same ports)."""
    from lab.backends.embedded.process import process_alive
    from lab.backends.embedded.runtime_file import read_runtime

    runtime = read_runtime(settings)
    if runtime is not None and process_alive(runtime.get("pid")):
        common.fail(
            f"the embedded backend is running from this LAB_HOME ({settings.home})",
            f"stop it first: `lab down`, then `{then}`",
        )


def next_after_up(settings: Settings) -> str:
    """The command to run after ``lab up``: where the learner is, not always step 1."""
    from lab.cli.where import next_command
    from lab.state import load_results
    from lab.steps.files import step_numbers

    numbers = step_numbers()  # from the file names: nothing parsed (a broken file still counts)
    situation, command = next_command(True, True, load_results(settings), numbers)
    program = common.lab_program()
    shown = f"{program}{command[len('lab') :]}"
    if command == "lab step 1":
        return f"Next: [bold]{shown}[/]  (or [bold]{program} run[/] for every step)"
    return f"{situation}\nNext: [bold]{shown}[/]"


@app.command()
def down(
    dry_run: bool = typer.Option(False, "--dry-run", help=DRY_RUN_HELP),
    context: str | None = typer.Option(None, "--context", help=CONTEXT_HELP),
    namespace: str | None = typer.Option(None, "--namespace", help=NAMESPACE_HELP),
) -> None:
    """Stop everything `lab up` started. Safe to run when nothing is running."""
    settings = common.settings()
    name = lifecycle_backend_name(settings, context, namespace)
    if dry_run and name == "embedded":
        print_plan("embedded", embedded_down_plan(settings), json_output=False)
        return
    chosen = lifecycle_backend(name, settings, context, namespace, dry_run)
    chosen.down()
    if dry_run:
        print_plan(chosen.name, getattr(chosen, "last_plan", ""), json_output=False)
        return
    common.err().print(f"The {chosen.name} backend is stopped.")


def with_idp(settings: Settings, idp: str | None) -> Settings:
    """``--idp`` over ``LAB_IDP``; the kind backend always runs real Keycloak."""
    from dataclasses import replace

    from lab.config import IDP_KINDS

    if idp is None:
        return settings
    if idp not in IDP_KINDS:
        raise typer.BadParameter(
            f"{idp!r} is not one of: {', '.join(IDP_KINDS)}", param_hint="--idp"
        )
    return replace(settings, idp=idp)


def lifecycle_backend_name(settings: Settings, context: str | None, namespace: str | None) -> str:
    """The chosen backend; ``--context``/``--namespace`` without kind is a usage error."""
    name = common.backend_name(settings)
    if name != "kind" and (context or namespace):
        given = [o for o, v in (("--context", context), ("--namespace", namespace)) if v]
        verb = "applies" if len(given) == 1 else "apply"
        common.fail(
            f"{' and '.join(given)} {verb} only to the kind backend (a Kubernetes cluster), "
            f"and the backend here is {name}",
            "choose kind first: `lab --backend kind up --context CTX --namespace NS`",
            common.ExitCode.USAGE,
        )
    return name


def lifecycle_backend(
    name: str, settings: Settings, context: str | None, namespace: str | None, dry_run: bool
) -> Backend:
    from lab.backends import get_backend

    if name == "kind":
        return get_backend(name, settings, context=context, namespace=namespace, dry_run=dry_run)
    return get_backend(name, settings)


def print_plan(backend_name: str, plan: str, json_output: bool) -> None:
    """A dry run's plan: plain text on stdout (no markup: it is shell commands and YAML)."""
    if json_output:
        common.print_json({"backend": backend_name, "dry_run": True, "plan": plan})
        return
    typer.echo(plan.rstrip("\n"))


def embedded_up_plan(settings: Settings) -> str:
    """What ``lab up`` would start on the embedded backend: one process, every part, its ports."""
    from lab.backends.embedded.health import part_urls
    from lab.config import PORTS

    home = settings.home.resolve()
    lines = [
        "# embedded backend plan (dry run: nothing is started)",
        f"LAB_HOME: {home}",
        f"keys: {settings.keys_dir.resolve()} (made by the runtime if missing, mode 0600)",
        "process: python -m lab.backends.embedded (one background process, every part; "
        f"log {settings.logs_dir.resolve()})",
        f"bind {settings.host}, one port per part:",
    ]
    urls = part_urls(settings.endpoints)
    for part, (variable, _default) in PORTS.items():
        port = settings.ports[part]
        shown = "any free port" if port == 0 else str(port)
        label = PART_LABELS.get(part, part)
        lines.append(f"  {label:<28} {shown:>5}  {urls[part]}  ({variable})")
    if settings.idp == "keycloak":
        from lab.backends import keycloak_process as kc
        from lab.backends import versions

        lines += [
            f"IdP: real Keycloak {versions.KEYCLOAK_VERSION} (LAB_IDP=keycloak), a second process:",
            f"  fetch once: {kc.tarball_path(settings.cache_dir)} (mvn, else HTTPS + SHA-1)",
            f"  unpack: {settings.home.resolve() / 'keycloak' / kc.DIST_DIRNAME}",
            "  run: kc.sh start-dev --import-realm (realm-idjag.json), "
            f"features {','.join(kc.FEATURES)}; log {settings.logs_dir.resolve() / 'keycloak.log'}",
        ]
    return "\n".join(lines) + "\n"


def embedded_down_plan(settings: Settings) -> str:
    from lab.backends.embedded.runtime_file import read_runtime

    runtime = read_runtime(settings)
    if runtime is None:
        return f"# embedded backend: nothing runs ({settings.runtime_file} is absent)\n"
    return (
        f"# embedded backend (dry run: nothing is stopped)\n"
        f"stop process {runtime.get('pid')} (SIGTERM), then remove {settings.runtime_file}\n"
    )


@app.command()
def status(
    json_output: bool = typer.Option(False, "--json", help="Print the status as JSON."),
) -> None:
    """Show whether the lab runs and whether each part answers its health check.

    Exits 0 when every part is healthy, 3 when the lab is down or a part is not.
    """
    chosen = common.backend()
    current = chosen.status()
    if json_output:
        common.print_json(current.as_dict())
    else:
        print_status(common.out(), current)
    if not current.healthy:
        raise typer.Exit(common.ExitCode.ENVIRONMENT)


@app.command()
def logs(
    part: str = typer.Argument(..., help="idp, pdp (zms, zts), docapi, mcp or embedded."),
    lines: int = typer.Option(
        50, "--lines", "-n", min=1, help="How many of the last lines to show."
    ),
) -> None:
    """Show the last lines of a part's log."""
    chosen = common.backend()
    path = log_path(chosen, part)
    if path is None or not path.exists():
        common.fail(f"no log for {part!r} yet", "start the lab with `lab up`")
    from lab.render.shown import shown

    # Log lines quote what clients sent (a username, a client id, a scope, a path): each line
    # is shown with its control characters as escapes, so a logged value cannot drive the
    # terminal (the file itself is left as written).
    # newline="": a carriage return a client sent stays in its line (shown as \x0d), never
    # read as a line break that starts a forged line.
    with path.open(encoding="utf-8", errors="replace", newline="") as log:
        text = log.read().removesuffix("\n").split("\n")[-lines:]
    typer.echo("\n".join(shown(line.removesuffix("\r")) for line in text))


def log_path(chosen: Backend, part: str) -> Path | None:
    """The embedded backend knows its log files; other backends copy theirs to a folder first."""
    from lab.backends.base import BackendError

    log_file = getattr(chosen, "log_file", None)
    if callable(log_file):
        try:
            return Path(log_file(part))
        except BackendError as exc:  # its one refusal: a part name it does not know
            common.fail(exc.message, exc.fix, common.ExitCode.USAGE)
    settings = common.settings()
    collected = chosen.collect_logs(settings.logs_dir / chosen.name)
    matches = [p for p in collected if part in p.name]
    return matches[0] if matches else None


# ---------------------------------------------------------------------- rendering


def endpoints_table(endpoints: Endpoints, backend_name: str) -> RenderableType:
    from rich.table import Table

    from lab.backends.embedded.health import part_urls

    table = Table(title=f"The lab is up ({backend_name})", title_justify="left", expand=False)
    table.add_column("part")
    table.add_column("URL", overflow="fold")
    for name, url in part_urls(endpoints).items():
        table.add_row(PART_LABELS.get(name, name), url)
    return table


def print_status(console: Console, current: BackendStatus) -> None:
    from rich.table import Table

    if not current.running and not current.parts:
        detail = common.shown_text(current.detail)
        console.print(f"The {current.backend} backend is not running ({detail}).")
        elsewhere = common.not_running_fix(None)
        console.print(f"But {elsewhere}." if elsewhere else "Start it with [bold]lab up[/].")
        return
    state = "healthy" if current.healthy else "running, with problems"
    if not current.running:
        state = "stopped unexpectedly"
    pid = f", pid {current.pid}" if current.pid else ""
    console.print(f"Backend [bold]{current.backend}[/]: {state}{pid}")
    if current.detail:
        console.print(common.shown_text(current.detail))
    table = Table(expand=False)
    table.add_column("part")
    table.add_column("URL", overflow="fold")
    table.add_column("health", overflow="fold")
    for part in current.parts:
        mark = "[green]✓ ok[/]" if part.healthy else f"[red]✗[/] {common.shown_text(part.detail)}"
        table.add_row(common.shown_text(part.name), common.shown_text(part.url), mark)
    console.print(table)


class PartProgress:
    """Per-part status while ``up`` waits: a live table on a terminal, plain lines otherwise.

    Rich is imported on the first report, which comes after the backend has started its process:
    the runtime's start-up then overlaps this process's own imports (``lab up`` ≤ 1 s).
    """

    def __init__(self) -> None:
        self.states: dict[str, tuple[str, str]] = {}
        self.console: Console | None = None
        self.live: Any = None

    def __call__(self, part: str, state: str, detail: str) -> None:
        if self.console is None:
            self.console = common.err()
            if self.console.is_terminal:
                from rich.live import Live

                self.live = Live(console=self.console, transient=True, refresh_per_second=20)
                self.live.start()
        self.states[part] = (state, detail)
        if self.live is not None:
            self.live.update(self.render())
        elif state != "starting" or detail:
            from lab.render.shown import shown_lines

            # A detail may quote what answered on a part's port (another program's text).
            suffix = f" ({shown_lines(detail)})" if state != "healthy" and detail else ""
            self.console.print(f"{part}: {state}{suffix}", markup=False)

    def render(self) -> RenderableType:
        from rich.table import Table

        table = Table.grid(padding=(0, 1))
        for name, (state, detail) in self.states.items():
            mark = {"healthy": "[green]✓[/]", "failed": "[red]✗[/]"}.get(state, "[yellow]…[/]")
            shown = detail if state == "failed" or (state == "starting" and detail) else state
            table.add_row(mark, PART_LABELS.get(name, name), common.shown_text(shown))
        return table

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()


@contextmanager
def part_progress(enabled: bool = True) -> Iterator[Progress | None]:
    if not enabled:
        yield None
        return
    progress = PartProgress()
    try:
        yield progress
    finally:
        progress.stop()
