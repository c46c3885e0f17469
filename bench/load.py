"""Load with wrk: each token endpoint and both bare-POST baselines, interleaved in one run.

The load generator must not be the bottleneck: a Python client on the same two cores caps a bare
endpoint at a few hundred requests per second, so every figure here comes from ``wrk`` (C, one
event loop per thread). The bodies are prepared before timing (client assertions and ID-JAGs are
single-use) and written one per line; ``bodies.lua`` hands each to exactly one request.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx

from lab.config import AGENT_PRINCIPAL, LEARNER_USERNAME, MCP_PRINCIPAL, Settings
from lab.oauth import tokens
from lab.oauth.jose import SigningKey, make_client_assertion, new_jti, unverified_claims
from lab.serving import bind_socket

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
LUA = BENCH / "bodies.lua"
SCOPE = "api:role.docs-getter mcp:role.mcp-accessor"


class WrkMissing(RuntimeError):
    pass


def ensure_wrk() -> str:
    """wrk's path; installs the Debian package when missing and we may, else says how."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("  installing wrk (Debian package) ...", file=sys.stderr)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "wrk"], env=env, check=False, capture_output=True
        )
        found = shutil.which("wrk")
        if found:
            return found
    raise WrkMissing(
        "wrk is not installed: `sudo apt-get install wrk` (Debian/Ubuntu) or `brew install wrk`"
    )


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def cpu_ticks(pid: int) -> tuple[int, int, int]:
    """(user, system clock ticks of every thread of ``pid``, voluntary + involuntary context
    switches of its threads) from /proc: what the server spent, which load does not stretch."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    user, system = int(fields[11]), int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    switches = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            for line in (task / "status").read_text().splitlines():
                if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                    switches += int(line.split()[1])
        except OSError:
            continue  # a thread that ended meanwhile
    return user, system, switches


def run_wrk(
    url: str,
    bodies: Path,
    count: int,
    *,
    duration_s: float,
    connections: int,
    threads: int = 2,
    server_pid: int | None = None,
) -> dict[str, Any]:
    """One wrk run; requests/s counts only 2xx answers. With ``server_pid``, also the server's
    CPU µs and context switches per request (every request wrk sent, answered or not)."""
    before = loadavg()
    cpu_before = cpu_ticks(server_pid) if server_pid is not None else None
    proc = subprocess.run(
        [
            ensure_wrk(),
            f"-t{threads}",
            f"-c{connections}",
            f"-d{duration_s}s",
            "--timeout",
            "10s",
            "-s",
            str(LUA),
            url,
            "--",
            str(bodies),
            str(threads),
        ],
        capture_output=True,
        text=True,
        timeout=duration_s + 60,
        check=False,
    )
    cpu_after = cpu_ticks(server_pid) if server_pid is not None else None
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("WRK-JSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr or proc.stdout}")
    raw = json.loads(line.removeprefix("WRK-JSON "))
    seconds = raw["duration_us"] / 1e6
    ok = raw["requests"] - raw["non2xx"]
    server: dict[str, Any] = {}
    if cpu_before is not None and cpu_after is not None and raw["requests"]:
        tick_us = 1e6 / os.sysconf("SC_CLK_TCK")
        user, system, switches = (a - b for a, b in zip(cpu_after, cpu_before, strict=True))
        server = {
            "server_cpu_us_per_request": round((user + system) * tick_us / raw["requests"], 1),
            "server_system_us_per_request": round(system * tick_us / raw["requests"], 1),
            "server_switches_per_request": round(switches / raw["requests"], 2),
        }
    return {
        "rps": round(ok / seconds, 1),
        "requests": raw["requests"],
        "non2xx": raw["non2xx"],
        "socket_errors": raw["socket_errors"],
        "bodies": count,
        "p50_ms": round(raw["p50_us"] / 1000, 2),
        "p99_ms": round(raw["p99_us"] / 1000, 2),
        "connections": connections,
        "duration_s": round(seconds, 2),
        "loadavg_before": before,
        "loadavg_after": loadavg(),
        **server,
    }


# ---------------------------------------------------------------------------------- bodies


def _client_auth(principal: str, key: SigningKey, audience: str) -> dict[str, str]:
    return {
        "client_assertion_type": tokens.CLIENT_ASSERTION_TYPE_JWT_BEARER,
        "client_assertion": make_client_assertion(principal, key, audience),
    }


def sign_in(settings: Settings) -> str:
    from lab.agent import Agent

    with Agent(settings.endpoints, settings) as agent:
        return agent.sign_in(LEARNER_USERNAME, "password", method="password").id_token


def id_jag_forms(settings: Settings, id_token: str, count: int) -> list[dict[str, str]]:
    """RFC 8693 requests for an ID-JAG, each with its own single-use client assertion."""
    key = SigningKey.load_or_create(settings.key_file(AGENT_PRINCIPAL))
    zts = settings.endpoints.zts
    return [
        {
            "grant_type": tokens.GRANT_TOKEN_EXCHANGE,
            "requested_token_type": tokens.TOKEN_TYPE_ID_JAG,
            "subject_token": id_token,
            "subject_token_type": tokens.TOKEN_TYPE_ID_TOKEN,
            "audience": zts,
            "resource": settings.endpoints.mcp,
            "scope": SCOPE,
            **_client_auth(AGENT_PRINCIPAL, key, zts),
        }
        for _ in range(count)
    ]


def one_id_jag(settings: Settings, id_token: str) -> str:
    with httpx.Client(timeout=10) as client:
        response = client.post(
            settings.endpoints.zts_token, data=id_jag_forms(settings, id_token, 1)[0]
        )
        response.raise_for_status()
        return str(response.json()["access_token"])


def jwt_bearer_forms(settings: Settings, id_jag: str, count: int) -> list[dict[str, str]]:
    """jwt-bearer requests, each with its own ID-JAG.

    An ID-JAG's jti is single-use, so each body needs a fresh one. Asking the PDP for thousands
    would take longer than the run; instead one real ID-JAG is the template and copies get a new
    jti and times, signed with the PDP's own key (the same header, claims and signature the PDP
    would produce). The grant under test still verifies and checks each one in full.
    """
    from lab.oauth.jose import unverified_header

    pdp_key = SigningKey.load_or_create(settings.key_file("pdp-signing"))
    template = unverified_claims(id_jag)
    typ = unverified_header(id_jag).get("typ")
    key = SigningKey.load_or_create(settings.key_file(AGENT_PRINCIPAL))
    lifetime = int(template["exp"]) - int(template["iat"])
    forms = []
    for _ in range(count):
        issued = int(time.time())
        claims = {**template, "jti": new_jti(), "iat": issued, "exp": issued + lifetime}
        forms.append(
            {
                "grant_type": tokens.GRANT_JWT_BEARER,
                "assertion": pdp_key.sign(claims, typ=typ),
                **_client_auth(AGENT_PRINCIPAL, key, settings.endpoints.zts),
            }
        )
    return forms


def access_token_for_mcp(settings: Settings, id_token: str) -> str:
    with httpx.Client(timeout=10) as client:
        form = jwt_bearer_forms(settings, one_id_jag(settings, id_token), 1)[0]
        response = client.post(settings.endpoints.zts_token, data=form)
        response.raise_for_status()
        return str(response.json()["access_token"])


def exchange_forms(settings: Settings, access_token: str, count: int) -> list[dict[str, str]]:
    """The MCP server's RFC 8693 exchange (as its service, private_key_jwt) for docs-getter."""
    key = SigningKey.load_or_create(settings.key_file(MCP_PRINCIPAL))
    return [
        {
            "grant_type": tokens.GRANT_TOKEN_EXCHANGE,
            "subject_token": access_token,
            "subject_token_type": tokens.TOKEN_TYPE_ACCESS_TOKEN,
            "requested_token_type": tokens.TOKEN_TYPE_ACCESS_TOKEN,
            "audience": "api",
            "scope": "api:role.docs-getter",
            **_client_auth(MCP_PRINCIPAL, key, settings.endpoints.zts),
        }
        for _ in range(count)
    ]


