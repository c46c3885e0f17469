"""The MCP server's own CPU per ``tools/call``: ``.venv/bin/python bench/mcp_call.py [--runs N]``.

A private lab at step 12 (as ``bench/run.py``) answers the MCP server's two calls (the PDP's
token exchange, the document API); the MCP server itself is built in this process by
``create_app`` and driven through ``httpx2.ASGITransport`` with the agent's own ``tools/call``
(the modern envelope, ``list_docs``, a real access token). CPU per call from
``time.process_time``: this process holds the MCP server, its two outgoing HTTP clients and the
ASGI client, not the parts that answer. CPU time is what a loaded machine stretches least;
the load average is printed beside it. ``--profile`` adds a cProfile (CPU clock) of the calls.

``--part docapi``: the same for the protected document API's answer to the MCP server's call
(``GET /api/docs`` with a token exchanged for ``api:role.docs-getter``): its app built by
``lab.docapi.app.create_app`` in this process, each call with a token of its own, exchanged
beforehand at the lab's PDP (as in the chain, where every tool call brings a new one).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import dataclasses
import json
import logging
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx2  # noqa: E402

from bench import chain  # noqa: E402
from bench.load import loadavg  # noqa: E402
from bench.run import Lab  # noqa: E402
from lab.config import LEARNER_USERNAME, Settings  # noqa: E402

#: The agent's tools/call as it sends it (lab.agent.mcp_client, MCP 2026-07-28 envelope).
PROTOCOL_VERSION = "2026-07-28"
CALL = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "tools/call",
    "params": {
        "name": "list_docs",
        "arguments": {},
        "_meta": {
            "io.modelcontextprotocol/protocolVersion": PROTOCOL_VERSION,
            "io.modelcontextprotocol/clientInfo": {"name": "mcp", "version": "0.1.0"},
            "io.modelcontextprotocol/clientCapabilities": {
                "extensions": {"io.modelcontextprotocol/enterprise-managed-authorization": {}}
            },
        },
    },
}


def access_token(settings: Settings) -> str:
    """A real access token for the MCP server (sign-in, ID-JAG, jwt-bearer)."""
    from lab.agent import Agent

    with Agent(settings.endpoints, settings) as agent:
        signed_in = agent.sign_in(LEARNER_USERNAME, "password", method="code")
        assert signed_in.id_token is not None, signed_in.error
        id_jag = agent.request_id_jag(
            signed_in.id_token, chain.SCOPE, resource=settings.endpoints.mcp
        )
        assert id_jag.token is not None, id_jag.error
        access = agent.redeem_id_jag(id_jag.token)
        assert access.token is not None, access.error
        return access.token


async def calls(settings: Settings, token: str, runs: int, profile: cProfile.Profile | None) -> Any:
    from lab.mcpserver.app import create_app

    app = create_app(settings)
    headers = {
        "authorization": f"Bearer {token}",
        "content-type": "application/json",
        "accept": "application/json, text/event-stream",
        "mcp-protocol-version": PROTOCOL_VERSION,
        "mcp-method": "tools/call",
        "mcp-name": "list_docs",
    }
    body = json.dumps(CALL).encode()
    async with app.router.lifespan_context(app):
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport) as client:

            async def one() -> None:
                response = await client.post(settings.endpoints.mcp, content=body, headers=headers)
                result = response.json().get("result", {})
                assert response.status_code == 200 and not result.get("isError"), response.text

            for _ in range(20):
                await one()
            if profile is not None:
                profile.enable()
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(runs):
                await one()
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            if profile is not None:
                profile.disable()
    return cpu / runs, wall / runs


async def exchanged_tokens(settings: Settings, token: str, count: int) -> list[str]:
    """``count`` tokens for the document API, each from its own exchange at the lab's PDP."""
    from lab.config import API_DOMAIN, MCP_DOMAIN, MCP_PRINCIPAL
    from lab.mcpserver.app import ROLE_GET
    from lab.mcpserver.exchange import Exchanger

    exchanger = Exchanger(
        token_endpoint=settings.endpoints.zts_token,
        issuer=settings.endpoints.zts,
        client_id=MCP_PRINCIPAL,
        key_path=settings.key_file(MCP_PRINCIPAL),
        source_domain=MCP_DOMAIN,
        audience=API_DOMAIN,
    )
    tokens = [await exchanger.exchange(token, ROLE_GET) for _ in range(count)]
    await exchanger.http.aclose()
    return tokens


async def docapi_calls(
    settings: Settings, tokens: list[str], runs: int, profile: cProfile.Profile | None
) -> Any:
    from lab.docapi.app import create_app

    app = create_app(settings, protected=True)
    url = f"{settings.endpoints.docapi_protected}/api/docs"
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport) as client:

        async def one(token: str) -> None:
            response = await client.get(url, headers={"authorization": f"Bearer {token}"})
            assert response.status_code == 200 and response.json()["docs"], response.text

        for token in tokens[runs:]:
            await one(token)
        if profile is not None:
            profile.enable()
        cpu, wall = time.process_time(), time.perf_counter()
        for token in tokens[:runs]:
            await one(token)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        if profile is not None:
            profile.disable()
    return cpu / runs, wall / runs


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="cProfile the calls (CPU clock)")
    parser.add_argument("--part", choices=("mcpserver", "docapi"), default="mcpserver")
    args = parser.parse_args()
    profile = cProfile.Profile(time.thread_time) if args.profile else None
    with tempfile.TemporaryDirectory(prefix="lab-bench-mcp-") as tmp:
        lab = Lab(Path(tmp) / "home")
        lab.run("up")
        try:
            lab.settle()
            chain.setup_chain_state(lab.settings)
            token = access_token(lab.settings)
            # The runtime's logging (lab.backends.embedded.logs), into this run's own files.
            from lab.backends.embedded.logs import configure_logging

            configure_logging(dataclasses.replace(lab.settings, home=Path(tmp) / "in-process"))
            stderr = (Path(tmp) / "in-process" / "stderr.log").open("w")
            logging.getLogger().handlers[0].stream = stderr  # type: ignore[attr-defined]
            for _ in range(args.rounds):
                load = loadavg()
                if args.part == "docapi":
                    tokens = asyncio.run(exchanged_tokens(lab.settings, token, args.runs + 20))
                    load = loadavg()
                    cpu, wall = asyncio.run(docapi_calls(lab.settings, tokens, args.runs, profile))
                else:
                    cpu, wall = asyncio.run(calls(lab.settings, token, args.runs, profile))
                what = "GET /api/docs" if args.part == "docapi" else "tools/call"
                print(
                    f"{what} x{args.runs}: CPU {cpu * 1000:.3f} ms, wall {wall * 1000:.3f} ms"
                    f" per call (load {load})"
                )
            stderr.close()
        finally:
            lab.down()
    if profile is not None:
        stats = pstats.Stats(profile)
        if os.environ.get("BENCH_PROFILE_DUMP"):
            stats.dump_stats(os.environ["BENCH_PROFILE_DUMP"])
        stats.sort_stats("cumulative").print_stats(60)
        stats.sort_stats("tottime").print_stats(30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
