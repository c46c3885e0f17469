"""wrk's single-use bodies: enough for the run at the fastest rate seen, never reused, and any
refusal shown beside the figure so that a run with refusals cannot pass as a measurement.

Under wrk the body files were once sized from a slow warm-up: bodies were reused, their jtis
refused as replays (non-2xx), and the rate of the 2xx left over still read as a figure."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from bench.load import (
    RERUNS_OUT_OF_BODIES,
    bodies_needed,
    measured,
    run_wrk,
    summarise,
    until_enough_bodies,
)
from bench.run import figures


def _run(rps: float, *, non2xx: int = 0, exhausted: int = 0) -> dict[str, Any]:
    return {"rps": rps, "server_cpu_us_per_request": 500.0, "server_switches_per_request": 1.0,
            "p50_ms": 5.0, "p99_ms": 20.0, "non2xx": non2xx, "exhausted": exhausted,
            "loadavg_before": [1.0, 1.0, 1.0]}  # fmt: skip


def _runs(**endpoints: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    return {"bare": [_run(1000)], "bare_on_loop": [_run(2000)], **endpoints}


def test_bodies_cover_the_run_at_the_fastest_rate_seen() -> None:
    assert bodies_needed(1200.0, 5) >= 1200 * 5
    assert bodies_needed(3000.0, 5) > bodies_needed(1200.0, 5)
    assert bodies_needed(0.0, 5) >= 200  # a run that measured nothing still gets bodies


def test_a_run_that_runs_out_is_made_again_with_twice_the_bodies() -> None:
    """The warm-up is slower than the runs after it: a run that outruns its bodies is shown,
    then made again with bodies for twice the rate, until one has enough."""
    asked: list[int] = []
    true_rate, duration_s = 1400.0, 3

    def run(count: int) -> dict[str, Any]:
        asked.append(count)
        enough = count >= true_rate * duration_s
        return _run(true_rate if enough else count / duration_s, exhausted=0 if enough else 5)

    made, fastest = until_enough_bodies(run, 500.0, duration_s)
    assert [r["exhausted"] > 0 for r in made] == [True, False]
    assert asked[0] == bodies_needed(500.0, duration_s)
    assert asked[1] >= bodies_needed(1000.0, duration_s)  # at least twice the rate sized for
    assert fastest >= true_rate  # the next file is sized for at least that
    # It gives up after RERUNS_OUT_OF_BODIES more runs: each shown, none counted.
    never = until_enough_bodies(lambda count: _run(10.0, exhausted=1), 10.0, 1)[0]
    assert len(never) == 1 + RERUNS_OUT_OF_BODIES and not any(measured(r) for r in never)


def test_a_run_with_refusals_or_out_of_bodies_is_no_measurement() -> None:
    assert measured(_run(500))
    assert not measured(_run(500, non2xx=1))
    assert not measured(_run(500, exhausted=3))


def test_medians_leave_out_runs_with_refusals_and_count_them() -> None:
    runs = _runs(
        id_jag=[_run(500), _run(520), _run(9000, non2xx=4000)],
        jwt_bearer=[_run(440)],
        exchange=[_run(380), _run(7000, exhausted=2)],
    )
    summary = summarise(runs, connections=16)
    assert summary["id_jag"]["rps"] == 510  # the refused run's rate is not in the median
    assert summary["id_jag"]["non2xx"] == 4000
    assert (summary["id_jag"]["measured_runs"], summary["id_jag"]["total_runs"]) == (2, 3)
    assert summary["exchange"]["rps"] == 380 and summary["exchange"]["exhausted"] == 2
    assert summary["bare_non2xx"] == 0 and summary["bare_measured_runs"] == 1


def test_every_wrk_figure_shows_its_non_2xx_count() -> None:
    runs = _runs(
        id_jag=[_run(600), _run(600, non2xx=7)],
        jwt_bearer=[_run(600)],
        exchange=[_run(600)],
    )
    rows = figures({"wrk": summarise(runs, connections=16)})
    wrk_rows = [row for row in rows if row[0].startswith(("ID-JAG", "jwt-bearer", "MCP"))]
    assert wrk_rows and all("non-2xx" in name for name, *_ in wrk_rows)
    id_jag = [name for name, *_ in wrk_rows if name.startswith("ID-JAG issuance / thread-pool")]
    assert "non-2xx 7, 1 of 2 runs not counted" in id_jag[0]
    # Some runs measured: the figure keeps its verdict.
    assert all(op for name, _, op, *_ in wrk_rows if name.startswith("ID-JAG"))


def test_a_figure_with_no_measured_run_gets_no_verdict() -> None:
    runs = _runs(
        id_jag=[_run(900, non2xx=3000), _run(950, exhausted=1)],
        jwt_bearer=[_run(600)],
        exchange=[_run(600)],
    )
    rows = figures({"wrk": summarise(runs, connections=16)})
    id_jag = [(name, op) for name, _, op, *_ in rows if name.startswith("ID-JAG")]
    assert id_jag and all(op == "" and "NOT A MEASUREMENT" in name for name, op in id_jag)
    jwt_bearer = [op for name, _, op, *_ in rows if name.startswith("jwt-bearer")]
    assert jwt_bearer and all(jwt_bearer)


# ------------------------------------------------------------------ with wrk itself


@pytest.fixture
def wrk() -> str:
    found = shutil.which("wrk")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("wrk is not installed (bench/load.py ensure_wrk installs it)")
        pytest.skip("wrk is not installed")
    return found


class _SingleUse(BaseHTTPRequestHandler):
    """200 for a body never seen before, 400 for a replay (as a token endpoint answers)."""

    seen: set[bytes] = set()
    lock = threading.Lock()

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with self.lock:
            fresh = body not in self.seen
            self.seen.add(body)
        self.send_response(200 if fresh else 400)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def single_use_server() -> Iterator[str]:
    _SingleUse.seen = set()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SingleUse)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def _bodies(tmp_path: Path, count: int) -> Path:
    path = tmp_path / "run.bodies"
    path.write_text("".join(f"grant_type=bench&jti=j{index}\n" for index in range(count)))
    return path


def test_wrk_stops_when_its_bodies_run_out_and_never_reuses_one(
    wrk: str, single_use_server: str, tmp_path: Path
) -> None:
    run = run_wrk(single_use_server, _bodies(tmp_path, 40), 40, duration_s=1, connections=2)
    assert run["exhausted"] > 0  # far fewer bodies than a second's requests: cut short
    assert not measured(run)
    # Every body sent once at most: no replay refused (the bodiless requests are refused).
    assert len(_SingleUse.seen) <= 41 and run["non2xx"] <= run["exhausted"]


def test_enough_bodies_make_a_clean_run(wrk: str, single_use_server: str, tmp_path: Path) -> None:
    count = 100_000  # far more than one second against http.server can use
    run = run_wrk(single_use_server, _bodies(tmp_path, count), count, duration_s=1, connections=2)
    assert run["requests"] > 0 and measured(run), run