def write_bodies(forms: list[dict[str, str]], directory: Path, name: str) -> Path:
    path = directory / f"{name}.bodies"
    path.write_text("".join(urlencode(form) + "\n" for form in forms))
    return path


# ---------------------------------------------------------------------------------- baseline


#: The two bare-POST baselines (``bench/bare_server.py``), by the key their runs and figures
#: go under: signing in the thread pool (the issue's baseline; the key older results used) and
#: on the event loop (like for like with the token endpoint's path when nothing blocks).
BASELINES: dict[str, bool] = {"bare": False, "bare_on_loop": True}
#: How the table and the docs name each baseline.
BASELINE_LABELS = {"bare": "thread-pool bare POST", "bare_on_loop": "on-loop bare POST"}


class BareServer:
    """``bench/bare_server.py`` in its own process (like the lab's runtime, one process);
    ``on_loop`` signs on the event loop instead of in the thread pool."""

    def __init__(self, on_loop: bool = False) -> None:
        sock = bind_socket("127.0.0.1", 0)
        self.port = sock.getsockname()[1]
        sock.close()
        self.on_loop = on_loop
        self.url = f"http://127.0.0.1:{self.port}/"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(BENCH / "bare_server.py"),
                str(self.port),
                *(["--on-loop"] if on_loop else []),
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                if httpx.get(self.url, timeout=0.5).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("the bare baseline server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def _median_of(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in runs if key in r]
    return round(_median(values), 1) if values else None


def bare_servers() -> dict[str, BareServer]:
    """Both baselines started (each in its own process), by their ``BASELINES`` key."""
    servers: dict[str, BareServer] = {}
    try:
        for name, on_loop in BASELINES.items():
            servers[name] = BareServer(on_loop=on_loop)
    except BaseException:
        for server in servers.values():
            server.stop()
        raise
    return servers


ENDPOINTS = ("id_jag", "jwt_bearer", "exchange")


def token_endpoints(
    settings: Settings, *, rounds: int, duration_s: float, connections: int
) -> dict[str, Any]:
    """Rounds of [bare, bare_on_loop, id_jag, bare, bare_on_loop, jwt_bearer, …], each a wrk
    run fed the same bodies; every endpoint's ratio is its median rate over each baseline's
    median rate of the same run."""
    zts_token = settings.endpoints.zts_token
    id_token = sign_in(settings)
    access = access_token_for_mcp(settings, id_token)
    lab_pid = int(json.loads(settings.runtime_file.read_text())["pid"])
    bares = bare_servers()
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in (*BASELINES, *ENDPOINTS)}
    try:
        with tempfile.TemporaryDirectory(prefix="lab-bench-wrk-") as tmp:
            directory = Path(tmp)
            # Warm-up: every server, long enough for the thread pools and caches to fill; its
            # rate sizes the body files (2.5× the warm-up rate, so no body is ever reused).
            warm_forms = id_jag_forms(settings, id_token, 3000)
            warm = write_bodies(warm_forms, directory, "warm")
            for bare in bares.values():
                run_wrk(bare.url, warm, len(warm_forms), duration_s=2, connections=connections)
            rate = run_wrk(zts_token, warm, len(warm_forms), duration_s=2, connections=connections)[
                "rps"
            ]
            count = int(max(rate, 200) * duration_s * 2.5) + 200
            makers = {
                "id_jag": lambda: id_jag_forms(settings, id_token, count),
                "jwt_bearer": lambda: jwt_bearer_forms(
                    settings, one_id_jag(settings, id_token), count
                ),
                "exchange": lambda: exchange_forms(settings, access, count),
            }
            for _ in range(rounds):
                for name, make in makers.items():
                    forms = make()
                    path = write_bodies(forms, directory, name)
                    for baseline, bare in bares.items():
                        runs[baseline].append(
                            run_wrk(
                                bare.url,
                                path,
                                count,
                                duration_s=duration_s,
                                connections=connections,
                                server_pid=bare.proc.pid,
                            )
                        )
                    runs[name].append(
                        run_wrk(
                            zts_token,
                            path,
                            count,
                            duration_s=duration_s,
                            connections=connections,
                            server_pid=lab_pid,
                        )
                    )
    finally:
        for bare in bares.values():
            bare.stop()
    return summarise(runs, connections)


