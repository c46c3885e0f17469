"""``notifications/tools/list_changed`` over Streamable HTTP, to the official SDK's clients.

A gateway that served a listing the lab did not give (the lab was down at the client's first
``tools/list``) tells its clients to list again once the lab is back, each the way its protocol
era listens (``lab.gateway.changes``): a handshake-era client (``mode="legacy"``) on the GET SSE
stream it opened, after the gateway declared ``tools.listChanged``; a 2026-07-28 client on its
``subscriptions/listen`` stream. Before, the HTTP gateway declared nothing and sent nothing;
only stdio told its client (``test_stdio_lab_lifecycle.py``).
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.subscriptions import SUBSCRIPTION_ID_META_KEY

from tests.gateway.conftest import _wait_for_url, gateway_command
from tests.stack import ROOT, embedded_stack, free_ports, stack_env

LAB_TOOLS = {"list_docs", "get_doc", "create_doc", "delete_doc"}
NOTICE_TIMEOUT_S = 60.0  # the gateway looks every 2 s; a loaded CI machine is far slower


@pytest.fixture
def gateway_while_the_lab_is_down(tmp_path: Path) -> Iterator[tuple[str, Any]]:
    """``lab gateway --headless`` started with the lab up (HTTP needs it at launch), then the
    lab stopped; yields the gateway's URL and a function that starts the lab again (stopped
    after the test)."""
    home, ports = tmp_path / "home", free_ports()
    env = stack_env(home, ports)
    log = tmp_path / "gateway.stderr"
    with log.open("w") as stderr:
        process: subprocess.Popen[str] | None = None
        try:
            with embedded_stack(home, ports):
                process = subprocess.Popen(
                    gateway_command("--headless", "--port", "0"),
                    env=env,
                    cwd=ROOT,
                    stdout=subprocess.DEVNULL,
                    stderr=stderr,
                    text=True,
                )
                url = _wait_for_url(process, home, log)
            with contextlib.ExitStack() as again:
                yield url, lambda: again.enter_context(embedded_stack(home, ports))
            assert b"Traceback" not in log.read_bytes(), log.read_text()
        finally:
            if process is not None:
                process.terminate()
                process.wait(timeout=15)


async def test_http_clients_of_both_eras_are_told_to_list_again_when_the_lab_is_back(
    gateway_while_the_lab_is_down: tuple[str, Any],
) -> None:
    url, lab_up = gateway_while_the_lab_is_down
    told = anyio.Event()

    async def on_message(message: Any) -> None:
        if getattr(message, "method", None) == "notifications/tools/list_changed":
            told.set()

    async with (
        Client(streamable_http_client(url), mode="legacy", message_handler=on_message) as legacy,
        Client(streamable_http_client(url)) as modern,
    ):
        assert legacy.protocol_version == "2025-11-25"
        assert modern.protocol_version == "2026-07-28"
        for client in (legacy, modern):
            tools = client.server_capabilities.tools
            assert tools is not None and tools.list_changed is True, client.protocol_version
        saved = await legacy.list_tools()  # the lab is down: the shipped listing
        assert {tool.name for tool in saved.tools} >= LAB_TOOLS
        async with modern.listen(tools_list_changed=True) as subscription:
            assert not told.is_set()
            await anyio.to_thread.run_sync(lab_up)
            with anyio.fail_after(NOTICE_TIMEOUT_S):
                await told.wait()
                event = await subscription.__anext__()
        assert type(event).__name__ == "ToolsListChanged"
        listed = await legacy.list_tools()
        assert {tool.name for tool in listed.tools} >= LAB_TOOLS


async def test_stdio_clients_of_both_eras_are_told_to_list_again_when_the_lab_comes_up(
    tmp_path: Path,
) -> None:
    """Over stdio the gateway starts before the lab. A 2026-07-28 client hears it on its
    ``subscriptions/listen`` stream, never as a bare notification on the pipe (the spec forbids
    a change notification no subscription asked for); a handshake-era client on the pipe."""
    home, ports = tmp_path / "home", free_ports()
    home.mkdir()
    env = stack_env(home, ports)
    command, *args = gateway_command("--stdio", "--headless")
    params = StdioServerParameters(command=command, args=args, env=env, cwd=str(ROOT))
    told: list[str] = []
    bare_to_modern: list[str] = []

    def recorder(into: list[str]) -> Any:
        async def on_message(message: Any) -> None:
            if getattr(message, "method", None) != "notifications/tools/list_changed":
                return
            meta = getattr(getattr(message, "params", None), "meta", None) or {}
            if SUBSCRIPTION_ID_META_KEY not in meta:  # not delivered on a listen stream
                into.append(repr(message))

        return on_message

    async with (
        Client(params, mode="legacy", message_handler=recorder(told)) as legacy,
        Client(params, message_handler=recorder(bare_to_modern)) as modern,
    ):
        assert (legacy.protocol_version, modern.protocol_version) == ("2025-11-25", "2026-07-28")
        for client in (legacy, modern):
            tools = client.server_capabilities.tools
            assert tools is not None and tools.list_changed is True, client.protocol_version
        await legacy.list_tools()
        await modern.list_tools()
        async with modern.listen(tools_list_changed=True) as subscription:
            with contextlib.ExitStack() as lab:
                await anyio.to_thread.run_sync(
                    lambda: lab.enter_context(embedded_stack(home, ports))
                )
                with anyio.fail_after(NOTICE_TIMEOUT_S):
                    event = await subscription.__anext__()
                    while not told:
                        await anyio.sleep(0.05)
        assert type(event).__name__ == "ToolsListChanged"
    assert len(told) == 1 and bare_to_modern == [], (told, bare_to_modern)
