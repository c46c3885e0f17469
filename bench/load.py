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
from collections.abc import Callable
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
    reuse_bodies: bool = False,
) -> dict[str, Any]:
    """One wrk run; requests/s counts only 2xx answers. With ``server_pid``, also the server's
    CPU µs and context switches per request (every request wrk sent, answered or not).

    Each body is sent at most once: a wrk thread out of bodies stops, and the run says how many
    requests found none (``exhausted``). ``reuse_bodies`` wraps around instead, only for a
    server that checks no body (the bare baselines). A run with any non-2xx answer or any
    exhausted request is no measurement (``measured`` False): see :func:`measured`."""
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
            *(["wrap"] if reuse_bodies else []),
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
    exhausted = int(raw.get("exhausted", 0))
    if exhausted:
        print(
            f"  wrk ran out of bodies for {url} after {raw['requests'] - exhausted} requests "
            f"({count} prepared): run stopped, not counted",
            file=sys.stderr,
        )
    elif raw["non2xx"]:
        print(
            f"  {raw['non2xx']} of {raw['requests']} answers from {url} were not 2xx: "
            "run not counted",
            file=sys.stderr,
        )
    return {
        "rps": round(ok / seconds, 1),
        "requests": raw["requests"],
        "non2xx": raw["non2xx"],
        "exhausted": exhausted,
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


def measured(run: dict[str, Any]) -> bool:
    """A run every request of which was answered 2xx with a body of its own: its rate is a
    measurement. One with refusals (a reused single-use body is one) or cut short by running
    out of bodies is not, whatever its rate."""
    return not run.get("non2xx") and not run.get("exhausted")


#: Bodies prepared per second of a run at the fastest rate seen, and a floor for slow runs.
BODY_MARGIN = 1.5
MIN_BODIES = 200
#: Runs again, each with twice the bodies, after a run that ran out (then it is not counted).
RERUNS_OUT_OF_BODIES = 2


def bodies_needed(fastest_rps: float, duration_s: float) -> int:
    """Enough bodies for ``duration_s`` at ``BODY_MARGIN`` × the fastest 2xx rate seen so far.

    Sized from the fastest run, not the warm-up's: a warm-up on cold caches is slower than the
    runs after it, and bodies sized from it were reused (then refused as replays) under wrk."""
    return int(max(fastest_rps, MIN_BODIES) * duration_s * BODY_MARGIN) + MIN_BODIES


def until_enough_bodies(
    run: Callable[[int], dict[str, Any]], fastest: float, duration_s: float
) -> tuple[list[dict[str, Any]], float]:
    """``run(count)`` with bodies for the fastest rate seen; after a run that ran out of them,
    again with twice the rate's bodies (``RERUNS_OUT_OF_BODIES`` times at most). Every run made
    (those cut short are shown, not counted) and the fastest rate seen after them."""
    made: list[dict[str, Any]] = []
    for attempt in range(1 + RERUNS_OUT_OF_BODIES):
        if attempt:
            fastest *= 2
        result = run(bodies_needed(fastest, duration_s))
        made.append(result)
        fastest = max(fastest, result["rps"])
        if not result.get("exhausted"):
            break
    return made, fastest


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
            # Warm-up: every server, long enough for the thread pools and caches to fill. Every
            # later body file is sized from the fastest token-endpoint rate seen so far (this
            # one's, then each run's), so that no body is ever reused; a run that still runs
            # out is stopped and not counted (bench/bodies.lua), and the next is sized up.
            warm_forms = id_jag_forms(settings, id_token, 3000)
            warm = write_bodies(warm_forms, directory, "warm")
            for bare in bares.values():
                run_wrk(
                    bare.url,
                    warm,
                    len(warm_forms),
                    duration_s=2,
                    connections=connections,
                    reuse_bodies=True,
                )
            warmed = run_wrk(
                zts_token, warm, len(warm_forms), duration_s=2, connections=connections
            )
            fastest = warmed["rps"] * (2 if warmed["exhausted"] else 1)
            makers = {
                "id_jag": lambda count: id_jag_forms(settings, id_token, count),
                "jwt_bearer": lambda count: jwt_bearer_forms(
                    settings, one_id_jag(settings, id_token), count
                ),
                "exchange": lambda count: exchange_forms(settings, access, count),
            }
            for _ in range(rounds):
                for name, make in makers.items():
                    count = bodies_needed(fastest, duration_s)
                    path = write_bodies(make(count), directory, name)
                    for baseline, bare in bares.items():
                        runs[baseline].append(
                            run_wrk(
                                bare.url,
                                path,
                                count,
                                duration_s=duration_s,
                                connections=connections,
                                server_pid=bare.proc.pid,
                                reuse_bodies=True,  # it checks no body: reuse is harmless
                            )
                        )
                    prepared = {count: path}

                    def endpoint_run(
                        count: int,
                        prepared: dict[int, Path] = prepared,
                        make: Callable[[int], list[dict[str, str]]] = make,
                        name: str = name,
                    ) -> dict[str, Any]:
                        if count not in prepared:
                            prepared[count] = write_bodies(make(count), directory, name)
                        return run_wrk(
                            zts_token,
                            prepared[count],
                            count,
                            duration_s=duration_s,
                            connections=connections,
                            server_pid=lab_pid,
                        )

                    made, fastest = until_enough_bodies(endpoint_run, fastest, duration_s)
                    runs[name].extend(made)  # those cut short too: shown, not counted
    finally:
        for bare in bares.values():
            bare.stop()
    return summarise(runs, connections)


def _counted(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runs the medians come from: the measured ones, or (none measured) every run, then
    shown as no measurement (``measured_runs`` 0) rather than left out."""
    return [r for r in runs if measured(r)] or runs


def _refusals(runs: list[dict[str, Any]]) -> dict[str, int]:
    """What is shown beside each figure: non-2xx answers and bodiless requests over all runs,
    and how many runs were measurements."""
    return {
        "non2xx": sum(r.get("non2xx", 0) for r in runs),
        "exhausted": sum(r.get("exhausted", 0) for r in runs),
        "measured_runs": sum(1 for r in runs if measured(r)),
        "total_runs": len(runs),
    }


def summarise(runs: dict[str, list[dict[str, Any]]], connections: int) -> dict[str, Any]:
    """Medians of the wrk runs: each baseline's rate and CPU per request (``bare_rps``,
    ``bare_cpu_us_per_request`` for the thread-pool one, the keys older results used;
    ``bare_on_loop_…`` for the other), and each endpoint's ratio against each baseline
    (``ratio`` against the thread-pool one, ``ratio_on_loop`` against the on-loop one).
    Medians come from measured runs only (:func:`measured`); the non-2xx and exhausted counts
    and ``measured_runs`` of ``total_runs`` go with every figure."""
    summary: dict[str, Any] = {"connections": connections, "runs": runs}
    for baseline in BASELINES:
        if runs.get(baseline):
            counted = _counted(runs[baseline])
            summary[f"{baseline}_rps"] = round(_median([r["rps"] for r in counted]), 1)
            summary[f"{baseline}_cpu_us_per_request"] = _median_of(
                counted, "server_cpu_us_per_request"
            )
            summary.update(
                {f"{baseline}_{key}": value for key, value in _refusals(runs[baseline]).items()}
            )
    for name in ENDPOINTS:
        if not runs.get(name):
            continue
        counted = _counted(runs[name])
        rps = _median([r["rps"] for r in counted])
        summary[name] = {
            "cpu_us_per_request": _median_of(counted, "server_cpu_us_per_request"),
            "switches_per_request": _median_of(counted, "server_switches_per_request"),
            "rps": round(rps, 1),
            "p99_ms": _median([r["p99_ms"] for r in counted]),
            "p50_ms": _median([r["p50_ms"] for r in counted]),
            **_refusals(runs[name]),
        }
        for baseline in BASELINES:
            if summary.get(f"{baseline}_rps"):
                key = "ratio" + baseline.removeprefix("bare")
                summary[name][key] = round(rps / summary[f"{baseline}_rps"], 3)
    return summary
