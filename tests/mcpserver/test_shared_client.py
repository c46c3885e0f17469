"""The MCP server's calls to the PDP reuse one keep-alive connection instead of one per call."""

from __future__ import annotations

import asyncio
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from lab.mcpserver.exchange import Exchanger
from lab.oauth.http import SharedAsyncClient
from lab.serving import bind_socket, serve_in_thread


def _recording_token_endpoint(peers: list[tuple[str, int]]) -> Starlette:
    async def token(request: Request) -> JSONResponse:
        assert request.client is not None
        peers.append((request.client.host, request.client.port))
        return JSONResponse({"access_token": "exchanged", "token_type": "Bearer"})

    return Starlette(routes=[Route("/token", token, methods=["POST"])])


def test_two_exchanges_travel_over_one_connection(tmp_path: Path) -> None:
    peers: list[tuple[str, int]] = []
    with serve_in_thread(_recording_token_endpoint(peers), bind_socket("127.0.0.1", 0)) as url:
        exchanger = Exchanger(
            token_endpoint=f"{url}/token",
            issuer=url,
            client_id="mcp.api-mcp",
            key_path=tmp_path / "mcp.pem",
            audience="api",
        )

        async def twice() -> list[str]:
            tokens = [await exchanger.exchange("subject", "api:role.docs-getter") for _ in "ab"]
            await exchanger.http.aclose()
            return tokens

        assert asyncio.run(twice()) == ["exchanged", "exchanged"]
    assert len(peers) == 2 and len(set(peers)) == 1  # the same client port: one TCP connection


def test_the_shared_client_is_one_per_event_loop_and_renewed_after_close() -> None:
    shared = SharedAsyncClient(timeout=1.0)

    async def in_one_loop() -> tuple[object, object, bool]:
        first = shared.get()
        same = shared.get()
        await shared.aclose()
        return first, same, shared.get() is not first

    first, same, renewed = asyncio.run(in_one_loop())
    assert first is same and renewed
    other, _, _ = asyncio.run(in_one_loop())
    assert other is not first  # another loop, another client
