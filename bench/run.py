"""``make bench``: what a user waits for, measured honestly on a shared machine.

    make bench                         # or: .venv/bin/python bench/run.py [--quick] [--only …]

- whole ``lab`` commands as processes (``up`` warm, ``reset``, ``reset --to 12``, ``verify``
  with 100k audit records present), interleaved round by round with the interpreter's own
  start-up as the floor; min and median of several runs;
- the agent's full chain against its floor (``bench/chain.py``), alternated run by run;
- chains per second with 16 agents at once, all checked correct;
- each token endpoint (ID-JAG issuance, jwt-bearer, the MCP server's exchange) under wrk against
  a bare POST that does one ES256 signature on the same server stack, interleaved in one run.

Every figure carries the load average beside it; ``bench/results.json`` records them with the
machine. The table prints each figure against the issue's target with the ratio. Nothing fails
on timing: this is a benchmark, not a test. ``make bench-scale`` (``bench/scale.py``) runs the
policy-size and audit-size scaling.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.commands import Timed, interleaved, lab_command, python_floor, run_once  # noqa: E402
from bench.load import BareServer, loadavg  # noqa: E402
from lab.config import PORTS, Settings  # noqa: E402
from lab.serving import bind_socket  # noqa: E402

AUDIT_RECORDS = 100_000


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "loadavg_at_start": loadavg(),
    }


class Lab:
    """A private lab: its own $LAB_HOME and free ports, driven through the real ``lab`` CLI."""

    def __init__(self, home: Path) -> None:
        socks = [bind_socket("127.0.0.1", 0) for _ in PORTS]
        ports = {name: s.getsockname()[1] for name, s in zip(PORTS, socks, strict=True)}
        for s in socks:
            s.close()
        self.env = {**os.environ, "LAB_HOME": str(home), "NO_COLOR": "1"}
        # A user's Python caches bytecode (pip compiles installed packages; the lab's own modules
        # are cached on first run). With PYTHONDONTWRITEBYTECODE set, as in some sandboxes, every
        # command would compile the lab's modules from source again (50 ms of CPU in the
        # runtime's start alone): the warm-up round writes the caches, as a first run does.
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)
        for name, (variable, _) in PORTS.items():
            self.env[variable] = str(ports[name])
        self.settings = Settings.from_env(self.env)
        self.lab = lab_command()

    def run(self, *args: str) -> float:
        return run_once([*self.lab, *args], self.env, ROOT)

    def down(self) -> None:
        import subprocess

        subprocess.run(
            [*self.lab, "down"],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            timeout=120,
            check=False,
        )

    def settle(self, timeout_s: float = 120.0) -> None:
        """Wait (untimed) until a just-started runtime has built its deferred parts (the MCP
        server): a command timed right after `lab up` would otherwise time that build too."""
        import urllib.request

        url = f"{self.settings.endpoints.mcp.rsplit('/', 1)[0]}/healthz"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if not json.loads(response.read()).get("building"):
                        return
            except OSError:
                pass
            time.sleep(0.05)

    def backend_pid(self) -> int:
        return int(json.loads(self.settings.runtime_file.read_text())["pid"])


def bench_commands(lab: Lab, rounds: int) -> dict[str, Any]:
    from bench.audit_fill import fill_audit

    lab.run("up")
    lab.run("verify")  # checkpoints for `reset --to 12`, and a warm interpreter cache
    last = fill_audit(lab.settings.pdp_db, AUDIT_RECORDS)
    commands = [
        Timed("up_warm", [*lab.lab, "up"], before=lab.down),
        Timed("reset", [*lab.lab, "reset"], before=lab.settle),
        Timed("reset_to_12", [*lab.lab, "reset", "--to", "12"]),
        Timed("verify_100k_audit", [*lab.lab, "verify"]),
        python_floor(),
    ]
    results = interleaved(commands, lab.env, ROOT, rounds)
    results["audit_records_present"] = last
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs (a smoke run)")
    parser.add_argument(
        "--only", nargs="*", default=None, choices=["commands", "chain", "concurrency", "wrk"]
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.json")
    parser.add_argument(
        "--before",
        type=Path,
        default=ROOT / "bench" / "before.json",
        help="results of the same bench on the code before the levers",
    )
    args = parser.parse_args()
    only = set(args.only or ["commands", "chain", "concurrency", "wrk"])
    rounds = 3 if args.quick else 5
    results: dict[str, Any] = {"machine": machine()}

    from bench import chain, load

    with tempfile.TemporaryDirectory(prefix="lab-bench-") as tmp:
        lab = Lab(Path(tmp))
        try:
            if "commands" in only:
                print("commands (interleaved rounds) ...", file=sys.stderr)
                results["commands"] = bench_commands(lab, rounds)
            lab.run("up")
            if {"chain", "concurrency", "wrk"} & only:
                chain.setup_chain_state(lab.settings)
            if "chain" in only:
                print("chain vs floor ...", file=sys.stderr)
                bare = BareServer()
                try:
                    floor = chain.Floor(bare.url)
                    results["chain"] = chain.chain_vs_floor(
                        lab.settings, floor, runs=10 if args.quick else 40
                    )
                finally:
                    bare.stop()
            if "concurrency" in only:
                print("chains/s at concurrency 16 ...", file=sys.stderr)
                results["concurrency"] = chain.chains_per_second(
                    lab.settings, concurrency=16, duration_s=5 if args.quick else 15
                )
            if "wrk" in only:
                print("token endpoints vs bare POST (wrk, interleaved) ...", file=sys.stderr)
                results["wrk"] = load.token_endpoints(
                    lab.settings,
                    rounds=1 if args.quick else 2,
                    duration_s=3 if args.quick else 5,
                    connections=16,
                )
            results["backend_rss_mb"] = round(chain.rss_kb(lab.backend_pid()) / 1024, 1)
        finally:
            lab.down()
    results["machine"]["loadavg_at_end"] = loadavg()
    before = _read(args.before)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results, before)
    print(f"\nwritten to {args.out}")
    return 0


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def figures(results: dict[str, Any]) -> list[tuple[str, Any, str, float, str]]:
    """(figure, measured, op, target, load) rows, the issue's targets table."""
    rows: list[tuple[str, Any, str, float, str]] = []
    commands = results.get("commands") or {}

    def cmd(name: str, label: str, target: float) -> None:
        if name in commands:
            c = commands[name]
            rows.append(
                (
                    f"{label} (median s; min {c['min_s']}; CPU {c.get('cpu_median_s', '?')} s)",
                    c["median_s"],
                    "<=",
                    target,
                    _load(c["loadavg"][len(c["loadavg"]) // 2]),
                )
            )

    cmd("up_warm", "lab up, warm", 0.5)
    cmd("reset", "lab reset", 0.2)
    cmd("reset_to_12", "lab reset --to 12", 0.2)
    cmd("verify_100k_audit", "lab verify, 100k audit records", 3.0)
    if "python_start" in commands:
        c = commands["python_start"]
        rows.append(("  floor: python -c pass (median s)", c["median_s"], "", 0.0, ""))
    if "chain" in results:
        c = results["chain"]
        rows.append(
            (
                f"chain p50 / floor ({c['chain_p50_ms']} / {c['floor_p50_ms']} ms)",
                c["ratio"],
                "<=",
                1.5,
                _load(c["loadavg_before"]),
            )
        )
    if "concurrency" in results:
        c = results["concurrency"]
        rows.append(
            (
                f"chains/s at concurrency 16 ({c['ok']} ok, {c['failed']} failed)",
                c["chains_per_s"],
                "",
                0.0,
                _load(c["loadavg_before"]),
            )
        )
    if "wrk" in results:
        w = results["wrk"]
        for name, label in (
            ("id_jag", "ID-JAG issuance"),
            ("jwt_bearer", "jwt-bearer"),
            ("exchange", "MCP exchange"),
        ):
            e = w[name]
            load = _load(w["runs"][name][0]["loadavg_before"])
            rows.append(
                (
                    f"{label} / bare POST ({e['rps']} / {w['bare_rps']} req/s)",
                    e["ratio"],
                    ">=",
                    0.5,
                    load,
                )
            )
            rows.append((f"{label} p99 at c16 (ms)", e["p99_ms"], "<=", 150.0, load))
            if e.get("cpu_us_per_request") and w.get("bare_cpu_us_per_request"):
                # Server CPU per request (/proc): what load does not stretch. Bare / endpoint,
                # so it reads like the throughput ratio (>= 0.5: at most twice the bare POST's).
                rows.append(
                    (
                        f"{label}: bare CPU / endpoint CPU ({w['bare_cpu_us_per_request']} / "
                        f"{e['cpu_us_per_request']} µs per request)",
                        round(w["bare_cpu_us_per_request"] / e["cpu_us_per_request"], 3),
                        ">=",
                        0.5,
                        load,
                    )
                )
    return rows


def _load(values: list[float]) -> str:
    return "/".join(f"{v:.1f}" for v in values)


def print_table(results: dict[str, Any], before: dict[str, Any] | None) -> None:
    from rich.console import Console
    from rich.table import Table

    before_rows = {row[0].split(" (")[0]: row[1] for row in figures(before)} if before else {}
    table = Table(title="ID-JAG lab benchmarks (targets from issue #21)")
    for column in ("figure", "measured", "target", "ratio", "met", "before", "load 1/5/15"):
        table.add_column(column)
    for name, value, op, target, load in figures(results):
        if not op:
            table.add_row(
                name, str(value), "", "", "", str(before_rows.get(name.split(" (")[0], "")), load
            )
            continue
        met = value <= target if op == "<=" else value >= target
        ratio = f"{value / target:.2f}×" if target else ""
        table.add_row(
            name,
            str(value),
            f"{op} {target}",
            ratio,
            "yes" if met else "NO",
            str(before_rows.get(name.split(" (")[0], "")),
            load,
        )
    Console(width=160).print(table)
    m = results["machine"]
    print(
        f"machine: {m['cpus']} × {m['cpu_model']}, {m['memory_gb']} GB, Python {m['python']}; "
        f"load {_load(m['loadavg_at_start'])} → {_load(m.get('loadavg_at_end', []))}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
