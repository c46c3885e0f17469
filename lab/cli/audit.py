"""``lab audit``: the PDP's hash-chained decision records, and a check that none was edited.

``lab audit`` reads the records from the running PDP; ``lab audit FILE`` reads an exported copy.
``--export PATH`` saves them, ``--tamper`` edits one record of FILE (step 17 shows that
``--verify`` then finds the edit).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
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
    correlation: str | None = typer.Option(
        None,
        "--correlation",
        help="Show only records whose correlation id starts with this (gw- = lab gateway).",
    ),
    whole_trail: bool = typer.Option(
        False,
        "--all",
        help="Show records of earlier runs too (by default: only since the last `lab reset`).",
    ),
) -> None:
    """Show who asked for what and what the PDP decided (one record per decision).

    The PDP's records since the last `lab reset` are shown; --all shows the whole trail.
    --verify and --export always take the whole trail: the hash chain needs every record.
    """
    if tamper:
        if file is None:
            common.fail("--tamper needs the FILE to edit", "lab audit --export a.json first", 2)
        tamper_file(file, record, change)
        return
    since = 0
    if file is None and not whole_trail:
        from lab.state import load_run_start

        since = load_run_start(common.settings())
    # Only the shown records are needed unless the whole chain is verified or exported.
    start = 0 if (verify or export is not None) else since
    records = iter_file(file) if file is not None else iter_pdp_records(since=start)

    def shown_record(item: dict[str, Any]) -> bool:
        return _correlated(item, correlation) and _in_run(item, since)

    if json_output:
        everything = list(records)  # --json prints every record: it has to hold them
        shown = [r for r in everything if shown_record(r)]
        data: dict[str, Any] = {"records": shown, "count": len(shown)}
        if export is not None:
            write_export(export, everything)
        if verify:
            problems = verify_records(everything)
            if file is None:
                problems += seal_problems()
            data.update(valid=not problems, problems=problems)
        common.print_json(data)
        if verify and problems:
            raise typer.Exit(common.ExitCode.FAILED)
        return
    # Everything else streams: the trail is read page by page and verified as it passes, so a
    # million records need neither a million-record response nor the memory to hold one.
    from collections import deque

    from lab.pdp.audit import ChainVerifier

    verifier = ChainVerifier()
    tail: deque[dict[str, Any]] = deque(maxlen=last)
    writer = ExportWriter(export) if export is not None else None
    try:
        for item in records:
            if verify:
                verifier.feed(item)
            if writer is not None:
                writer.add(item)
            if shown_record(item):
                tail.append(item)
    finally:
        if writer is not None:
            writer.close()
    if writer is not None:
        common.err().print(f"Saved {writer.count} record(s) to {export}.")
    if verify and file is None:
        # The PDP's own check of its MAC seals (chain head, checkpoints): a rewrite with every
        # later hash recomputed, or a truncation, passes the hash chain but not the seals.
        verifier.problems += seal_problems()
    if export is None or verify:
        if since:
            common.err().print(
                f"Records since the last `lab reset` (after #{since}); "
                "--all shows earlier runs too.",
                highlight=False,
            )
        if tail or not since:
            print_records(list(tail))
        else:
            common.out().print("No decisions since the last `lab reset`.")
        if verify:
            print_verdict([str(p) for p in verifier.problems], verifier.count)
    if verify and verifier.problems:
        raise typer.Exit(common.ExitCode.FAILED)


#: Records per request when reading the PDP's trail: the most the PDP allows (fewer requests,
#: each with a signed admin assertion; two pages of 10,000 held at once stay a few tens of MB).
PAGE = 10_000


def _correlated(record: dict[str, Any], prefix: str | None) -> bool:
    """The gateway marks its calls (``gw-<client>-<launch>-<n>``); ``--correlation`` finds them.
    Export and ``--verify`` still see every record: the hash chain needs them all."""
    return prefix is None or str(record.get("correlation_id") or "").startswith(prefix)


def _in_run(record: dict[str, Any], since: int) -> bool:
    """After the run start ``lab reset`` recorded (a record without a seq is shown)."""
    seq = record.get("seq")
    return not since or not isinstance(seq, int) or seq > since


def iter_pdp_records(page: int | None = None, since: int = 0) -> Iterator[dict[str, Any]]:
    """The PDP's whole trail, oldest first, one page per request.

    The next page is fetched while this one is consumed (one page ahead, in a thread): the
    PDP reads and sends a page while ``--verify`` hashes the previous one, so the two
    processes work at once instead of in turn (a million records: about half the time).

    Plain ``http.client`` (lab.state's JsonClient), not httpx: each page is a few megabytes,
    and an httpx response sits in a reference cycle until a full garbage collection, which
    large byte strings do not trigger, so pages piled up (330 MB at a million records)."""
    import queue
    import threading
    from urllib.parse import urlencode

    from lab.config import ADMIN_PRINCIPAL
    from lab.oauth.admin import make_admin_assertion
    from lab.oauth.jose import SigningKey
    from lab.state import JsonClient

    page = page or PAGE  # read when called: a test may set a smaller page
    settings = common.settings()
    endpoints = common.backend(settings).endpoints()
    key = SigningKey.load_or_create(settings.key_file(ADMIN_PRINCIPAL))
    client = JsonClient(timeout_s=30)
    # ("page", body) | ("failed", (message, fix)) | ("done", None); at most one page waits.
    pages: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=1)
    stopped = threading.Event()

    def hand_over(item: tuple[str, Any]) -> bool:
        while not stopped.is_set():
            try:
                pages.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def fetch_pages() -> None:
        start = since
        try:
            while True:
                # A fresh assertion per page: each is single-use and short-lived.
                assertion = make_admin_assertion(ADMIN_PRINCIPAL, key, endpoints.zms)
                query = urlencode({"since": start, "limit": page})
                try:
                    status, text = client.request(
                        "GET",
                        f"{endpoints.zms}/lab/audit?{query}",
                        {"Authorization": f"Bearer {assertion}"},
                    )
                except OSError as exc:
                    message = f"the PDP did not answer ({type(exc).__name__})"
                    hand_over(("failed", (message, "see `lab status`")))
                    return
                if status != 200:
                    message = f"the PDP refused the audit export ({status})"
                    hand_over(("failed", (message, "see `lab logs pdp`")))
                    return
                body = json.loads(text)
                del text
                if not hand_over(("page", body)) or not isinstance(body.get("next"), int):
                    return
                start = body["next"]
        except Exception as exc:  # noqa: BLE001 - reported by the consuming thread
            hand_over(("failed", (f"reading the audit trail failed: {exc}", "see `lab logs pdp`")))
        finally:
            hand_over(("done", None))

    fetcher = threading.Thread(target=fetch_pages, name="audit-pages", daemon=True)
    fetcher.start()
    try:
        while True:
            kind, value = pages.get()
            if kind == "done":
                return
            if kind == "failed":
                common.fail(*value)
            for item in value.get("records", []):
                if isinstance(item, dict):
                    yield item
    finally:
        stopped.set()
        fetcher.join(timeout=5)
        client.close()


def seal_problems() -> list[str]:
    """Ask the PDP to check its sealed chain head and checkpoints (it alone holds the key)."""
    import httpx

    from lab.config import ADMIN_PRINCIPAL
    from lab.oauth.admin import make_admin_assertion
    from lab.oauth.jose import SigningKey

    settings = common.settings()
    endpoints = common.backend(settings).endpoints()
    key = SigningKey.load_or_create(settings.key_file(ADMIN_PRINCIPAL))
    assertion = make_admin_assertion(ADMIN_PRINCIPAL, key, endpoints.zms)
    response = httpx.get(
        f"{endpoints.zms}/lab/audit/seal",
        headers={"Authorization": f"Bearer {assertion}"},
        timeout=60,
        trust_env=False,
    )
    if response.status_code != 200:
        common.fail(
            f"the PDP refused the seal check ({response.status_code})", "see `lab logs pdp`"
        )
    return [str(p) for p in response.json().get("problems", [])]


def fetch_records() -> list[dict[str, Any]]:
    return list(iter_pdp_records())


class ExportWriter:
    """Writes ``{"records": [...]}`` one record per line as records arrive (see iter_file)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = path.open("w", encoding="utf-8")
        self.handle.write(EXPORT_HEAD)
        self.count = 0

    def add(self, item: dict[str, Any]) -> None:
        self.handle.write((",\n" if self.count else "") + json.dumps(item, ensure_ascii=False))
        self.count += 1

    def close(self) -> None:
        self.handle.write(EXPORT_TAIL)
        self.handle.close()


EXPORT_HEAD = '{"records": [\n'
EXPORT_TAIL = "\n]}\n"


def write_export(path: Path, records: list[dict[str, Any]]) -> None:
    writer = ExportWriter(path)
    for item in records:
        writer.add(item)
    writer.close()


def iter_file(path: Path) -> Iterator[dict[str, Any]]:
    """Records of an exported file. The lab's own exports (one record per line) are read line
    by line; any other JSON shape of ``{"records": [...]}`` or a list is read whole."""
    try:
        handle = path.open(encoding="utf-8")
    except OSError:
        common.fail(f"cannot read {path}", "export one with `lab audit --export FILE`")
    with handle:
        if handle.readline() == EXPORT_HEAD:
            for number, line in enumerate(handle, start=2):
                text = line.rstrip("\n").removesuffix(",")
                if text in ("]}", ""):
                    continue
                try:
                    item = json.loads(text)
                except ValueError:
                    common.fail(f"{path}: line {number} is not a JSON record", "export it again", 1)
                if isinstance(item, dict):
                    yield item
            return
    yield from read_file(path)


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
    write_export(path, records)
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
            Text(_field(r, "seq")),
            f"[{color}]{escape(decision)}[/]",
            what,
            # A jti in a reason is a 32-hex word: its head identifies it (--json has it whole).
            Text(re.sub(r"\b([0-9a-f]{8})[0-9a-f]{24}\b", r"\1…", _field(r, "reason"))),
        )
    common.out().print(table)


def _field(record: dict[str, Any], name: str) -> str:
    """A record's field as text a terminal shows, never obeys: the audit trail holds what
    clients sent (a scope, a client id, a reason quoting them), so a control character is
    printed as its escape (``\\x1b``, ``\\u202e``)."""
    from lab.render.shown import shown

    value = record.get(name)
    return "" if value is None else shown(value)


def print_verdict(problems: list[str], count: int) -> None:
    from lab.render.shown import shown_markup

    console = common.out()
    if not problems:
        console.print(f"[green]✓[/] the chain of {count} records is intact")
        return
    console.print(f"[red]✗[/] the chain is broken ({len(problems)} problem(s)):")
    for problem in problems:
        console.print(f"  - {shown_markup(problem)}")
