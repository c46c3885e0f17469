"""CPU per token request without HTTP: ``TokenEndpoint.handle`` in one thread, per grant.

A private lab is started (as ``make bench`` does) for its IdP's JWKS and the state of step 12;
this process then opens a second :class:`~lab.pdp.core.Pdp` on the same store and runs each
token endpoint's real bodies through ``TokenEndpoint.handle`` (the same checks, signatures and
durable audit record as over HTTP; the chain of records stays one chain, as the committer reads
the head inside its transaction). Prints CPU µs per request (process time: every thread,
including the audit committer's) of ``decide`` alone (nothing written) and of ``handle``; with
``--profile GRANT``, a cProfile of that grant's ``handle``.

    python bench/token_micro.py [--count 400] [--profile GRANT] [--top 30]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import chain, load  # noqa: E402
from bench.run import Lab  # noqa: E402
from lab.pdp.core import Pdp  # noqa: E402
from lab.pdp.zts.dispatcher import TokenEndpoint  # noqa: E402


def forms_for(lab: Lab, count: int) -> dict[str, list[dict[str, str]]]:
    settings = lab.settings
    id_token = load.sign_in(settings)
    access = load.access_token_for_mcp(settings, id_token)
    made = {
        "id_jag": load.id_jag_forms(settings, id_token, count),
        "jwt_bearer": load.jwt_bearer_forms(settings, load.one_id_jag(settings, id_token), count),
        "exchange": load.exchange_forms(settings, access, count),
    }
    # As the route reads them: the urlencoded body parsed back into a dict of strings.
    return {
        name: [dict(parse_qsl(load.urlencode(form))) for form in forms]
        for name, forms in made.items()
    }


def decide(endpoint: TokenEndpoint, forms: list[dict[str, str]]) -> float:
    """CPU µs per request of the decision alone (authentication, grant, signature; nothing is
    written, so the same forms can be handled afterwards)."""
    start = time.process_time()
    for form in forms:
        _, outcome = endpoint.decide(form, {})
        if isinstance(outcome, Exception):
            raise RuntimeError(f"refused: {outcome!r}")
    return (time.process_time() - start) / len(forms) * 1e6


def run(endpoint: TokenEndpoint, forms: list[dict[str, str]]) -> float:
    """CPU µs per request over ``forms`` (every answer must be a token)."""
    start = time.process_time()
    for form in forms:
        result = endpoint.handle(form, {})
        if "access_token" not in result.body:
            raise RuntimeError(f"refused: {result.body}")
    return (time.process_time() - start) / len(forms) * 1e6


# ------------------------------------------------------------------ --asgi: the app without sockets


def _scope(path: str, length: int) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/x-www-form-urlencoded"),
            (b"content-length", str(length).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def _one(app: Any, path: str, body: bytes) -> int:
    """One ASGI request of ``body`` through ``app``; its status."""
    sent = False
    status: list[int] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)  # a disconnect never comes during a request
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    await app(_scope(path, len(body)), receive, send)
    return status[0] if status else 0


async def _drive(app: Any, path: str, bodies: list[bytes], concurrency: int) -> list[float]:
    """Every body through ``app``, ``concurrency`` at a time; each answer must be a 200.
    Returns each request's latency in ms (sent to answered, the app's queueing included)."""
    queue = list(reversed(bodies))
    latencies: list[float] = []

    async def client() -> None:
        while queue:
            started = time.perf_counter()
            status = await _one(app, path, queue.pop())
            latencies.append((time.perf_counter() - started) * 1e3)
            if status != 200:
                raise RuntimeError(f"answered {status}")

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return latencies


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def asgi(lab: Lab, count: int, rounds: int, concurrency: int) -> None:
    """CPU µs per request of the PDP's ASGI app and of the bare POST's, interleaved round by
    round, driven in-process at ``concurrency`` (the HTTP server's share, uvicorn and h11,
    left out: the same for both)."""
    from bench.bare_server import create_app as bare_app
    from lab.pdp.app import create_app as pdp_app

    pdp = pdp_app(lab.settings)
    bare = bare_app()
    # The same bare POST signing on the loop: the token endpoint decides there when nothing
    # blocks, so this is the baseline without the thread pool's hand-off.
    bare_loop = bare_app(on_loop=True)
    path = "/zts/v1/oauth2/token"

    async def main() -> None:
        warm = forms_for(lab, 40)
        for batch in warm.values():
            encoded = [load.urlencode(form).encode() for form in batch]
            await _drive(pdp, path, encoded, concurrency)
            await _drive(bare, "/", encoded, concurrency)
            await _drive(bare_loop, "/", encoded, concurrency)
        figures: dict[str, list[float]] = {}
        tails: dict[str, list[float]] = {}
        for _ in range(rounds):
            made = forms_for(lab, count)
            for name, batch in made.items():
                encoded = [load.urlencode(form).encode() for form in batch]
                for label, app, where in (
                    ("bare", bare, "/"),
                    ("bare_loop", bare_loop, "/"),
                    (name, pdp, path),
                ):
                    start = time.process_time()
                    latencies = await _drive(app, where, encoded, concurrency)
                    used = (time.process_time() - start) / len(encoded) * 1e6
                    figures.setdefault(label, []).append(used)
                    tails.setdefault(label, []).append(_p99(latencies))
        print(
            f"load {os.getloadavg()[0]:.2f}, concurrency {concurrency}, CPU µs/request"
            " (p99 ms of each round)"
        )
        for label, values in figures.items():
            shown = " ".join(f"{v:.0f}" for v in values)
            p99 = " ".join(f"{v:.1f}" for v in tails[label])
            print(
                f"{label:11s} min {min(values):.0f} median {statistics.median(values):.0f}"
                f" ({shown}) p99 {p99}"
            )

    asyncio.run(main())


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--count", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", choices=["id_jag", "jwt_bearer", "exchange"], default=None)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument(
        "--asgi",
        type=int,
        metavar="CONCURRENCY",
        default=0,
        help="drive the PDP's ASGI app and the bare POST's in-process, interleaved",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lab-bench-micro-") as tmp:
        lab = Lab(Path(tmp))
        try:
            lab.run("up")
            chain.setup_chain_state(lab.settings)
            pdp = Pdp.open(lab.settings)
            endpoint = TokenEndpoint(pdp)
            warm = forms_for(lab, 30)
            for forms in warm.values():
                run(endpoint, forms)
            if args.asgi:
                asgi(lab, args.count, args.rounds, args.asgi)
                return 0
            rounds = [forms_for(lab, args.count) for _ in range(args.rounds)]
            if args.profile:
                profiler = cProfile.Profile()
                profiler.enable()
                run(endpoint, rounds[0][args.profile])
                profiler.disable()
                stats = pstats.Stats(profiler).sort_stats("cumulative")
                stats.print_stats(args.top)
                stats.sort_stats("tottime").print_stats(args.top)
                return 0
            results: dict[str, list[float]] = {}
            decisions: dict[str, list[float]] = {}
            for forms in rounds:
                for name, batch in forms.items():
                    decisions.setdefault(name, []).append(decide(endpoint, batch))
                    results.setdefault(name, []).append(run(endpoint, batch))
            for name, values in results.items():
                shown = " ".join(f"{v:.0f}" for v in values)
                print(
                    f"{name:11s} CPU µs/request: decide min {min(decisions[name]):.0f}, "
                    f"handle min {min(values):.0f} ({shown})"
                )
        finally:
            lab.down()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
