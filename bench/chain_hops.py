"""Where the chain's time goes, hop by hop: ``.venv/bin/python bench/chain_hops.py [--runs N]``.

``--ab``: chains whose agents keep the process's connections (one MCP session per server, one
HTTP pool) and chains with a new client, connection and SDK session per tool call and a pool per
agent (the path before), in alternating blocks of 10; figures per variant.

``--against REV``: also a lab on another revision (``git archive``, as ``bench/run.py
--against``), its chains in blocks alternating with this checkout's, so both columns come from
the same minutes: on a shared machine, runs minutes apart differ by more than most changes do.
Each revision's chains are driven by that revision's agent too: two worker processes (this
script with ``--worker``, the revision's ``lab`` first on the path), one per revision, each
timing its own chains and CPU; this process runs the floor after every chain of either.

The floor is run against both bare servers (``bench/bare_server.py``, signing in the thread
pool and on the event loop), one after the other after every chain; the chain's p50 is printed
against each, the verdict against the stricter (lower) one, as ``bench/run.py`` does.

A private lab at step 12 (as ``bench/run.py``), then ``N`` chains alternated with the floor
(``bench/chain.py``), each timed per link from the client side: the sign-in, the two token
requests, the tool call (and the tool call's own HTTP request inside it), every HTTP request by
path, the MCP server's two internal calls as its ``_meta`` hops report them, the agent's process
CPU (all its threads: the kept MCP sessions run on a thread of their own), and the runtime's
CPU per chain from /proc. Medians; the load average beside them.
For a server-side profile run ``py-spy record -p <runtime pid> -f raw`` while this runs.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if "--worker" in sys.argv:
    sys.path.append(str(ROOT))  # its revision's `lab` (PYTHONPATH) comes first
else:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import httpx2  # noqa: E402

from bench import chain  # noqa: E402
from bench.load import loadavg  # noqa: E402
from bench.run import Lab, checkout  # noqa: E402
from lab.config import LEARNER_USERNAME, Settings  # noqa: E402
from lab.mcpserver import HOPS_META_KEY  # noqa: E402

Samples = dict[str, list[float]]
#: ``--ab``/``--against``: chains of one variant in a row before the next one's.
BLOCK = 10


def time_requests(samples: Samples) -> None:
    """Record every HTTP request's duration (sync agent client and async MCP client) by path."""
    sync_send = httpx.Client.send
    async_send = httpx2.AsyncClient.send

    def send(self: httpx.Client, request: httpx.Request, **kw: Any) -> httpx.Response:
        start = time.perf_counter()
        try:
            return sync_send(self, request, **kw)
        finally:
            samples[f"  {request.method} {request.url.path}"].append(time.perf_counter() - start)

    async def asend(self: httpx2.AsyncClient, request: Any, **kw: Any) -> Any:
        start = time.perf_counter()
        try:
            return await async_send(self, request, **kw)
        finally:
            samples[f"  {request.method} {request.url.path}"].append(time.perf_counter() - start)

    httpx.Client.send = send  # type: ignore[method-assign]
    httpx2.AsyncClient.send = asend  # type: ignore[method-assign]


class GcClock:
    """CPU spent in the cyclic garbage collector's passes, whichever thread runs them."""

    def __init__(self) -> None:
        self.spent = 0.0
        self._started: dict[int, float] = {}
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        thread = threading.get_ident()
        if phase == "start":
            self._started[thread] = time.thread_time()
        elif thread in self._started:
            self.spent += time.thread_time() - self._started.pop(thread)


GC = GcClock()


