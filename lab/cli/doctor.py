"""``lab doctor``: prerequisites for each backend, with the fix for each missing one."""

from __future__ import annotations

import typer

from lab.cli import common

app = typer.Typer()


@app.command()
def doctor(
    json_output: bool = typer.Option(False, "--json", help="Print the checks as JSON."),
) -> None:
    """Check what each backend needs (Python packages, free ports, Docker, kind, kubectl).

    Exits 3 when the selected backend lacks something it needs.
    """
    from lab.backends import BACKEND_NAMES, DoctorCheck, get_backend
    from lab.backends.base import BackendError

    settings = common.settings()
    selected = common.backend_name(settings)
    report: dict[str, list[DoctorCheck]] = {}
    for name in BACKEND_NAMES:
        try:
            report[name] = get_backend(name, settings).doctor()
        except BackendError as exc:
            report[name] = [DoctorCheck(f"{name} backend", False, exc.message, exc.fix)]
    if json_output:
        common.print_json(
            {
                "selected": selected,
                "backends": {n: [c.as_dict() for c in cs] for n, cs in report.items()},
            }
        )
    else:
        print_report(report, selected)
    if any(c.required and not c.ok for c in report[selected]):
        raise typer.Exit(common.ExitCode.ENVIRONMENT)


def print_report(report: dict, selected: str) -> None:
    from rich.table import Table

    # A detail quotes what a check found: a file the learner edits, a tool's answer.
    escape = common.shown_text
    console = common.out()
    for name, checks in report.items():
        mark = " (selected)" if name == selected else ""
        table = Table(title=f"{name} backend{mark}", title_justify="left", expand=False)
        table.add_column("check", overflow="fold")
        table.add_column("", no_wrap=True)
        table.add_column("detail / fix", overflow="fold")
        for check in checks:
            if check.ok:
                table.add_row(escape(check.name), "[green]✓[/]", escape(check.detail))
            else:
                mark = "[red]✗[/]" if check.required else "[yellow]![/]"
                fix = f"\n[bold]fix:[/] {escape(check.fix)}" if check.fix else ""
                table.add_row(escape(check.name), mark, escape(check.detail) + fix)
        console.print(table)
