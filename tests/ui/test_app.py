"""The `lab ui` app: read-only by default, the launch token for changes, no foreign pages."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from lab.cli import error_marker
from lab.config import Settings
from lab.serving import bind_socket, serve_in_thread
from lab.state import load_run_model, record_result, save_run_model
from lab.ui.app import create_app

TOKEN = "launch-token-for-tests"
LOCAL = "http://127.0.0.1"

RECORD = {
    "number": 12,
    "slug": "id-jag-end-to-end",
    "status": "passed",
    "sequence": [
        {
            "from": "agent",
            "to": "PDP",
            "call": "token exchange → ID-JAG",
            "status": 200,
            "action": 0,
            "index": 0,
            "refusal": None,
        },
    ],
    "actions": [],
}


#: What `lab audit --verify --json` prints (its shape; the records are the PDP's).
AUDIT = {
    "records": [{"seq": 7, "decision": "deny", "client": "ai.agent", "correlation_id": "c1"}],
    "count": 1,
    "valid": True,
    "problems": [],
}


class FakeLab:
    """Stands in for `lab step N --json` / `lab reset`: records the command lines it got."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    def __call__(self, *args: str) -> tuple[int, str, str]:
        self.calls.append(args)
        if args[0] == "step":
            return 0, json.dumps({**RECORD, "number": int(args[1])}), ""
        if args[0] == "audit":
            return 0, json.dumps(AUDIT), ""
        if args[0] == "run":
            return 1, "", "Step 3 did not pass."
        return 0, '{"reset": true}', ""


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home")


@pytest.fixture
def fake_lab() -> FakeLab:
    return FakeLab()


@pytest.fixture
def client(settings: Settings, fake_lab: FakeLab) -> TestClient:
    return TestClient(create_app(settings, TOKEN, fake_lab), base_url=LOCAL)


def test_page_and_assets_are_served_from_the_package_with_a_strict_policy(
    client: TestClient,
) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["x-frame-options"] == "DENY"
    links = re.findall(r'(?:src|href)="([^"]*)"', page.text)
    assert "/static/app.js" in links
    assert all(link.startswith(("/", "#")) for link in links)  # nothing from another host
    for asset in ("/static/app.js", "/static/app.css"):
        assert client.get(asset).status_code == 200


def test_steps_are_listed_with_their_last_status(client: TestClient, settings: Settings) -> None:
    record_result(settings, 1, "document-api", "passed", 12.0)
    rows = client.get("/api/steps").json()["steps"]
    numbers = [row["number"] for row in rows]
    assert numbers == sorted(numbers) and 12 in numbers and 6 in numbers
    by_number = {row["number"]: row for row in rows}
    assert by_number[1]["status"] == "passed"
    assert by_number[2]["status"] == "not run"
    assert by_number[12]["title"] == "The whole chain, end to end"


def test_a_saved_run_model_is_served_and_a_missing_one_is_404(
    client: TestClient, settings: Settings
) -> None:
    missing = client.get("/api/runs/12")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    save_run_model(settings, 12, RECORD)
    assert client.get("/api/runs/12").json()["sequence"][0]["call"] == "token exchange → ID-JAG"
    assert (settings.home / "runs" / "step-12.json").stat().st_mode & 0o777 == 0o600


def test_running_a_step_without_the_launch_token_is_refused(
    client: TestClient, fake_lab: FakeLab
) -> None:
    for headers in ({}, {"X-Lab-UI-Token": "guessed"}):
        response = client.post("/api/steps/12/run", headers=headers)
        assert response.status_code == 403
        assert response.json()["error"] == "forbidden"
    refused = client.post("/api/reset", json={"to": 12})
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
    assert fake_lab.calls == []


def test_running_a_step_with_the_token_runs_lab_step_json(
    client: TestClient, fake_lab: FakeLab
) -> None:
    response = client.post("/api/steps/12/run", headers={"X-Lab-UI-Token": TOKEN})
    assert response.status_code == 200
    assert response.json()["run"]["number"] == 12
    assert fake_lab.calls == [("step", "12", "--json")]
    reset = client.post("/api/reset", json={"to": 12}, headers={"X-Lab-UI-Token": TOKEN})
    assert reset.status_code == 200
    assert fake_lab.calls[-1] == ("reset", "--json", "--to", "12")


def test_a_bad_reset_target_or_unknown_step_is_a_precise_error(client: TestClient) -> None:
    headers = {"X-Lab-UI-Token": TOKEN}
    bad = client.post("/api/reset", json={"to": "twelve"}, headers=headers)
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_request"
    unknown = client.post("/api/steps/99/run", headers=headers)
    assert unknown.status_code == 404 and unknown.json()["error"] == "not_found"


