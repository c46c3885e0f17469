"""The embedded backend serves every part from one event loop: no part may block it while it
waits for another (the document API's and MCP server's PDP fetches must not deadlock)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn

from lab.config import Settings
from lab.docapi.app import create_app as create_docapi
from lab.mcpserver.app import create_app as create_mcp
from lab.serving import uvicorn_config
from tests.docapi.zts_standin import ZtsStandIn
from tests.mcpserver.conftest import call_tool

LEARNER = "human.idjag-learner"


@pytest.fixture
def one_loop(
    lab_settings: Settings, reserved_sockets: dict[str, socket.socket]
) -> Iterator[ZtsStandIn]:
    zts = ZtsStandIn(lab_settings)
    apps = [
        (zts.app(), reserved_sockets["zts"]),
        (create_docapi(lab_settings, protected=True), reserved_sockets["docapi_protected"]),
        (create_mcp(lab_settings), reserved_sockets["mcp"]),
    ]
    servers = [uvicorn.Server(uvicorn_config(app)) for app, _ in apps]
    for server in servers:
        server.install_signal_handlers = lambda: None  # type: ignore[method-assign]

    async def run_all() -> None:
        await asyncio.gather(
            *(s.serve(sockets=[sock]) for s, (_, sock) in zip(servers, apps, strict=True))
        )

    thread = threading.Thread(target=lambda: asyncio.run(run_all()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not all(s.started for s in servers):
        assert time.monotonic() < deadline, "servers did not start"
        time.sleep(0.01)
    try:
        yield zts
    finally:
        for server in servers:
            server.should_exit = True
        thread.join(timeout=10)


async def test_tool_call_works_when_all_parts_share_one_event_loop(
    one_loop: ZtsStandIn, lab_settings: Settings
) -> None:
    one_loop.allow("api:role.docs-getter", "get")
    token = one_loop.token(LEARNER, ["api:role.docs-getter"], aud=lab_settings.endpoints.mcp)
    result = await call_tool(lab_settings.endpoints.mcp, token, "list_docs")
    assert result.is_error is False
    assert result.structured_content["caller"]["client_id"] == "mcp.api-mcp"
    api_token = one_loop.token(LEARNER, ["docs-getter"])
    direct = httpx.get(
        f"{lab_settings.endpoints.docapi_protected}/api/docs",
        headers={"Authorization": f"Bearer {api_token}"},
        timeout=10,
    )
    assert direct.status_code == 200
