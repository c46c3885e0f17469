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

``--against REV``: each round also runs the MCP server (or the document API) of another
revision (``git archive``), alternating with this checkout's in child processes against the
same lab, so both columns come from the same minutes; the medians of the rounds are printed.
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
#: ``--against``'s child processes: another revision's ``lab`` package, first on the path.
if os.environ.get("BENCH_LAB_CODE"):
    sys.path.insert(0, os.environ["BENCH_LAB_CODE"])

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


def access_tokens(settings: Settings, count: int = 1) -> list[str]:
    """Real access tokens for the MCP server (one sign-in, then ID-JAG and jwt-bearer each)."""
    from lab.agent import Agent

    tokens = []
    with Agent(settings.endpoints, settings) as agent:
        signed_in = agent.sign_in(LEARNER_USERNAME, "password", method="code")
        assert signed_in.id_token is not None, signed_in.error
        for _ in range(count):
            id_jag = agent.request_id_jag(
                signed_in.id_token, chain.SCOPE, resource=settings.endpoints.mcp
            )
            assert id_jag.token is not None, id_jag.error
            access = agent.redeem_id_jag(id_jag.token)
            assert access.token is not None, access.error
            tokens.append(access.token)
    return tokens


def access_token(settings: Settings) -> str:
    return access_tokens(settings)[0]


async def calls(
    settings: Settings, tokens: list[str], runs: int, profile: cProfile.Profile | None
) -> Any:
    """``runs`` tools/call (after 20 to warm up), the i-th with ``tokens[i % len(tokens)]``."""
    from lab.mcpserver.app import create_app

    app = create_app(settings)
    headers = {
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

            async def one(token: str) -> None:
                sent = {**headers, "authorization": f"Bearer {token}"}
                response = await client.post(settings.endpoints.mcp, content=body, headers=sent)
                result = response.json().get("result", {})
                assert response.status_code == 200 and not result.get("isError"), response.text

            for i in range(20):
                await one(tokens[(runs + i) % len(tokens)])
            if profile is not None:
                profile.enable()
            cpu, wall = time.process_time(), time.perf_counter()
            for i in range(runs):
                await one(tokens[i % len(tokens)])
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


def one_round(settings: Settings, tokens: list[str], part: str, runs: int, profile: Any) -> str:
    load = loadavg()
    if part == "docapi":
        exchanged = asyncio.run(exchanged_tokens(settings, tokens[0], runs + 20))
        load = loadavg()
        cpu, wall = asyncio.run(docapi_calls(settings, exchanged, runs, profile))
    else:
        cpu, wall = asyncio.run(calls(settings, tokens, runs, profile))
    what = "GET /api/docs" if part == "docapi" else "tools/call"
    return (
        f"{what} x{runs}: CPU {cpu * 1000:.3f} ms, wall {wall * 1000:.3f} ms per call (load {load})"
    )


def quiet_logging(settings: Settings, tmp: Path) -> Any:
    """The runtime's logging (lab.backends.embedded.logs), into this run's own files."""
    from lab.backends.embedded.logs import configure_logging

    configure_logging(dataclasses.replace(settings, home=tmp / "in-process"))
    stderr = (tmp / "in-process" / "stderr.log").open("w")
    logging.getLogger().handlers[0].stream = stderr  # type: ignore[attr-defined]
    return stderr


def child_round(part: str, runs: int) -> int:
    """One round against the lab the parent started (its environment), printed as one line."""
    settings = Settings.from_env(dict(os.environ))
    with tempfile.TemporaryDirectory(prefix="lab-bench-mcp-child-") as tmp:
        stderr = quiet_logging(settings, Path(tmp))
        tokens = Path(os.environ["BENCH_MCP_TOKENS"]).read_text().split()
        print(one_round(settings, tokens, part, runs, None), flush=True)
        stderr.close()
    return 0


def against(lab: Lab, tokens: list[str], rev: str, part: str, runs: int, rounds: int) -> None:
    import re
    import statistics
    import subprocess

    from bench.run import checkout

    with tempfile.TemporaryDirectory(prefix="lab-bench-mcp-rev-") as tmp:
        code = checkout(rev, Path(tmp) / "code")
        only_lab = Path(tmp) / "only-lab"  # REV's lab package alone: bench stays this one's
        only_lab.mkdir()
        (only_lab / "lab").symlink_to(code / "lab")
        tokens_file = Path(tmp) / "tokens"
        tokens_file.write_text("\n".join(tokens))
        cpu: dict[str, list[float]] = {"this checkout": [], rev: []}
        for _ in range(rounds):
            for name, lab_code in (("this checkout", ""), (rev, str(only_lab))):
                env = {**lab.env, "BENCH_MCP_TOKENS": str(tokens_file), "BENCH_LAB_CODE": lab_code}
                command = [sys.executable, __file__, "--child", "--part", part]
                command += ["--runs", str(runs)]
                done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
                line = done.stdout.strip().splitlines()[-1]
                print(f"{name:>14}: {line}", flush=True)
                match = re.search(r"CPU ([0-9.]+) ms", line)
                if match:
                    cpu[name].append(float(match.group(1)))
        for name, values in cpu.items():
            print(f"{name:>14}: median CPU {statistics.median(values):.3f} ms per call")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="cProfile the calls (CPU clock)")
    parser.add_argument("--part", choices=("mcpserver", "docapi"), default="mcpserver")
    parser.add_argument("--against", metavar="REV", help="alternate with another revision")
    parser.add_argument(
        "--new-token-per-call",
        action="store_true",
        help="each tools/call with an access token of its own, as in a chain (default: one "
        "token for all, as the tool calls of one agent session)",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child_round(args.part, args.runs)
    profile = cProfile.Profile(time.thread_time) if args.profile else None
    with tempfile.TemporaryDirectory(prefix="lab-bench-mcp-") as tmp:
        lab = Lab(Path(tmp) / "home")
        lab.run("up")
        try:
            lab.settle()
            chain.setup_chain_state(lab.settings)
            fresh = args.new_token_per_call and args.part == "mcpserver"
            tokens = access_tokens(lab.settings, args.runs + 20 if fresh else 1)
            if args.against:
                against(lab, tokens, args.against, args.part, args.runs, args.rounds)
                return 0
            stderr = quiet_logging(lab.settings, Path(tmp))
            for _ in range(args.rounds):
                print(one_round(lab.settings, tokens, args.part, args.runs, profile), flush=True)
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