def test_requests_from_a_foreign_origin_are_refused_even_with_the_token(
    client: TestClient, fake_lab: FakeLab
) -> None:
    headers = {"X-Lab-UI-Token": TOKEN, "Origin": "https://evil.example"}
    response = client.post("/api/steps/12/run", headers=headers)
    assert response.status_code == 403 and response.json()["error"] == "forbidden"
    assert client.get("/api/steps", headers={"Origin": "null"}).status_code == 403
    cross = client.get("/api/steps", headers={"Sec-Fetch-Site": "cross-site"})
    assert cross.status_code == 403
    assert fake_lab.calls == []
    local = client.get("/api/steps", headers={"Origin": "http://127.0.0.1:8700"})
    assert local.status_code == 200


def test_a_foreign_host_header_is_refused(settings: Settings, fake_lab: FakeLab) -> None:
    rebound = TestClient(create_app(settings, TOKEN, fake_lab), base_url="http://evil.example")
    response = rebound.get("/api/steps")
    assert response.status_code == 421 and response.json()["error"] == "invalid_request"


def test_the_event_stream_announces_a_saved_result(settings: Settings, fake_lab: FakeLab) -> None:
    app = create_app(settings, TOKEN, fake_lab)
    with (
        serve_in_thread(app, bind_socket("127.0.0.1", 0)) as url,
        httpx.stream("GET", f"{url}/api/events", timeout=10) as stream,
    ):
        events = event_lines(stream)
        assert next(events).startswith("event: changed")  # at once: the page loads
        record_result(settings, 3, "service-identity", "failed", 5.0)
        data: dict[str, Any] = {}
        for line in events:
            if line.startswith("data: "):
                data = json.loads(line.removeprefix("data: "))
                if data["steps"].get("3") == "failed":
                    break
        assert data["steps"]["3"] == "failed"


def event_lines(stream: httpx.Response) -> Any:
    for line in stream.iter_lines():
        if line:
            yield line


def test_lab_ui_names_the_setting_when_its_port_is_busy(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "lab.cli", "ui"],
            env={"PATH": "/usr/bin:/bin", "LAB_HOME": str(tmp_path), "LAB_UI_PORT": str(port)},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 3
    assert f"port {port}" in done.stderr and "LAB_UI_PORT" in done.stderr


def test_the_engine_keeps_each_steps_run_model(settings: Settings) -> None:
    from lab.cli.engine import keep_run_model
    from lab.steps.model import StepResult

    result = StepResult(4, "role-membership", "Role membership", "passed", 3.0)
    keep_run_model(settings, result)
    kept = load_run_model(settings, result.number)
    assert kept is not None and kept["number"] == result.number and kept["slug"] == result.slug


def test_the_audit_view_is_lab_audit_verify_json(client: TestClient, fake_lab: FakeLab) -> None:
    answer = client.get("/api/audit")
    assert answer.status_code == 200
    assert fake_lab.calls == [("audit", "--verify", "--json")]  # the CLI's own verification
    data = answer.json()
    assert data["valid"] is True and data["records"][0]["seq"] == 7


def test_an_audit_that_prints_no_json_is_a_precise_502(settings: Settings) -> None:
    def broken(*args: str) -> tuple[int, str, str]:
        return 4, "", "the PDP did not answer (ConnectError)\n"

    answer = TestClient(create_app(settings, TOKEN, broken), base_url=LOCAL).get("/api/audit")
    assert answer.status_code == 502
    assert answer.json() == {
        "error": "audit_unavailable",
        "error_description": "the PDP did not answer (ConnectError)",
    }


def test_running_the_whole_lab_needs_the_token_and_runs_lab_run(
    client: TestClient, fake_lab: FakeLab, settings: Settings
) -> None:
    refused = client.post("/api/run-all")
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
    assert fake_lab.calls == []
    record_result(settings, 1, "document-api", "passed", 3.0)
    answer = client.post("/api/run-all", headers={"X-Lab-UI-Token": TOKEN})
    assert fake_lab.calls == [("run",)]
    data = answer.json()
    assert data["exit_code"] == 1 and data["message"] == "Step 3 did not pass."
    assert {"number": 1, "status": "passed"} in data["steps"]


