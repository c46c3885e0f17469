"""``make bench-scale``: how the lab's decisions grow with policy size, audit size and time.

    .venv/bin/python bench/scale.py [--sizes 10 1000 10000 100000] [--audit 1000000]
                                    [--chains 1000 10000] [--skip policy audit rss]

- **policy**: domain ``api`` gets N extra roles (one member each) and one policy with N
  assertions, written through the PDP's own store while the lab is down; then, as the lab
  serves: the PDP's access decision (in process), ID-JAG issuance, the first ID-JAG after a
  membership write, signed policy data (200 after the write, then 304s), and the document API's
  decision (a ``GET /api/docs``, first after the write, then warm). Each N beside N = 10.
- **audit**: ``lab audit --verify`` as a process over a trail of M records; time and peak RSS.
- **rss**: the runtime's resident set after K1 and K2 whole chains (no creep: ≤ 1.1×).

Results go to ``bench/scale-results.json`` with the load average beside every figure.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bench.load import id_jag_forms, loadavg, sign_in  # noqa: E402
from bench.run import Lab, machine  # noqa: E402
from lab.config import ADMIN_PRINCIPAL, LEARNER_PRINCIPAL, Settings  # noqa: E402
from lab.oauth import tokens  # noqa: E402
from lab.oauth.admin import make_admin_assertion  # noqa: E402
from lab.oauth.jose import SigningKey, make_client_assertion  # noqa: E402


def scaled_state(base: dict[str, Any], n: int) -> dict[str, Any]:
    state = json.loads(json.dumps(base))
    api = next(d for d in state["domains"] if d["name"] == "api")
    api["roles"] = [
        *api.get("roles", []),
        *(
            {"name": f"api:role.scale-r{i}", "roleMembers": [{"memberName": f"human.scale-u{i}"}]}
            for i in range(n)
        ),
    ]
    api["policies"] = [
        *api.get("policies", []),
        {
            "name": "api:policy.scale",
            "assertions": [
                {
                    "role": f"api:role.scale-r{i}",
                    "resource": f"api:scale-{i}",
                    "action": "read",
                    "effect": "ALLOW",
                    "id": 10_000_000 + i,
                }
                for i in range(n)
            ],
        },
    ]
    return state


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


class Admin:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.key = SigningKey.load_or_create(settings.key_file(ADMIN_PRINCIPAL))
        self.http = httpx.Client(timeout=60, trust_env=False)

    def call(self, method: str, url: str, **kw: Any) -> httpx.Response:
        zms = self.settings.endpoints.zms
        headers = {
            "Authorization": "Bearer " + make_admin_assertion(ADMIN_PRINCIPAL, self.key, zms)
        }
        return self.http.request(method, url, headers=headers, **kw)

    def add_member(self, member: str) -> None:
        zms = self.settings.endpoints.zms
        url = f"{zms}/domain/api/role/docs-getter/member/{member}"
        self.call("PUT", url, json={"memberName": member}).raise_for_status()


def policy_scaling(lab: Lab, base: dict[str, Any], n: int) -> dict[str, Any]:
    from lab.pdp.core import Pdp
    from lab.pdp.store import Store

    settings = lab.settings
    lab.down()
    Store(settings.pdp_db).import_state(scaled_state(base, n))
    out: dict[str, Any] = {"n": n, "loadavg_before": loadavg()}
    pdp = Pdp.open(settings)
    out["check_access_first_ms"] = ms(
        timed(lambda: pdp.check_access(LEARNER_PRINCIPAL, "get", "api:docs"))
    )
    samples = [
        timed(lambda: pdp.check_access(LEARNER_PRINCIPAL, "get", "api:docs")) for _ in range(200)
    ]
    out["check_access_ms"] = round(statistics.median(samples) * 1000, 4)
    pdp = None  # noqa: F841 - drop it (and its SQLite connection) before the lab starts
    out["up_s"] = round(timed(lambda: lab.run("up")), 2)
    http = httpx.Client(timeout=60, trust_env=False)
    id_token = sign_in(settings)
    forms = id_jag_forms(settings, id_token, 80)
    zts_token = settings.endpoints.zts_token

    def issue(form: dict[str, str]) -> float:
        start = time.perf_counter()
        response = http.post(zts_token, data=form)
        elapsed = time.perf_counter() - start
        response.raise_for_status()
        return elapsed

    out["id_jag_first_ms"] = ms(issue(forms[0]))
    out["id_jag_p50_ms"] = ms(statistics.median(issue(f) for f in forms[1:50]))
    admin = Admin(settings)
    after_write = []
    for k in range(5):
        admin.add_member(f"human.scale-w{k}")
        after_write.append(issue(forms[50 + k]))
    out["id_jag_after_write_ms"] = ms(statistics.median(after_write))
    url = f"{settings.endpoints.zts}/domain/api/signed_policy_data"
    start = time.perf_counter()
    first = http.get(url)
    out["signed_policy_200_ms"] = ms(time.perf_counter() - start)
    out["signed_policy_bytes"] = len(first.content)
    etag = first.headers.get("etag", "")
    not_modified = []
    for _ in range(20):
        start = time.perf_counter()
        answer = http.get(url, headers={"If-None-Match": etag})
        not_modified.append(time.perf_counter() - start)
        assert answer.status_code == 304, answer.status_code
    out["signed_policy_304_ms"] = ms(statistics.median(not_modified))
    key = SigningKey.load_or_create(settings.key_file(LEARNER_PRINCIPAL))
    token = http.post(
        zts_token,
        data={
            "grant_type": tokens.GRANT_CLIENT_CREDENTIALS,
            "scope": "api:role.docs-getter",
            "client_assertion_type": tokens.CLIENT_ASSERTION_TYPE_JWT_BEARER,
            "client_assertion": make_client_assertion(
                LEARNER_PRINCIPAL, key, settings.endpoints.zts
            ),
        },
    ).json()["access_token"]
    docs = f"{settings.endpoints.docapi_protected}/api/docs"
    auth = {"Authorization": f"Bearer {token}"}
    admin.add_member("human.scale-docapi")
    time.sleep(settings.policy_refresh_s + 0.1)  # the document API's copy is now stale
    start = time.perf_counter()
    response = http.get(docs, headers=auth)
    out["docapi_first_after_write_ms"] = ms(time.perf_counter() - start)
    out["docapi_first_after_write_status"] = response.status_code  # 503: its refresh timed out
    warm = []
    statuses = []
    for _ in range(30):
        start = time.perf_counter()
        statuses.append(http.get(docs, headers=auth).status_code)
        warm.append(time.perf_counter() - start)
    out["docapi_decision_ms"] = ms(statistics.median(warm))
    out["docapi_decision_statuses"] = sorted(set(statuses))
    out["loadavg_after"] = loadavg()
    http.close()
    admin.http.close()
    return out


def audit_scaling(lab: Lab, count: int) -> dict[str, Any]:
    from bench.audit_fill import fill_audit

    lab.down()
    fill_start = time.perf_counter()
    last = fill_audit(lab.settings.pdp_db, count)
    fill_s = time.perf_counter() - fill_start
    lab.run("up")
    pid = lab.backend_pid()
    load = loadavg()
    # A wrapper process whose only child is `lab audit --verify`: its children's peak RSS is
    # that command's own.
    probe = (
        "import resource, subprocess, sys, time\n"
        "t = time.perf_counter()\n"
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "e = time.perf_counter() - t\n"
        "u = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
        "print(p.returncode, e, u.ru_maxrss, u.ru_utime + u.ru_stime)\n"
        "sys.stderr.write(p.stdout[-400:] + p.stderr[-400:])\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe, *lab.lab, "audit", "--verify"],
        env=lab.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    code, elapsed, rss, cpu = proc.stdout.split()
    from bench.chain import rss_kb

    return {
        "records": last,
        "fill_s": round(fill_s, 1),
        "verify_exit": int(code),
        "verify_s": round(float(elapsed), 2),
        # CPU seconds do not stretch with the machine's load the way wall-clock seconds do.
        "verify_cpu_s": round(float(cpu), 2),
        "verify_peak_rss_mb": round(int(rss) / 1024, 1),
        "runtime_peak_rss_mb": round(rss_kb(pid, "VmHWM") / 1024, 1),
        "tail": proc.stderr[-300:],
        "loadavg_before": load,
        "loadavg_after": loadavg(),
    }


def rss_creep(lab: Lab, first: int, second: int) -> dict[str, Any]:
    from concurrent.futures import ThreadPoolExecutor

    from bench.chain import rss_kb, run_chain_once, setup_chain_state

    lab.down()
    lab.run("up")
    setup_chain_state(lab.settings)
    pid = lab.backend_pid()
    out: dict[str, Any] = {"loadavg_before": loadavg()}
    done = 0
    failures = 0
    with ThreadPoolExecutor(4) as pool:
        for target in (first, second):
            results = list(
                pool.map(lambda _: _safe_chain(run_chain_once, lab.settings), range(target - done))
            )
            failures += results.count(False)
            done = target
            out[f"rss_after_{target}_mb"] = round(rss_kb(pid) / 1024, 1)
    out["ratio"] = round(out[f"rss_after_{second}_mb"] / out[f"rss_after_{first}_mb"], 3)
    out["failed_chains"] = failures
    out["loadavg_after"] = loadavg()
    return out


def _safe_chain(run: Any, settings: Settings) -> bool:
    try:
        run(settings)
    except Exception:  # noqa: BLE001 - counted
        return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[10, 1000, 10_000, 100_000])
    parser.add_argument("--audit", type=int, default=1_000_000)
    parser.add_argument("--chains", type=int, nargs=2, default=[1000, 10_000])
    parser.add_argument("--skip", nargs="*", default=[], choices=["policy", "audit", "rss"])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "scale-results.json")
    args = parser.parse_args()
    results: dict[str, Any] = {"machine": machine()}
    with tempfile.TemporaryDirectory(prefix="lab-bench-scale-") as tmp:
        lab = Lab(Path(tmp))
        try:
            lab.run("up")
            if "policy" not in args.skip:
                from bench.chain import setup_chain_state
                from lab.pdp.store import Store

                setup_chain_state(lab.settings)
                lab.down()
                base = Store(lab.settings.pdp_db).export_state()
                results["policy"] = []
                for n in args.sizes:
                    print(f"policy N={n} ...", file=sys.stderr)
                    results["policy"].append(policy_scaling(lab, base, n))
                    _save(args.out, results)
                lab.down()
                Store(lab.settings.pdp_db).import_state(base)
                lab.run("up")
            if "rss" not in args.skip:
                print(f"RSS after {args.chains} chains ...", file=sys.stderr)
                results["rss"] = rss_creep(lab, *args.chains)
                _save(args.out, results)
            if "audit" not in args.skip:
                print(f"audit --verify of {args.audit} records ...", file=sys.stderr)
                results["audit"] = audit_scaling(lab, args.audit)
        finally:
            lab.down()
    results["machine"]["loadavg_at_end"] = loadavg()
    results["machine"]["bench_peak_rss_mb"] = round(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
    )
    _save(args.out, results)
    print_table(results)
    print(f"\nwritten to {args.out}")
    return 0


def _save(path: Path, results: dict[str, Any]) -> None:
    path.write_text(json.dumps(results, indent=2) + "\n")


def print_table(results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    rows = results.get("policy") or []
    console = Console(width=160)
    if rows:
        base = rows[0]
        table = Table(title="policy scaling (ms; × = against the smallest N, target ≤ 2×)")
        fields = [
            "check_access_ms",
            "id_jag_p50_ms",
            "id_jag_after_write_ms",
            "signed_policy_200_ms",
            "signed_policy_304_ms",
            "docapi_decision_ms",
            "docapi_first_after_write_ms",
            "up_s",
        ]
        table.add_column("N")
        for name in fields:
            table.add_column(name.removesuffix("_ms"))
        table.add_column("load")
        for row in rows:
            cells = []
            for name in fields:
                ratio = row[name] / base[name] if base.get(name) else float("nan")
                cells.append(f"{row[name]} ({ratio:.1f}×)")
            table.add_row(str(row["n"]), *cells, "/".join(map(str, row["loadavg_before"])))
        console.print(table)
        print(
            "targets: decision, ID-JAG issuance, document API decision at the largest N within "
            "2× of the smallest; first token after a write (id_jag_after_write) ≤ 50 ms"
        )
    if "audit" in results:
        a = results["audit"]
        print(
            f"lab audit --verify of {a['records']} records: {a['verify_s']} s (target ≤ 10), "
            f"peak RSS {a['verify_peak_rss_mb']} MB (target ≤ 150), exit {a['verify_exit']}; "
            f"runtime peak {a['runtime_peak_rss_mb']} MB; load {a['loadavg_before']}"
        )
    if "rss" in results:
        r = results["rss"]
        print(f"runtime RSS: {r} (target ratio ≤ 1.1)")


if __name__ == "__main__":
    raise SystemExit(main())
