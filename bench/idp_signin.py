"""The IdP's side of a sign-in: ``.venv/bin/python bench/idp_signin.py [--against REV]``.

A private lab (``lab up``: the runtime as users run it, its logging included), then rounds of
``--per-round`` code-flow sign-ins through the lab's own agent (authorize page, login form, code
redemption), each round timed from the client and counted in the runtime's CPU from
``/proc/<pid>/stat`` (all its threads). With ``--against REV`` a second lab runs that revision
(``git archive``, as ``bench/run.py --against``) and the rounds alternate between the two, so
both columns come from the same minutes. The runtime serves nothing else meanwhile, so its CPU
per sign-in is the IdP's handlers plus uvicorn/h11 for three requests (and whatever the idle
parts do in the background, the same for both). Medians and the load average beside them.

``--floor``: rounds alternate with the sign-in's share of the chain's floor in the same minutes:
three POSTs to ``bench/bare_server.py`` (uvicorn with the lab's config, one ES256 signature
each) with the same kind of client, counted in that server's CPU from ``/proc``, plus the two
RS256 signatures the floor counts (timed in this process's thread CPU).

``--in-process``: the same alternation, but each round is a fresh process per checkout driving
the IdP's ASGI app directly (``bench/idp_inproc.py``): no sockets and no HTTP server, so the
IdP's own CPU per sign-in and per endpoint shows with much less noise.

For a profile of the IdP's handlers: ``py-spy record -p <runtime pid> -r 500 -f raw`` while
``--rounds 0`` keeps signing in (the pid is printed).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.load import BareServer, loadavg  # noqa: E402
from bench.run import Lab, checkout  # noqa: E402
from lab.config import LEARNER_USERNAME  # noqa: E402


def process_cpu_s(pid: int) -> float:
    """User + system CPU of a whole process (every thread), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sign_ins(lab: Lab, count: int) -> tuple[float, float]:
    """``count`` code-flow sign-ins with one agent: (runtime CPU ms, client wall ms) each."""
    from lab.agent import Agent

    pid = lab.backend_pid()
    with Agent(lab.settings.endpoints, lab.settings) as agent:
        # One sign-in outside the count: the agent's connection and the IdP's first-use paths.
        if agent.sign_in(LEARNER_USERNAME, "password", method="code").id_token is None:
            raise RuntimeError("sign-in failed")
        cpu = process_cpu_s(pid)
        start = time.perf_counter()
        for _ in range(count):
            signed_in = agent.sign_in(LEARNER_USERNAME, "password", method="code")
            if signed_in.id_token is None:
                raise RuntimeError(f"sign-in failed: {signed_in.error}")
        wall = time.perf_counter() - start
        cpu = process_cpu_s(pid) - cpu
    return cpu * 1000 / count, wall * 1000 / count


def floor_share(server: BareServer, count: int) -> tuple[float, float]:
    """The sign-in's share of the floor, ``count`` times: (server CPU ms + RS256 ms, wall ms)."""
    import httpx
    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with httpx.Client(timeout=10) as client:
        client.post(server.url, data={"grant_type": "floor"}).raise_for_status()
        cpu = process_cpu_s(server.proc.pid)
        start = time.perf_counter()
        for _ in range(count):
            for _ in range(3):
                client.post(server.url, data={"grant_type": "floor"}).raise_for_status()
        wall = time.perf_counter() - start
        cpu = process_cpu_s(server.proc.pid) - cpu
    signing = time.thread_time()
    for _ in range(count):
        for _ in range(2):
            jwt.encode({"sub": "x", "aud": "y"}, key, algorithm="RS256")
    signing = time.thread_time() - signing
    return (cpu + signing) * 1000 / count, wall * 1000 / count


def in_process(code: Path, count: int) -> dict[str, float]:
    """One fresh process driving ``code``'s IdP app: thread CPU µs per sign-in and endpoint."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "idp_inproc.py"), str(count)],
        env={**os.environ, "PYTHONPATH": str(code)},
        cwd=code,
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {"sign-in (app + driver)": result["sign_in_us"], **result["endpoints_us"]}


def main_in_process(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="lab-bench-signin-") as tmp:
        codes = {"this checkout": ROOT}
        if args.against:
            codes[args.against] = checkout(args.against, Path(tmp) / "code")
        results: dict[str, list[dict[str, float]]] = {name: [] for name in codes}
        loads = [loadavg()[0]]
        for _ in range(args.rounds):
            for name, code in codes.items():
                results[name].append(in_process(code, args.per_round))
            loads.append(loadavg()[0])
    print(f"load average {min(loads):.1f}-{max(loads):.1f}, {args.per_round} sign-ins per round")
    print("in-process thread CPU, µs: medians (min-max of the rounds)")
    for name, rounds in results.items():
        cells = []
        for key in rounds[0]:
            values = [r[key] for r in rounds]
            cells.append(
                f"{key} {statistics.median(values):.0f} ({min(values):.0f}-{max(values):.0f})"
            )
        print(f"{name:>16}: " + ", ".join(cells))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6, help="0: sign in until interrupted")
    parser.add_argument("--per-round", type=int, default=300)
    parser.add_argument("--against", metavar="REV", help="alternate with a lab on this revision")
    parser.add_argument("--in-process", action="store_true", help="the IdP app alone, no HTTP")
    parser.add_argument("--floor", action="store_true", help="alternate with the floor's share")
    args = parser.parse_args()
    if args.in_process:
        return main_in_process(args)
    with tempfile.TemporaryDirectory(prefix="lab-bench-signin-") as tmp:
        labs = {"this checkout": Lab(Path(tmp) / "home")}
        if args.against:
            code = checkout(args.against, Path(tmp) / "code")
            labs[args.against] = Lab(Path(tmp) / "home-against", code=code)
        bare: BareServer | None = None
        try:
            for name, lab in labs.items():
                lab.run("up")
                lab.settle()  # the deferred parts built: their start is not a sign-in's CPU
                sign_ins(lab, 50)  # warm-up: first-use paths, caches
                print(f"{name}: runtime pid {lab.backend_pid()}", file=sys.stderr)
            if args.rounds == 0:
                lab = labs["this checkout"]
                while True:
                    sign_ins(lab, args.per_round)
            results: dict[str, list[tuple[float, float]]] = {name: [] for name in labs}
            bare = BareServer() if args.floor else None
            if bare is not None:
                results["floor's share"] = []
            loads = [loadavg()[0]]
            for _ in range(args.rounds):
                for name, lab in labs.items():
                    results[name].append(sign_ins(lab, args.per_round))
                if bare is not None:
                    results["floor's share"].append(floor_share(bare, args.per_round))
                loads.append(loadavg()[0])
        finally:
            for lab in labs.values():
                lab.down()
            if bare is not None:
                bare.stop()
    print(f"load average {min(loads):.1f}-{max(loads):.1f}, {args.per_round} sign-ins per round")
    for name, rounds in results.items():
        cpus = [cpu for cpu, _ in rounds]
        walls = [wall for _, wall in rounds]
        print(
            f"{name:>16}: server CPU {statistics.median(cpus):.3f} ms/sign-in "
            f"(rounds {min(cpus):.3f}-{max(cpus):.3f}), client wall "
            f"{statistics.median(walls):.3f} ms (rounds {min(walls):.3f}-{max(walls):.3f})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
