"""``make bench``: what a user waits for, measured honestly on a shared machine.

    make bench                         # or: .venv/bin/python bench/run.py [--quick] [--only …]

- whole ``lab`` commands as processes (``up`` warm, ``reset``, ``reset --to 12``, ``verify``
  with 100k audit records present), interleaved round by round with the interpreter's own
  start-up as the floor; min and median of several runs;
- the agent's full chain against its floor (``bench/chain.py``), alternated run by run;
- chains per second with 16 agents at once, all checked correct;
- each token endpoint (ID-JAG issuance, jwt-bearer, the MCP server's exchange) under wrk against
  a bare POST that does one ES256 signature on the same server stack, interleaved in one run:
  two of them, one signing in the thread pool, one on the event loop (the token endpoint's path
  when nothing blocks); each ratio against each, labelled. The chain's floor likewise.

``--against REV`` also runs the commands on another revision, alternating with this checkout in
the same rounds (the before/after that holds on a busy machine).

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
from bench.load import BASELINE_LABELS, bare_servers, loadavg  # noqa: E402
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

    def __init__(self, home: Path, code: Path | None = None) -> None:
        #: The checkout whose `lab` runs: this one, or another revision's (``--against``).
        self.root = code or ROOT
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
        if code is not None:
            # The same interpreter and libraries, another revision's `lab` package first on the
            # path (the runtime `lab up` starts inherits it).
            self.env["PYTHONPATH"] = str(code)
        for name, (variable, _) in PORTS.items():
            self.env[variable] = str(ports[name])
        self.settings = Settings.from_env(self.env)
        self.lab = lab_command()

    def run(self, *args: str) -> float:
        return run_once([*self.lab, *args], self.env, self.root)

    def down(self) -> None:
        import subprocess

        subprocess.run(
            [*self.lab, "down"],
            env=self.env,
            cwd=self.root,
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


def prepare(lab: Lab) -> int:
    """Up, every step once (checkpoints for `reset --to 12`, warm caches), 100k audit records
    built by that lab's own code (its audit record format); the last audit seq."""
    import subprocess

    lab.run("up")
    lab.run("verify")
    fill = (
        "import sys; from pathlib import Path; from bench.audit_fill import fill_audit; "
        f"print(fill_audit(Path({str(lab.settings.pdp_db)!r}), {AUDIT_RECORDS}))"
    )
    code = lab.root if (lab.root / "bench" / "audit_fill.py").exists() else ROOT
    done = subprocess.run(
        [sys.executable, "-c", fill],
        env={**lab.env, "PYTHONPATH": str(code)},
        cwd=code,
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout.split()[-1])


def timed_commands(lab: Lab, suffix: str = "") -> list[Timed]:
    env, cwd = (lab.env, lab.root) if suffix else (None, None)
    return [
        Timed(f"up_warm{suffix}", [*lab.lab, "up"], before=lab.down, env=env, cwd=cwd),
        Timed(f"reset{suffix}", [*lab.lab, "reset"], before=lab.settle, env=env, cwd=cwd),
        Timed(f"reset_to_12{suffix}", [*lab.lab, "reset", "--to", "12"], env=env, cwd=cwd),
        Timed(f"verify_100k_audit{suffix}", [*lab.lab, "verify"], env=env, cwd=cwd),
    ]


def bench_commands(lab: Lab, rounds: int, other: Lab | None = None) -> dict[str, Any]:
    """The commands, round by round; with ``other`` (``--against REV``) each command is run on
    both checkouts in the same round, so both see the same load."""
    last = prepare(lab)
    commands = timed_commands(lab)
    if other is not None:
        prepare(other)
        theirs = timed_commands(other, suffix="@against")
        commands = [c for pair in zip(commands, theirs, strict=True) for c in pair]
    commands.append(python_floor())
    results = interleaved(commands, lab.env, ROOT, rounds)
    results["audit_records_present"] = last
    return results


