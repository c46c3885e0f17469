"""``lab reset [--to N]``: back to the baseline, or to the state just before step N."""

from __future__ import annotations

import typer

from lab.cli import common
from lab.cli.reset_run import reset_lab

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
        if to is not None:
            common.fail(
                "--hard starts from the baseline; it cannot also stop at a step",
                f"run `lab reset --hard`, `lab up`, then `lab reset --to {to}`",
                common.ExitCode.USAGE,
            )
        hard_reset(json_output)
        return
    reset_lab(to, json_output)


def hard_reset(json_output: bool) -> None:
    """Stop the embedded lab and remove its SQLite stores (with their WAL/SHM files)."""
    settings = common.settings()
    if common.backend_name(settings) != "embedded":
        common.fail(
            "--hard deletes the embedded backend's local stores; this lab runs elsewhere",
            "use `lab reset` (or recreate the kind namespace)",
            common.ExitCode.USAGE,
        )
    from lab.state import captures_file, clear_results, forget_run_start

    common.backend(settings).down()
    forget_run_start(settings)  # the new trail starts at seq 1
    clear_results(settings)  # `lab` then points at step 1, not at "all 20 steps passed"
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
    # What `lab reset` puts back through the parts' APIs lives in files the parts read when
    # they start: absent, each is its baseline (no trusted IdP, the MCP server open to any
    # valid token, nothing captured). Kept, step 8's require_access broke steps 6 and 7.
    for path in (
        settings.providers_file,
        settings.home / "mcpserver-settings.json",
        captures_file(settings),
    ):
        if path.exists():
            path.unlink()
            removed.append(str(path))
    if json_output:
        common.print_json({"removed": removed})
        return
    common.err().print(f"Removed {len(removed)} file(s); the lab is stopped.")
    common.err().print(
        f"Next: [bold]{common.lab_command('up')}[/] (starts from the baseline), "
        f"then [bold]{common.lab_command('step 1')}[/]"
    )
