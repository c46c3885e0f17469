"""The agent's full chain, its floor measured the same way, and chains per second.

The floor is what the chain cannot go below on this machine: the same HTTP client making the
chain's minimum number of loopback round trips to a bare server that signs once per request
(6 client round trips + the MCP server's 2 internal calls = 8 signatures), plus the crypto the
chain must do besides (2 RS256 signatures and one HS512 at the IdP: the refresh token is
HMAC-signed, as Keycloak's is; 10 verifications across the parts) and its 3 durable writes
(fsync). The chain's p50 is reported as a multiple of the floor's p50 taken in
alternation with it.

The floor is measured against both bare servers (``bench/bare_server.py``: signing in the
thread pool, and on the event loop as the token endpoint now does when nothing blocks), each
alternated with the chain in the same runs; the verdict is against the stricter (lower) one.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import threading
import time
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from lab.config import LEARNER_USERNAME, Settings

SCOPE = "api:role.docs-getter mcp:role.mcp-accessor"


def setup_chain_state(settings: Settings) -> None:
    """The state step 12 starts from: everything trusted and granted."""
    from lab.state import reset_to

    reset_to(settings, 12)


def run_chain_once(settings: Settings) -> float:
    """Sign in → ID-JAG → access token → MCP tool → exchange → document API; seconds taken."""
    from lab.agent import Agent

    with Agent(settings.endpoints, settings) as agent:
        start = time.perf_counter()
        signed_in = agent.sign_in(LEARNER_USERNAME, "password", method="code")
        if signed_in.id_token is None:
            raise RuntimeError(f"sign-in failed: {signed_in.error}")
        id_jag = agent.request_id_jag(signed_in.id_token, SCOPE, resource=settings.endpoints.mcp)
        if id_jag.token is None:
            raise RuntimeError(f"ID-JAG refused: {id_jag.error}")
        access = agent.redeem_id_jag(id_jag.token)
        if access.token is None:
            raise RuntimeError(f"jwt-bearer refused: {access.error}")
        result = agent.call_tool(access.token, "list_docs", {})
        elapsed = time.perf_counter() - start
    if result.is_error:
        raise RuntimeError(f"chain failed at the tool call: {result.text}")
    return elapsed


class Floor:
    """One floor run: see the module docstring."""

    ROUND_TRIPS = 8

    def __init__(self, bare_url: str) -> None:
        self.url = bare_url
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.hmac = os.urandom(64)
        self.rs_token = jwt.encode({"sub": "x", "aud": "y"}, self.rsa, algorithm="RS256")
        self.es_token = jwt.encode({"sub": "x", "aud": "y"}, self.ec, algorithm="ES256")
        self.dir = tempfile.TemporaryDirectory(prefix="lab-bench-floor-")

    def once(self) -> float:
        with httpx.Client(timeout=10) as client:
            start = time.perf_counter()
            for _ in range(self.ROUND_TRIPS):
                client.post(self.url, data={"grant_type": "floor"}).raise_for_status()
            for _ in range(2):
                jwt.encode({"sub": "x", "aud": "y"}, self.rsa, algorithm="RS256")
            jwt.encode({"sub": "x", "aud": "y"}, self.hmac, algorithm="HS512")
            for index in range(10):
                if index < 3:
                    jwt.decode(
                        self.rs_token, self.rsa.public_key(), algorithms=["RS256"], audience="y"
                    )
                else:
                    jwt.decode(
                        self.es_token, self.ec.public_key(), algorithms=["ES256"], audience="y"
                    )
            for index in range(3):
                fd = os.open(os.path.join(self.dir.name, f"f{index}"), os.O_WRONLY | os.O_CREAT)
                os.write(fd, b"x" * 512)
                os.fsync(fd)
                os.close(fd)
            return time.perf_counter() - start


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def chain_vs_floor(settings: Settings, floors: dict[str, Floor], runs: int) -> dict[str, Any]:
    """The chain and each floor (by its baseline's name) alternated run by run, after a few
    warm-up runs of each; the ratio against every floor, and ``ratio`` (the verdict's) against
    the lowest, the strictest. The floors take turns going first after the chain: whichever
    runs right after the chain (its servers still finishing, the collector) or second would
    otherwise always be the same one."""
    from bench.load import loadavg

    for run in range(3):
        run_chain_once(settings)
        for floor in floors_in_turn(floors, run).values():
            floor.once()
    chains: list[float] = []
    floor_runs: dict[str, list[float]] = {name: [] for name in floors}
    load_before = loadavg()
    for run in range(runs):
        chains.append(run_chain_once(settings))
        for name, floor in floors_in_turn(floors, run).items():
            floor_runs[name].append(floor.once())
    return floor_verdict(chains, floor_runs, load_before, loadavg())


def floors_in_turn(floors: dict[str, Floor], run: int) -> dict[str, Floor]:
    """``floors`` rotated by ``run``: each goes first after the chain as often as the others."""
    items = list(floors.items())
    shift = run % len(items) if items else 0
    return dict(items[shift:] + items[:shift])


def floor_verdict(
    chains: list[float],
    floor_runs: dict[str, list[float]],
    load_before: list[float],
    load_after: list[float],
) -> dict[str, Any]:
    """The chain's p50 against each floor's p50 (seconds in, ms out); the verdict's
    ``floor_p50_ms`` and ``ratio`` are against the lowest floor (the key older results used)."""
    chain_p50 = statistics.median(chains) * 1000
    by_floor = {
        name: {
            "floor_p50_ms": round(statistics.median(values) * 1000, 1),
            "ratio": round(chain_p50 / (statistics.median(values) * 1000), 2),
        }
        for name, values in floor_runs.items()
    }
    strictest = min(by_floor, key=lambda name: statistics.median(floor_runs[name]))
    return {
        "runs": len(chains),
        "chain_p50_ms": round(chain_p50, 1),
        "chain_p99_ms": round(percentile(chains, 0.99) * 1000, 1),
        "floors": by_floor,
        "strictest_floor": strictest,
        "floor_p50_ms": by_floor[strictest]["floor_p50_ms"],
        "ratio": by_floor[strictest]["ratio"],
        "loadavg_before": load_before,
        "loadavg_after": load_after,
    }


def chains_per_second(settings: Settings, concurrency: int, duration_s: float) -> dict[str, Any]:
    """``concurrency`` agents running whole chains for ``duration_s``; correct ones counted."""
    from bench.load import loadavg

    deadline = time.perf_counter() + duration_s
    ok: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        while time.perf_counter() < deadline:
            try:
                elapsed = run_chain_once(settings)
            except Exception as exc:  # noqa: BLE001 - a failed chain is counted, not fatal
                with lock:
                    failures.append(str(exc)[:200])
                continue
            with lock:
                ok.append(elapsed)

    load_before = loadavg()
    start = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    return {
        "concurrency": concurrency,
        "chains_per_s": round(len(ok) / elapsed, 1),
        "ok": len(ok),
        "failed": len(failures),
        "first_failures": failures[:3],
        "p50_ms": round(statistics.median(ok) * 1000, 1) if ok else None,
        "p99_ms": round(percentile(ok, 0.99) * 1000, 1) if ok else None,
        "loadavg_before": load_before,
        "loadavg_after": loadavg(),
    }


def rss_kb(pid: int, field: str = "VmRSS") -> int:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0