def chain_by_link(settings: Settings, samples: Samples | None, variant: str = "") -> None:
    from lab.agent import Agent

    with Agent(settings.endpoints, settings) as agent:
        marks = [time.perf_counter()]
        cpus = [time.process_time()]
        gc_before = GC.spent
        signed_in = agent.sign_in(LEARNER_USERNAME, "password", method="code")
        marks.append(time.perf_counter())
        cpus.append(time.process_time())
        assert signed_in.id_token is not None, signed_in.error
        id_jag = agent.request_id_jag(
            signed_in.id_token, chain.SCOPE, resource=settings.endpoints.mcp
        )
        marks.append(time.perf_counter())
        cpus.append(time.process_time())
        assert id_jag.token is not None, id_jag.error
        access = agent.redeem_id_jag(id_jag.token)
        marks.append(time.perf_counter())
        cpus.append(time.process_time())
        assert access.token is not None, access.error
        result = agent.call_tool(access.token, "list_docs", {})
        marks.append(time.perf_counter())
        cpus.append(time.process_time())
        assert not result.is_error, result.text
        if samples is None:
            return
        names = ("sign-in (3 round trips)", "ID-JAG", "jwt-bearer", "tool call")
        for name, start, end in zip(names, marks, marks[1:], strict=False):
            samples[name + variant].append(end - start)
        samples["chain" + variant].append(marks[-1] - marks[0])
        for name, start, end in zip(names, cpus, cpus[1:], strict=False):
            samples[f"agent process CPU, {name}{variant}"].append(end - start)
        samples["agent process CPU, chain" + variant].append(cpus[-1] - cpus[0])
        samples["  of which garbage collector passes" + variant].append(GC.spent - gc_before)
        mcp = [e for e in agent.recorder.exchanges if e.url.endswith("/mcp")][-1]
        for hop in mcp.response_json()["result"]["_meta"][HOPS_META_KEY]:
            path = hop["url"].split("/", 3)[-1]
            samples[f"  MCP server's call to /{path}{variant}"].append(hop["elapsed_ms"] / 1000)


