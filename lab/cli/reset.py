"""``lab reset [--to N]``: back to the baseline, or to the state just before step N."""

from __future__ import annotations

from typing import Any

import typer

from lab.cli import common

app = typer.Typer()


@app.command()
def reset(
    to: int | None = typer.Option(
        None, "--to", min=1, help="Leave the lab ready for step N (default: the baseline)."
    ),
    json_output: bool = typer.Option(False, "--json", help="Print the outcome as JSON."),
    hard: bool = typer.Option(
        False,
        "--hard",
        help="Stop the lab and delete its stores (PDP, documents); keys stay. For a damaged "
        "store: `lab up` then starts from the baseline.",
    ),
) -> None:
    """Put the lab back: PDP data, documents, MCP settings, trusted IdPs and captured values.

    With --to N it restores the checkpoint taken after step N-1, or replays the steps before N
    when there is none.
    """
    if hard:
        hard_reset(json_output)
        return
    from lab.cli.engine import StepSession, find_step, load_all_steps
    from lab.state import reset_to_step

    session = StepSession.open()
    runner = None
    if to is not None and to > 1:
        from lab.steps.files import step_numbers

        numbers = step_numbers()
        if to not in numbers:
            common.fail(
                f"there is no step {to}",
                f"choose one of: {', '.join(map(str, numbers))}",
                common.ExitCode.USAGE,
            )
        # The step files are parsed only when a step must be replayed: a reset served by a
        # checkpoint (the usual case) never reads them.
        loaded: list[Any] = []

        def runner(number: int) -> bool:
            if not loaded:
                loaded.extend(load_all_steps())
            return session.run(find_step(loaded, number)).passed

    from lab.cli.lock import command_line, lab_lock

    with lab_lock(session.settings.home, command_line()):
        outcome = reset_to_step(session.state, to or 1, run_step=runner)
    if json_output:
        common.print_json(
            {
                "ready_for_step": outcome.target,
                "restored_from": outcome.restored_from,
                "replayed": list(outcome.replayed),
                "duration_ms": round(outcome.duration_ms, 1),
            }
        )
        return
    console = common.err()
    if outcome.target == 1:
        console.print(f"Back to the baseline in {outcome.duration_ms:.0f} ms.")
    else:
        source = (
            "the baseline"
            if outcome.restored_from == 0
            else f"the checkpoint after step {outcome.restored_from}"
        )
        replayed = (
            f", then replayed step(s) {', '.join(map(str, outcome.replayed))}"
            if outcome.replayed
            else ""
        )
        console.print(f"Restored {source}{replayed} in {outcome.duration_ms:.0f} ms.")
    console.print(f"Next: [bold]{common.lab_command(f'step {outcome.target}')}[/]")


def hard_reset(json_output: bool) -> None:
    """Stop the embedded lab and remove its SQLite stores (with their WAL/SHM files)."""
    settings = common.settings()
    if common.backend_name(settings) != "embedded":
        common.fail(
            "--hard deletes the embedded backend's local stores; this lab runs elsewhere",
            "use `lab reset` (or recreate the kind namespace)",
            common.ExitCode.USAGE,
        )
    from lab.state import forget_run_start

    common.backend(settings).down()
    forget_run_start(settings)  # the new trail starts at seq 1
    removed = []
    for store in (settings.pdp_db, settings.docapi_db):
        for path in (
            store,
            store.with_name(store.name + "-wal"),
            store.with_name(store.name + "-shm"),
        ):
            if path.exists():
                path.unlink()
                removed.append(str(path))
    if json_output:
        common.print_json({"removed": removed})
        return
    common.err().print(f"Removed {len(removed)} store file(s); the lab is stopped.")
    common.err().print(
        f"Next: [bold]{common.lab_command('up')}[/] (starts from the baseline), "
        f"then [bold]{common.lab_command('step 1')}[/]"
    )
