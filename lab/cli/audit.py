"""``lab audit``: the PDP's hash-chained decision records, and a check that none was edited.

``lab audit`` reads the records from the running PDP; ``lab audit FILE`` reads an exported copy.
``--export PATH`` saves them, ``--tamper`` edits one record of FILE (step 17 shows that
``--verify`` then finds the edit).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from lab.cli import common

app = typer.Typer()


@app.command()
def audit(
    file: Annotated[
        Path | None, typer.Argument(help="Read an exported file instead of the PDP.")
    ] = None,
    verify: bool = typer.Option(False, "--verify", help="Check the hash chain; exit 1 if broken."),
    export: Annotated[
        Path | None, typer.Option("--export", help="Save the PDP's records to this file.")
    ] = None,
    tamper: bool = typer.Option(False, "--tamper", help="Edit one record of FILE (a lesson)."),
    record: int = typer.Option(-1, "--record", help="With --tamper: which record (-1 = last)."),
    change: str = typer.Option("decision=allow", "--set", help="With --tamper: field=value."),
    json_output: bool = typer.Option(False, "--json", help="Print the records as JSON."),
    last: int = typer.Option(20, "--last", min=1, help="How many of the latest records to show."),
) -> None:
    """Show who asked for what and what the PDP decided (one record per decision)."""
    if tamper:
        if file is None:
            common.fail("--tamper needs the FILE to edit", "lab audit --export a.json first", 2)
        tamper_file(file, record, change)
        return
    records = read_file(file) if file is not None else fetch_records()
    if export is not None:
        export.parent.mkdir(parents=True, exist_ok=True)
        export.write_text(json.dumps({"records": records}, indent=2))
        common.err().print(f"Saved {len(records)} record(s) to {export}.")
    problems = verify_records(records) if verify else []
    if json_output:
        data: dict[str, Any] = {"records": records, "count": len(records)}
        if verify:
            data.update(valid=not problems, problems=problems)
        common.print_json(data)
    elif export is None or verify:
        print_records(records[-last:])
        if verify:
            print_verdict(problems, len(records))
    if problems:
        raise typer.Exit(common.ExitCode.FAILED)


def fetch_records() -> list[dict[str, Any]]:
    import httpx

    from lab.config import ADMIN_PRINCIPAL
    from lab.oauth.admin import make_admin_assertion
    from lab.oauth.jose import SigningKey

    settings = common.settings()
    endpoints = common.backend(settings).endpoints()
    key = SigningKey.load_or_create(settings.key_file(ADMIN_PRINCIPAL))
    assertion = make_admin_assertion(ADMIN_PRINCIPAL, key, endpoints.zms)
    response = httpx.get(
        f"{endpoints.zms}/lab/audit",
        headers={"Authorization": f"Bearer {assertion}"},
        timeout=10,
        trust_env=False,
    )
    if response.status_code != 200:
        common.fail(
            f"the PDP refused the audit export ({response.status_code})", "see `lab logs pdp`"
        )
    records = response.json().get("records", [])
    return [r for r in records if isinstance(r, dict)]


def read_file(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text())
    except OSError:
        common.fail(f"cannot read {path}", "export one with `lab audit --export FILE`")
    except ValueError:
        common.fail(f"{path} is not JSON", "export one with `lab audit --export FILE`", 1)
    records = data.get("records") if isinstance(data, dict) else data
    if not isinstance(records, list):
        common.fail(
            f"{path} holds no list of records", "export one with `lab audit --export FILE`", 1
        )
    return [r for r in records if isinstance(r, dict)]


def tamper_file(path: Path, index: int, change: str) -> None:
    field, sep, raw = change.partition("=")
    if not sep or not field:
        common.fail(f"--set {change!r} is not field=value", "e.g. --set decision=allow", 2)
    records = read_file(path)
    if not records or not -len(records) <= index < len(records):
        common.fail(
            f"there is no record {index} in {len(records)} records", "pick another --record", 2
        )
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw
    records[index] = {**records[index], field: value}
    path.write_text(json.dumps({"records": records}, indent=2))
    common.err().print(
        f"Edited record {index}: {field} = {value!r}. Now try `lab audit {path} --verify`."
    )


def verify_records(records: list[dict[str, Any]]) -> list[str]:
    try:
        from lab.pdp.audit import verify_chain
    except ImportError as exc:
        common.fail(f"the audit verifier cannot be loaded ({exc})", "reinstall with `make setup`")
    return [str(p) for p in verify_chain(records)]


def print_records(records: list[dict[str, Any]]) -> None:
    """One row per decision, 80 columns: cells wrap between words (a name is never split), a
    missing field is blank (never "None"), and the reason has its own column."""
    import re

    from rich import box
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    table = Table(box=box.SIMPLE_HEAD, expand=False, pad_edge=False, padding=(0, 1))
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("decision", no_wrap=True)
    table.add_column("who · action · resource", min_width=26, max_width=28)
    table.add_column("reason", ratio=1)
    for r in records:
        decision = _field(r, "decision")
        color = "green" if decision == "allow" else "red"
        who = _field(r, "client")
        if _field(r, "subject") and _field(r, "subject") != who:
            who += f" for {_field(r, 'subject')}"
        what = Text("\n").join(
            Text(part) for part in (who, _field(r, "action"), _field(r, "resource")) if part
        )
        table.add_row(
            _field(r, "seq"),
            f"[{color}]{escape(decision)}[/]",
            what,
            # A jti in a reason is a 32-hex word: its head identifies it (--json has it whole).
            Text(re.sub(r"\b([0-9a-f]{8})[0-9a-f]{24}\b", r"\1…", _field(r, "reason"))),
        )
    common.out().print(table)


def _field(record: dict[str, Any], name: str) -> str:
    value = record.get(name)
    return "" if value is None else str(value)


def print_verdict(problems: list[str], count: int) -> None:
    from rich.markup import escape

    console = common.out()
    if not problems:
        console.print(f"[green]✓[/] the chain of {count} records is intact")
        return
    console.print(f"[red]✗[/] the chain is broken ({len(problems)} problem(s)):")
    for problem in problems:
        console.print(f"  - {escape(problem)}")