class Worker:
    """Chains run by another process: this script with ``--worker``, ``code``'s ``lab`` first on
    its path (its agent, its recorder), against the lab whose settings ``env`` holds."""

    def __init__(self, code: Path, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker"],
            env={**env, "PYTHONPATH": str(code)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def chain(self, record: bool) -> Samples:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write("record\n" if record else "warm\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the worker ended")
        return dict(json.loads(line))

    def stop(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(30)


def worker() -> int:
    """``--worker``: one chain per line read (``record`` or ``warm``), its samples as one JSON
    line; the settings from the environment (the coordinator's lab)."""
    settings = Settings.from_env(dict(os.environ))
    import lab

    print(f"worker {os.getpid()}: lab from {Path(lab.__file__).parent}", file=sys.stderr)
    requests: Samples = defaultdict(list)
    time_requests(requests)
    for line in sys.stdin:
        samples: Samples = defaultdict(list)
        requests.clear()
        chain_by_link(settings, samples if line.strip() == "record" else None)
        for path, values in requests.items():
            samples[path].extend(values)
        # As in the in-process loop (after every floor): a chain's garbage, and the start-up's
        # first full pass, are collected between chains, not in the next chain's figures; and
        # before answering, not while the coordinator runs the floor right after.
        gc.collect()
        print(json.dumps(samples), flush=True)
    return 0


def runtime_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument(
        "--ab", action="store_true", help="also chains whose agents keep no connections"
    )
    parser.add_argument("--against", metavar="REV", help="alternate with a lab on this revision")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker()
    if args.ab and args.against:
        parser.error("--ab compares this checkout's agent with itself: not with --against")
    # Here, not at the top: a --worker has the revision's own `bench` first on its path, which
    # may predate the two baselines.
    from bench.load import BASELINE_LABELS, bare_servers
    from lab.agent import connections
    from lab.agent.mcp_sessions import SESSIONS

    def keep_connections(keep: bool) -> None:
        SESSIONS.keep = connections.KEEP = keep

    sessions = {" [kept]": True, " [per agent]": False} if args.ab else {"": True}
    samples: Samples = defaultdict(list)
    with tempfile.TemporaryDirectory(prefix="lab-bench-hops-") as tmp:
        labs = {"": Lab(Path(tmp) / "home")}
        codes = {"": ROOT}
        if args.against:
            code = checkout(args.against, Path(tmp) / "against")
            labs[f" [{args.against}]"] = Lab(Path(tmp) / "against-home", code=code)
            codes[f" [{args.against}]"] = code
        #: With --against, each revision's own agent in a process of its own.
        workers: dict[str, Worker] = {}
        variants = {
            lab_name + session_name: (lab, keep)
            for lab_name, lab in labs.items()
            for session_name, keep in sessions.items()
        }
        bares: dict[str, Any] = {}
        try:
            for lab in labs.values():
                lab.run("up")
                chain.setup_chain_state(lab.settings)
            if args.against:
                workers = {name: Worker(codes[name], labs[name].env) for name in labs}
            bares = bare_servers()
            floors = {
                f"floor on the {BASELINE_LABELS[name]}": chain.Floor(bare.url)
                for name, bare in bares.items()
            }
            for warm in range(5):
                for variant, (lab, keep) in variants.items():
                    if workers:
                        workers[_lab_name(variant, labs)].chain(record=False)
                        continue
                    keep_connections(keep)
                    chain_by_link(lab.settings, None)
                for floor in chain.floors_in_turn(floors, warm).values():
                    floor.once()
            # Each request's time goes under its chain's variant (a floor's under its name).
            requests: Samples = defaultdict(list)
            time_requests(requests)
            pids = {name: lab.backend_pid() for name, lab in labs.items()}
            load_before = loadavg()
            server_cpu = dict.fromkeys(variants, 0.0)
            # Variants alternate in blocks: the cyclic garbage collector's passes land on the
            # chain that crosses its threshold, which chain-by-chain alternation biases.
            for block in range(0, args.runs, BLOCK):
                for variant, (lab, keep) in variants.items():
                    keep_connections(keep)
                    pid = pids[next(name for name, each in labs.items() if each is lab)]
                    for _ in range(min(BLOCK, args.runs - block)):
                        before = runtime_cpu_s(pid)
                        if workers:
                            done = workers[_lab_name(variant, labs)].chain(record=True)
                            for name, values in done.items():
                                samples[name + variant].extend(values)
                        else:
                            chain_by_link(lab.settings, samples, variant)
                        server_cpu[variant] += runtime_cpu_s(pid) - before
                        for path, values in requests.items():
                            samples[path + variant].extend(values)
                        requests.clear()
                        # The floors after every chain, whatever its variant: what runs just
                        # before a chain (the floor's server finishing its work, the collector)
                        # must be the same for all, or the first variant pays for it.
                        # In turns: each floor goes first after as many chains as the other.
                        turn = len(samples[next(iter(floors))])
                        for floor_name, floor in chain.floors_in_turn(floors, turn).items():
                            samples[floor_name].append(floor.once())
                            for path, values in requests.items():
                                samples[f"{path} ({floor_name})"].extend(values)
                            requests.clear()
                        # The floor builds an httpx client (a TLS context, its CA bundle) per
                        # run: its garbage is collected here, not in the next chain.
                        gc.collect()
        finally:
            for each in workers.values():
                each.stop()
            for bare in bares.values():
                bare.stop()
            for lab in labs.values():
                lab.down()
    print(f"{args.runs} chains, load {load_before} -> {loadavg()}")
    for name, values in sorted(samples.items(), key=_by_variant(variants)):
        per_chain = len(values) / args.runs
        count = f" x{per_chain:.0f}" if per_chain != 1 else ""
        median, mean = statistics.median(values) * 1000, statistics.mean(values) * 1000
        print(f"{name:62s} p50 {median:7.2f} ms  mean {mean:7.2f} ms{count}")
    for variant, cpu in server_cpu.items():
        name = "runtime CPU per chain (/proc)" + variant
        print(f"{name:62s} mean {cpu / args.runs * 1000:6.2f} ms")
    for line in floor_ratios(samples, list(variants), list(floors)):
        print(line)
    return 0


def floor_ratios(samples: Samples, variants: list[str], floors: list[str]) -> list[str]:
    """Each variant's chain p50 over each floor's p50, and the verdict (target <= 1.5) against
    the stricter, lower, floor."""
    p50 = {name: statistics.median(samples[name]) for name in floors if samples.get(name)}
    if not p50:
        return []
    stricter = min(p50, key=lambda name: p50[name])
    lines = []
    for variant in variants:
        chains = samples.get("chain" + variant)
        if not chains:
            continue
        chain_p50 = statistics.median(chains)
        for name, floor_p50 in p50.items():
            label = f"chain{variant} p50 / {name}"
            lines.append(f"{label:62s} {chain_p50 / floor_p50:5.2f}x")
        ratio = chain_p50 / p50[stricter]
        verdict = "met" if ratio <= 1.5 else "NOT met"
        label = f"chain{variant} p50 / stricter floor (target <= 1.5)"
        lines.append(f"{label:62s} {ratio:5.2f}x  {verdict} ({stricter})")
    return lines


def _lab_name(variant: str, labs: dict[str, Any]) -> str:
    """The lab (and revision) a variant's name starts with."""
    return max((name for name in labs if variant.startswith(name)), key=len)


def _by_variant(variants: dict[str, Any]) -> Any:
    """Rows grouped by variant, in the order the variants ran (the floor's rows first)."""
    order = list(variants)

    def key(item: tuple[str, list[float]]) -> int:
        name = item[0]
        matches = [i for i, variant in enumerate(order) if variant and name.endswith(variant)]
        return matches[-1] + 1 if matches else 0

    return key


if __name__ == "__main__":
    raise SystemExit(main())
