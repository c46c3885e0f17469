"""``lab room up|join|status|reset|down``: a workshop room on one shared cluster (kind backend)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

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


ListenOption = Annotated[
    str | None,
    typer.Option(
        "--listen",
        help="Address learners' laptops reach (this machine's LAN address); default LAB_HOST. "
        "Every learner URL and token issuer names it.",
    ),
]


def _room(context: str | None, dry_run: bool, listen: str | None = None) -> Room:
    from lab.backends.room import Room

    return Room(common.settings(), context=context, dry_run=dry_run, listen=listen)


@room_app.command("up")
def up(
    learners: Annotated[int, typer.Option("--learners", "-n", min=1, help="How many learners.")],
    context: ContextOption = None,
    listen: ListenOption = None,
    dry_run: DryRunOption = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="One JSON record per learner.")
    ] = False,
) -> None:
    """Give each learner their own PDP, document API and MCP server; one Keycloak for all."""
    from lab.backends.room_plan import MAX_LEARNERS

    if learners > MAX_LEARNERS:  # a wrong number is a usage error (2), not the environment (3)
        raise typer.BadParameter(
            f"{learners} is more than one kind node holds: choose 1 to {MAX_LEARNERS}",
            param_hint="--learners",
        )
    with common.handled_errors():
        room = _room(context, dry_run, listen)
        if dry_run:
            actions = room.plan_up(learners)
            if json_output:
                common.print_json(
                    {
                        "dry_run": True,
                        "context": room.context,
                        "listen": room.listen,
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
                f"realm {record['realm']}, sign in as {record['username']} / {record['password']}"
            )
            ports = sorted(v for k, v in record["ports"].items() if k != "idp")
            console.print(
                f"  parts at http://{room.listen}:{ports[0]}-{ports[-1]} "
                "(port-forwards started and kept alive by lab; do not run them by hand)",
                markup=False,
            )
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
    from lab.cli.lifecycle import refuse_while_embedded_runs

    with common.handled_errors():
        settings = common.settings()
        bundle = room_join.read_bundle(bundle_file)
        # Joining writes this LAB_HOME's admin key and runtime record: over a running embedded
        # lab, that lab would lose both (orphaned, and its PDP no longer trusting the key).
        refuse_while_embedded_runs(settings, f"lab room join {bundle_file}")
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
        common.out().print(status_table(rows))


def status_table(rows: list[dict[str, Any]]) -> Any:
    """The instructor's view: one line per learner, their last and highest verified step."""
    from rich.table import Table

    table = Table("learner", "namespace", "phase", "last verified step", "highest", "at (UTC)")
    for row in rows:
        last = row["last_verified_step"]
        slug = row.get("last_verified_slug")
        table.add_row(
            row["learner"],
            row["namespace"],
            str(row["phase"] or "?"),
            "—" if last is None else f"{last} {slug}" if slug else str(last),
            "—" if row.get("highest_verified_step") is None else str(row["highest_verified_step"]),
            str(row.get("verified_at") or "—"),
        )
    return table


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
        if not dry_run:
            for namespace in namespaces:
                path = room.join_bundle_path(parse_learner(namespace))
                common.out().print(
                    f"  new join bundle (their old token no longer works): {path}", markup=False
                )


@room_app.command("down")
def down(
    context: ContextOption = None,
    dry_run: DryRunOption = False,
) -> None:
    """Remove the room: its port-forwards, then the kind cluster it made (or, with --context,
    only the room's namespaces)."""
    with common.handled_errors():
        room = _room(context, dry_run)
        done = room.down()
        if dry_run:
            common.out().print("\n".join(done), markup=False)
            return
        common.out().print(f"removed: {', '.join(done) or 'nothing'}", markup=False)