def summarise(runs: dict[str, list[dict[str, Any]]], connections: int) -> dict[str, Any]:
    """Medians of the wrk runs: each baseline's rate and CPU per request (``bare_rps``,
    ``bare_cpu_us_per_request`` for the thread-pool one, the keys older results used;
    ``bare_on_loop_…`` for the other), and each endpoint's ratio against each baseline
    (``ratio`` against the thread-pool one, ``ratio_on_loop`` against the on-loop one)."""
    summary: dict[str, Any] = {"connections": connections, "runs": runs}
    for baseline in BASELINES:
        if runs.get(baseline):
            summary[f"{baseline}_rps"] = round(_median([r["rps"] for r in runs[baseline]]), 1)
            summary[f"{baseline}_cpu_us_per_request"] = _median_of(
                runs[baseline], "server_cpu_us_per_request"
            )
    for name in ENDPOINTS:
        if not runs.get(name):
            continue
        rps = _median([r["rps"] for r in runs[name]])
        summary[name] = {
            "cpu_us_per_request": _median_of(runs[name], "server_cpu_us_per_request"),
            "switches_per_request": _median_of(runs[name], "server_switches_per_request"),
            "rps": round(rps, 1),
            "p99_ms": _median([r["p99_ms"] for r in runs[name]]),
            "p50_ms": _median([r["p50_ms"] for r in runs[name]]),
            "non2xx": sum(r["non2xx"] for r in runs[name]),
        }
        for baseline in BASELINES:
            if summary.get(f"{baseline}_rps"):
                key = "ratio" + baseline.removeprefix("bare")
                summary[name][key] = round(rps / summary[f"{baseline}_rps"], 3)
    return summary
