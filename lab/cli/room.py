"""``lab room up|status|reset``: a workshop room on one shared cluster (kind backend)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from lab.cli import common

if TYPE_CHECKING:
    from lab.backends.room import Room

room_app = typer.Typer(
    help="Workshop room: one namespace per learner on one shared cluster.",
    no_args_is_help=True,
)

ContextOption = Annotated[
    str | None,
    typer.Option(
        "--context", help="kubeconfig context of an existing cluster (default: create kind)."
    ),
]
DryRunOption = Annotated[
    bool, typer.Option("--dry-run", help="Print the plan and rendered manifests; touch nothing.")
]


def _room(context: str | None, dry_run: bool) -> Room:
    from lab.backends.room import Room

    return Room(common.settings(), context=context, dry_run=dry_run)


@room_app.command("up")
def up(
    learners: Annotated[int, typer.Option("--learners", "-n", min=1, help="How many learners.")],
    context: ContextOption = None,
    dry_run: DryRunOption = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="One JSON record per learner.")
    ] = False,
) -> None:
    """Give each learner their own PDP, document API and MCP server; one Keycloak for all."""
    with common.handled_errors():
        room = _room(context, dry_run)
        if dry_run:
            actions = room.plan_up(learners)
            if json_output:
                common.print_json(
                    {
                        "dry_run": True,
                        "context": room.context,
                        "learners": learners,
                        "plan": [{"title": a.title, "details": a.describe()} for a in actions],
                    }
                )
                return
            common.write_output("-", room.describe(actions))
            return
        records = room.up(learners)
        if json_output:
            common.print_json(records)
            return
        console = common.out()
        for record in records:
            console.print(
                f"[bold]{record['learner']}[/] namespace {record['namespace']}, "
                f"sign in as {record['username']} / {record['password']}"
            )
            for command in record["port_forward"]:
                console.print(f"  {command}", markup=False)
            if record.get("join_bundle"):
                console.print(f"  join bundle: {record['join_bundle']}", markup=False)


@room_app.command("join")
def join(
    bundle_file: Annotated[
        Path, typer.Argument(help="The join.json your instructor gave you.", exists=True)
    ],
) -> None:
    """Point this machine's `lab` at your room namespace (endpoints, admin key, IdP)."""
    from lab.backends import room_join

    with common.handled_errors():
        settings = common.settings()
        bundle = room_join.read_bundle(bundle_file)
        room_join.apply_bundle(bundle, settings)
        common.out().print(
            f"joined as {bundle.get('username')} in namespace {bundle['namespace']}; "
            f"IdP {bundle.get('idp_issuer')}, ZTS {bundle['endpoints']['zts']}",
            markup=False,
        )


@room_app.command("status")
def status(
    context: ContextOption = None,
    json_output: Annotated[bool, typer.Option("--json", help="JSON instead of a table.")] = False,
) -> None:
    """Each learner's namespace and the last step they verified."""
    with common.handled_errors():
        room = _room(context, False)
        rows = room.status()
        if json_output:
            common.print_json(rows)
            return
        from rich.table import Table

        table = Table("learner", "namespace", "phase", "last verified step")
        for row in rows:
            table.add_row(
                row["learner"],
                row["namespace"],
                str(row["phase"] or "?"),
                str(row["last_verified_step"] or "—"),
            )
        common.out().print(table)


@room_app.command("reset")
def reset(
    learner: Annotated[
        str | None, typer.Argument(help="3, learner-03 (default: every learner).")
    ] = None,
    context: ContextOption = None,
    learners: Annotated[
        int | None, typer.Option("--learners", "-n", help="Reset learners 1..N.")
    ] = None,
    dry_run: DryRunOption = False,
) -> None:
    """Recreate one learner's namespace (or all): fresh PDP state, default documents."""
    from lab.backends.room import parse_learner

    with common.handled_errors():
        room = _room(context, dry_run)
        who = parse_learner(learner) if learner else None
        namespaces = room.reset(who, learners)
        verb = "would reset" if dry_run else "reset"
        common.out().print(f"{verb}: {', '.join(namespaces) or 'no learner namespaces found'}")