def checkout(rev: str, into: Path) -> Path:
    """``rev`` of this repository as plain files (``git archive``), for ``--against``."""
    import io
    import subprocess
    import tarfile

    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", rev], capture_output=True, check=True
    ).stdout

    def plain(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo | None:
        # A link out of the tree (a `.venv-main` committed by mistake in f32f92c) is no code:
        # left out, where the "data" filter would refuse the whole archive.
        try:
            return tarfile.data_filter(member, path)
        except tarfile.LinkOutsideDestinationError:
            return None
        except tarfile.AbsoluteLinkError:
            return None

    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter=plain)
    return into


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs (a smoke run)")
    parser.add_argument(
        "--only", nargs="*", default=None, choices=["commands", "chain", "concurrency", "wrk"]
    )
    parser.add_argument(
        "--against",
        metavar="REV",
        help="also run the commands on this git revision, interleaved in the same rounds "
        "(same load for both: the honest before/after)",
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
        lab = Lab(Path(tmp) / "home")
        other = None
        if args.against and "commands" in only:
            code = checkout(args.against, Path(tmp) / "against")
            other = Lab(Path(tmp) / "against-home", code=code)
            results["against"] = args.against
        try:
            if "commands" in only:
                print("commands (interleaved rounds) ...", file=sys.stderr)
                results["commands"] = bench_commands(lab, rounds, other)
            lab.run("up")
            if {"chain", "concurrency", "wrk"} & only:
                chain.setup_chain_state(lab.settings)
            if "chain" in only:
                print("chain vs floor ...", file=sys.stderr)
                bares = bare_servers()
                try:
                    floors = {name: chain.Floor(bare.url) for name, bare in bares.items()}
                    results["chain"] = chain.chain_vs_floor(
                        lab.settings, floors, runs=10 if args.quick else 40
                    )
                finally:
                    for bare in bares.values():
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
            if other is not None:
                other.down()
    results["machine"]["loadavg_at_end"] = loadavg()
    before = _read(args.before)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results, before)
    if "against" in results:
        print_against(results)
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
        load = _load(c["loadavg_before"])
        # One floor per bare server (results older than both have one): each ratio shown, the
        # verdict against the stricter (lower) floor, whose chain / floor is the higher.
        for name, each in (c.get("floors") or {}).items():
            rows.append(
                (
                    f"  chain p50 / floor on the {BASELINE_LABELS.get(name, name)} "
                    f"({c['chain_p50_ms']} / {each['floor_p50_ms']} ms)",
                    each["ratio"],
                    "",
                    0.0,
                    load,
                )
            )
        stricter = c.get("strictest_floor")
        which = f"; stricter floor: {BASELINE_LABELS.get(stricter, stricter)}" if stricter else ""
        rows.append(
            (
                f"chain p50 / floor ({c['chain_p50_ms']} / {c['floor_p50_ms']} ms{which})",
                c["ratio"],
                "<=",
                1.5,
                load,
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
            # Beside every figure: its refusals. A run with any is no measurement (a reused
            # single-use body is refused, not served): left out of the medians, and a figure
            # with no measured run behind it gets no verdict.
            refusals = _refusals(e)
            unmeasured = e.get("measured_runs", 1) == 0
            # Against each bare POST (results older than the on-loop one have only the
            # thread-pool one): ratio of rates and, bare / endpoint, of server CPU per request
            # (/proc: what load does not stretch; >= 0.5 means at most twice the bare POST's).
            for baseline, base_label in BASELINE_LABELS.items():
                ratio = e.get("ratio" + baseline.removeprefix("bare"))
                if ratio is None or not w.get(f"{baseline}_rps"):
                    continue
                both = f"{refusals}; bare {_refusals(w, baseline + '_')}"
                verdict = not unmeasured and w.get(f"{baseline}_measured_runs", 1) != 0
                rows.append(
                    (
                        f"{label} / {base_label} ({e['rps']} / {w[f'{baseline}_rps']} req/s; "
                        f"{both})",
                        ratio,
                        ">=" if verdict else "",
                        0.5,
                        load,
                    )
                )
                base_cpu = w.get(f"{baseline}_cpu_us_per_request")
                if e.get("cpu_us_per_request") and base_cpu:
                    rows.append(
                        (
                            f"{label}: {base_label} CPU / endpoint CPU ({base_cpu} / "
                            f"{e['cpu_us_per_request']} µs per request; {both})",
                            round(base_cpu / e["cpu_us_per_request"], 3),
                            ">=" if verdict else "",
                            0.5,
                            load,
                        )
                    )
            rows.append(
                (
                    f"{label} p99 at c16 (ms; {refusals})",
                    e["p99_ms"],
                    "" if unmeasured else "<=",
                    150.0,
                    load,
                )
            )
    return rows


def _refusals(figures: dict[str, Any], prefix: str = "") -> str:
    """What stands beside a wrk figure: its non-2xx answers (and bodiless requests, runs left
    out), so that a run with refusals cannot pass as a measurement."""
    text = f"non-2xx {figures.get(prefix + 'non2xx', 0)}"
    if figures.get(prefix + "exhausted"):
        text += f", out of bodies {figures[prefix + 'exhausted']}"
    total, counted = figures.get(prefix + "total_runs"), figures.get(prefix + "measured_runs")
    if total is not None and counted is not None and counted < total:
        text += f", {total - counted} of {total} runs not counted"
        if counted == 0:
            text += ": NOT A MEASUREMENT"
    return text


def _shown(value: Any) -> str:
    """A figure as a person reads it: a median of two runs is 24.145, not 24.145000000000003."""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


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
            before_value = before_rows.get(name.split(" (")[0], "")
            table.add_row(name, _shown(value), "", "", "", _shown(before_value), load)
            continue
        met = value <= target if op == "<=" else value >= target
        ratio = f"{value / target:.2f}×" if target else ""
        table.add_row(
            name,
            _shown(value),
            f"{op} {target}",
            ratio,
            "yes" if met else "NO",
            _shown(before_rows.get(name.split(" (")[0], "")),
            load,
        )
    Console(width=160).print(table)
    m = results["machine"]
    print(
        f"machine: {m['cpus']} × {m['cpu_model']}, {m['memory_gb']} GB, Python {m['python']}; "
        f"load {_load(m['loadavg_at_start'])} → {_load(m.get('loadavg_at_end', []))}"
    )


def print_against(results: dict[str, Any]) -> None:
    """This checkout against ``--against REV``, command by command, from the same rounds."""
    from rich.console import Console
    from rich.table import Table

    commands = results["commands"]
    table = Table(title=f"this checkout against {results['against']} (same rounds)")
    for column in ("command", "this: median (min) s", "CPU s", "against: median (min) s", "CPU s"):
        table.add_column(column)
    for name in ("up_warm", "reset", "reset_to_12", "verify_100k_audit"):
        ours, theirs = commands.get(name), commands.get(f"{name}@against")
        if ours is None or theirs is None:
            continue
        table.add_row(
            ours["command"],
            f"{ours['median_s']} ({ours['min_s']})",
            str(ours["cpu_median_s"]),
            f"{theirs['median_s']} ({theirs['min_s']})",
            str(theirs["cpu_median_s"]),
        )
    Console().print(table)


if __name__ == "__main__":
    raise SystemExit(main())
