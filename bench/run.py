"""Benchmarks: setup, verify, reset, chain latency, token throughput, memory.

    make bench                      # or: .venv/bin/python bench/run.py [--quick]

Prints a table and writes ``bench/results.json``. Benchmarks are not tests: nothing here fails
on timing; the table marks each figure against its target so a regression is visible.

Everything runs on loopback in a private ``$LAB_HOME`` with free ports, so a running lab is not
disturbed. Throughput is reported as a ratio to a bare Starlette endpoint served the same way
(uvicorn, one process, same machine, same run), because absolute req/s vary between machines.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from lab.config import PORTS, Settings  # noqa: E402
from lab.serving import bind_socket  # noqa: E402

TARGETS = {
    "up_s": ("<=", 1.0),
    "verify_s": ("<=", 5.0),
    "reset_s": ("<=", 0.2),
    "reset_to_12_s": ("<=", 0.2),
    "chain_p50_ms": ("<=", 50.0),
    "id_jag_ratio": (">=", 0.4),
    "jwt_bearer_ratio": (">=", 0.4),
    "rss_mb": ("<=", 200.0),
}


def free_ports() -> dict[str, int]:
    socks = [bind_socket("127.0.0.1", 0) for _ in PORTS]
    ports = {name: s.getsockname()[1] for name, s in zip(PORTS, socks, strict=True)}
    for s in socks:
        s.close()
    return ports


class Lab:
    """A private lab: its own $LAB_HOME and ports, driven through the real `lab` CLI."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.ports = free_ports()
        self.env = {**os.environ, "LAB_HOME": str(home), "NO_COLOR": "1"}
        for name, (variable, _) in PORTS.items():
            self.env[variable] = str(self.ports[name])
        self.settings = Settings.from_env(self.env)

    def lab(self, *args: str, check: bool = True) -> float:
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "lab.cli.main", *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )
        elapsed = time.perf_counter() - start
        if check and proc.returncode != 0:
            raise RuntimeError(
                f"lab {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
            )
        return elapsed

    def backend_pid(self) -> int:
        return int(json.loads(self.settings.runtime_file.read_text())["pid"])


def timed(fn: Callable[[], Any], repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def rss_mb(pid: int) -> float:
    """Peak resident set size (VmHWM) of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# ---------------------------------------------------------------------------------------------
# Token throughput


async def _blast(
    url: str, bodies: list[dict[str, str]] | None, duration_s: float, concurrency: int
) -> float:
    """Requests per second over ``duration_s`` (or until the prepared bodies run out)."""
    done = 0
    errors = 0
    index = 0
    deadline = time.perf_counter() + duration_s
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=10) as client:

        async def worker() -> None:
            nonlocal done, errors, index
            while time.perf_counter() < deadline:
                if bodies is None:
                    response = await client.get(url)
                else:
                    if index >= len(bodies):
                        return
                    body = bodies[index]
                    index += 1
                    response = await client.post(url, data=body)
                if response.status_code == 200:
                    done += 1
                else:
                    errors += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    if errors:
        print(f"  note: {errors} non-200 answers from {url}", file=sys.stderr)
    return done / elapsed if elapsed else 0.0


def bare_server(port_holder: list[int]) -> subprocess.Popen[str]:
    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    sock.close()
    port_holder.append(port)
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "bare_server.py"), str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/", timeout=0.5).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("bare server did not start")


def token_throughput(lab: Lab, duration_s: float, concurrency: int) -> dict[str, float]:
    from bench.chain import prepare_id_jag_bodies, prepare_jwt_bearer_bodies

    endpoints = lab.settings.endpoints
    count = int(duration_s * 3000)  # more than any machine here will consume in duration_s
    id_jag_bodies = prepare_id_jag_bodies(lab.settings, count)
    id_jag_rps = asyncio.run(_blast(endpoints.zts_token, id_jag_bodies, duration_s, concurrency))
    bearer_bodies = prepare_jwt_bearer_bodies(
        lab.settings, min(count, max(200, int(id_jag_rps * duration_s * 1.5)))
    )
    bearer_rps = asyncio.run(_blast(endpoints.zts_token, bearer_bodies, duration_s, concurrency))
    port: list[int] = []
    proc = bare_server(port)
    try:
        bare_rps = asyncio.run(
            _blast(f"http://127.0.0.1:{port[0]}/", None, duration_s, concurrency)
        )
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return {
        "id_jag": round(id_jag_rps, 1),
        "jwt_bearer": round(bearer_rps, 1),
        "bare": round(bare_rps, 1),
    }


# ---------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (smoke run)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.json")
    args = parser.parse_args()
    repeat = 3 if args.quick else 10
    chain_runs = 10 if args.quick else 50
    duration = 2.0 if args.quick else 5.0

    from bench.chain import run_chain_once, setup_chain_state

    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    }
    with tempfile.TemporaryDirectory(prefix="lab-bench-") as tmp:
        lab = Lab(Path(tmp))
        lab.lab("down", check=False)
        ups = []
        for _ in range(3 if args.quick else 5):
            ups.append(lab.lab("up"))
            lab.lab("down")
        results["up_s"] = round(statistics.median(ups), 3)
        lab.lab("up")
        try:
            results["verify_s"] = round(lab.lab("verify"), 3)
            # reset and reset --to 12 are timed in-process (CLI start-up is not reset work)
            from lab.state import reset, reset_to  # type: ignore[attr-defined]

            results["reset_s"] = round(
                statistics.median(timed(lambda: reset(lab.settings), repeat)), 4
            )
            results["reset_to_12_s"] = round(
                statistics.median(timed(lambda: reset_to(lab.settings, 12), repeat)), 4
            )
            setup_chain_state(lab.settings)
            samples = [run_chain_once(lab.settings) for _ in range(chain_runs)]
            results["chain_ms"] = {
                "p50": round(percentile(samples, 0.5) * 1000, 1),
                "p95": round(percentile(samples, 0.95) * 1000, 1),
                "runs": chain_runs,
            }
            results["token_rps"] = token_throughput(lab, duration, concurrency=16)
            results["rss_mb"] = round(rss_mb(lab.backend_pid()), 1)
        finally:
            lab.lab("down", check=False)

    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    print(f"\nwritten to {args.out}")
    return 0


def print_table(results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    rps = results.get("token_rps", {})
    bare = rps.get("bare") or float("nan")
    figures = {
        "up_s": results.get("up_s"),
        "verify_s": results.get("verify_s"),
        "reset_s": results.get("reset_s"),
        "reset_to_12_s": results.get("reset_to_12_s"),
        "chain_p50_ms": results.get("chain_ms", {}).get("p50"),
        "id_jag_ratio": round(rps.get("id_jag", 0) / bare, 2) if rps else None,
        "jwt_bearer_ratio": round(rps.get("jwt_bearer", 0) / bare, 2) if rps else None,
        "rss_mb": results.get("rss_mb"),
    }
    table = Table(title="ID-JAG lab benchmarks")
    for column in ("measure", "value", "target", "met"):
        table.add_column(column)
    for name, value in figures.items():
        op, target = TARGETS[name]
        met = value is not None and (value <= target if op == "<=" else value >= target)
        table.add_row(name, str(value), f"{op} {target}", "yes" if met else "NO")
    table.add_row("chain_p95_ms", str(results.get("chain_ms", {}).get("p95")), "", "")
    table.add_row("token_rps", json.dumps(rps), "", "")
    Console().print(table)


if __name__ == "__main__":
    raise SystemExit(main())