def test_a_served_run_has_each_tokens_signature_checked_against_its_issuers_jwks(
    settings: Settings, fake_lab: FakeLab
) -> None:
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from lab.oauth.jose import SigningKey, generate_private_key, jwks, token_fingerprint

    pdp_key = SigningKey(generate_private_key(), "k1")
    forger = SigningKey(generate_private_key(), "k1")  # same kid, another key
    keys = jwks([(pdp_key.key, "k1")])
    jwks_app = Starlette(routes=[Route("/zts/v1/oauth2/keys", lambda r: JSONResponse(keys))])
    with serve_in_thread(jwks_app, bind_socket("127.0.0.1", 0)) as url:
        endpoints = dataclasses.replace(settings.endpoints, zts=f"{url}/zts/v1")
        claims = {"iss": f"{url}/zts/v1", "sub": "human.idjag-learner", "exp": 1, "iat": 0}
        good = pdp_key.sign(claims, typ="at+jwt")
        forged = forger.sign(claims, typ="at+jwt")
        stranger = pdp_key.sign({**claims, "iss": "https://elsewhere.example"}, typ="at+jwt")
        tokens = [("good", good), ("forged", forged), ("stranger", stranger)]
        record = {
            **RECORD,
            "actions": [
                {
                    "id": "a",
                    "tokens": [
                        {"label": n, "fingerprint": token_fingerprint(t)} for n, t in tokens
                    ],
                }
            ],
            "tokens": [{"action": "a", "label": n, "token": t} for n, t in tokens],
        }
        save_run_model(settings, 12, record)
        app = create_app(settings, TOKEN, fake_lab, endpoints=lambda: endpoints)
        served = TestClient(app, base_url=LOCAL).get("/api/runs/12").json()
    verdicts = {t["label"]: t["signature"] for t in served["actions"][0]["tokens"]}
    # Expired long ago, still its signature is checked: expiry is the page's countdown.
    assert verdicts["good"]["valid"] is True and verdicts["good"]["kid"] == "k1"
    assert verdicts["good"]["keys"] == "the PDP's JWKS"
    assert verdicts["forged"]["valid"] is False
    assert verdicts["forged"]["reason"] == "the signature does not match the key"
    assert verdicts["stranger"]["valid"] is False
    assert "is not a part of this lab" in verdicts["stranger"]["reason"]


def test_a_lab_command_running_in_a_terminal_makes_the_page_busy_not_hung(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The CLI waits up to 10 minutes for the lab lock; from the page that looked hung. The
    # page's commands wait briefly, and "busy" comes back as 409 naming the other command.
    import subprocess

    from lab.ui import app as ui_app

    seen: dict[str, str] = {}

    def fake_run(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        seen.update(kwargs["env"])  # type: ignore[arg-type]
        return subprocess.CompletedProcess(args, 0, "{}", "")

    monkeypatch.setattr(ui_app.subprocess, "run", fake_run)
    ui_app.LabCommands(env={"LAB_HOME": "x"})("step", "1", "--json")
    assert float(seen["LAB_LOCK_WAIT_S"]) <= 5

    held = "busy: another lab command (pid 7: lab run) still holds the lab after 3 s"
    fix = "wait for it to finish, or raise LAB_LOCK_WAIT_S"

    def busy_lab(*args: str) -> tuple[int, str, str]:
        marker = error_marker.marker_line(error_marker.BUSY, held, fix)
        return 3, "", f"error: {held}\nfix: {fix}\n{marker}\n"

    client = TestClient(create_app(settings, TOKEN, busy_lab), base_url=LOCAL)
    headers = {"X-Lab-UI-Token": TOKEN}
    for response in (
        client.post("/api/steps/1/run", headers=headers),
        client.post("/api/reset", json={"to": 3}, headers=headers),
        client.post("/api/run-all", headers=headers),
    ):
        assert response.status_code == 409, response.text
        assert response.json()["error"] == "busy"
        assert "pid 7: lab run" in response.json()["error_description"]


def test_concurrent_audit_requests_share_one_audit_run(settings: Settings) -> None:
    """Each `GET /api/audit` started its own `lab audit` process: a flood ran as many at once
    and the page's step runs waited behind them. Requests arriving while one runs share it."""
    calls: list[tuple[str, ...]] = []
    release = threading.Event()

    def slow_audit(*args: str) -> tuple[int, str, str]:
        calls.append(args)
        assert release.wait(60), "the test never let the audit finish"
        return 0, json.dumps(AUDIT), ""

    app = create_app(settings, TOKEN, slow_audit)

    async def requests() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=LOCAL, timeout=60) as client:
            pending = [asyncio.ensure_future(client.get("/api/audit")) for _ in range(10)]
            # Every request waits for the one run (a condition, bounded: never a fixed sleep);
            # the old way, a second run started at once.
            try:
                for _ in range(6000):
                    if app.state.audit_run.callers == len(pending) or len(calls) > 1:
                        break
                    await asyncio.sleep(0.01)
                assert len(calls) == 1, calls
                assert app.state.audit_run.callers == len(pending)
            finally:
                release.set()
            answers = list(await asyncio.gather(*pending))
            answers.append(await client.get("/api/audit"))  # after it ended: a fresh run
            return answers

    answers = asyncio.run(requests())
    assert [answer.status_code for answer in answers] == [200] * 11
    assert all(answer.json()["records"] == AUDIT["records"] for answer in answers)
    assert calls == [("audit", "--verify", "--json")] * 2
