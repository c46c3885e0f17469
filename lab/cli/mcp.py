"""``lab mcp call TOOL``: one MCP tool call through the official SDK client."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from lab.cli import common

app = typer.Typer()


@app.command("call")
def call(
    tool: str = typer.Argument(..., help="list_docs, get_doc, create_doc or delete_doc."),
    arg: Annotated[
        list[str] | None, typer.Option("--arg", help="A tool argument as key=value (repeatable).")
    ] = None,
    arguments_json: str | None = typer.Option(
        None, "--arguments", help="All arguments as a JSON object, e.g. '{\"id\": 1}'."
    ),
    token: str | None = typer.Option(None, "--token", help="Access token (omit to see the 401)."),
    json_output: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Call one tool on the MCP server. Exits 1 when the tool (or the server) refuses."""
    from lab.agent.mcp_client import ToolCall, call_tools

    arguments = parse_json_arguments(arguments_json) if arguments_json else {}
    arguments.update(parse_arguments(arg or []))
    endpoints = common.backend().endpoints()
    result = call_tools(endpoints.mcp, token, [ToolCall(tool, arguments)])[0]
    data = {
        "tool": tool,
        "arguments": arguments,
        "is_error": result.is_error,
        "http_status": result.http_status,
        "text": result.text,
        "data": result.data,
    }
    if json_output:
        common.print_json(data)
    else:
        from lab.render.shown import shown_lines, shown_markup

        console = common.out()
        mark = "[red]✗[/]" if result.is_error else "[green]✓[/]"
        status = f" (HTTP {result.http_status})" if result.http_status else ""
        console.print(f"{mark} {shown_markup(tool)}{status}")
        body = result.data if result.data is not None else result.text
        if isinstance(body, str):
            # Wrapped at the terminal's width between words only: a word longer than the width
            # (a URL, resource_metadata="…") stays whole on a line of its own, so it copies.
            # The text is the server's: its control characters are shown as escapes.
            for line in whole_word_lines(shown_lines(body), console.width):
                console.print(line, markup=False, highlight=False, soft_wrap=True)
        else:
            console.print(json.dumps(body, indent=2), markup=False)
    if result.is_error:
        raise typer.Exit(common.ExitCode.FAILED)


def whole_word_lines(text: str, width: int) -> list[str]:
    """``text`` wrapped at ``width`` between words, never inside one (its own lines kept)."""
    import textwrap

    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        lines.extend(
            textwrap.wrap(paragraph, width, break_long_words=False, break_on_hyphens=False) or [""]
        )
    return lines


def parse_arguments(pairs: list[str]) -> dict[str, Any]:
    """``id=1`` → ``{"id": 1}``: values are JSON when they parse as JSON, else strings."""
    arguments: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            common.fail(
                f"--arg {pair!r} is not key=value", "write e.g. --arg id=1", common.ExitCode.USAGE
            )
        try:
            arguments[key] = json.loads(value)
        except ValueError:
            arguments[key] = value
    return arguments


def parse_json_arguments(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        common.fail(f"--arguments is not JSON ({exc})", "e.g. --arguments '{\"id\": 1}'", 2)
    if not isinstance(data, dict):
        common.fail("--arguments must be a JSON object", "e.g. --arguments '{\"id\": 1}'", 2)
    return data
