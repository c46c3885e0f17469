"""The async token endpoint under races: replayed jtis in parallel, more requests than worker
threads, clients that hang up mid-request — never a 5xx, never two tokens for one jti, every
issued token on the audit record, and the endpoint answers normally afterwards.

The PDP's token path runs the grant on a few worker threads and awaits the audit commit on the
event loop (lab/pdp/zts/dispatcher.py); single-use jtis are inserted with the allow record, so
the race between two redemptions of one assertion is decided by that insert alone.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from lab.agent.chain import Agent
from lab.config import ADMIN_PRINCIPAL, AGENT_PRINCIPAL, LEARNER_PRINCIPAL
from lab.oauth.admin import make_admin_assertion
from lab.oauth.jose import SigningKey, make_client_assertion, unverified_claims
from lab.oauth.tokens import (
    CLIENT_ASSERTION_TYPE_JWT_BEARER,
    GRANT_CLIENT_CREDENTIALS,
    GRANT_JWT_BEARER,
)
from lab.pdp.store import Store
from lab.pdp.zts.dispatcher import WORKER_THREADS
from tests.agent.labsetup import RunningLab
from tests.security.fullstack import full_lab

PARALLEL = WORKER_THREADS * 8


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    with full_lab(tmp_path_factory.mktemp("races") / "home") as running:
        yield running


def fresh_id_jag(lab: RunningLab) -> str:
    with Agent(lab.endpoints, lab.settings) as agent:
        signed_in = agent.sign_in("idjag-learner", "password", method="password")
        assert signed_in.id_token, signed_in
        id_jag = agent.request_id_jag(signed_in.id_token)
        assert id_jag.token, id_jag.message
        return id_jag.token


def client_assertion(lab: RunningLab, principal: str) -> str:
    key = SigningKey.load_or_create(lab.settings.key_file(principal))
    return make_client_assertion(principal, key, lab.endpoints.zts)


def admin_headers(lab: RunningLab) -> dict[str, str]:
    key = SigningKey.load_or_create(lab.settings.key_file(ADMIN_PRINCIPAL))
    token = make_admin_assertion(ADMIN_PRINCIPAL, key, lab.endpoints.zms)
    return {"Authorization": f"Bearer {token}"}


def redemption_form(lab: RunningLab, id_jag: str) -> dict[str, str]:
    return {
        "grant_type": GRANT_JWT_BEARER,
        "assertion": id_jag,
        "client_assertion_type": CLIENT_ASSERTION_TYPE_JWT_BEARER,
        "client_assertion": client_assertion(lab, AGENT_PRINCIPAL),
    }


def last_seq(lab: RunningLab) -> int:
    body = lab.admin.zms("GET", "/lab/audit?last=1").json()
    return int(body["last_seq"])


def records_since(lab: RunningLab, seq: int) -> list[dict[str, Any]]:
    body = lab.admin.zms("GET", f"/lab/audit?since={seq}&limit=1000").json()
    return list(body["records"])


def post_all(lab: RunningLab, forms: list[dict[str, str]]) -> list[httpx.Response]:
    with httpx.Client(timeout=30) as http, ThreadPoolExecutor(len(forms)) as pool:
        return list(pool.map(lambda form: http.post(lab.endpoints.zts_token, data=form), forms))


def allowed_for(records: list[dict[str, Any]], jti: str) -> list[dict[str, Any]]:
    """The allow records of redemptions of the ID-JAG ``jti`` (named in the record's reason)."""
    return [
        r
        for r in records
        if r["decision"] == "allow" and r["action"] == "token:jwt-bearer" and jti in r["reason"]
    ]


def test_parallel_redemptions_of_one_id_jag_issue_exactly_one_token(lab: RunningLab) -> None:
    id_jag = fresh_id_jag(lab)
    jti = unverified_claims(id_jag)["jti"]
    before = last_seq(lab)
    answers = post_all(lab, [redemption_form(lab, id_jag) for _ in range(PARALLEL)])
    assert all(a.status_code < 500 for a in answers), [
        a.text for a in answers if a.status_code >= 500
    ]
    granted = [a for a in answers if a.status_code == 200]
    refused = [a for a in answers if a.status_code != 200]
    assert len(granted) == 1, [a.text for a in answers]
    assert {(a.status_code, a.json()["error"]) for a in refused} == {(400, "invalid_grant")}
    issued = granted[0].json()["access_token"]
    [allow] = allowed_for(records_since(lab, before), jti)
    assert allow["jti"] == unverified_claims(issued)["jti"]  # the token handed out is on record


def test_parallel_replays_of_one_client_assertion_authenticate_once(lab: RunningLab) -> None:
    assertion = client_assertion(lab, LEARNER_PRINCIPAL)
    form = {
        "grant_type": GRANT_CLIENT_CREDENTIALS,
        "scope": "api:role.docs-getter",
        "client_assertion_type": CLIENT_ASSERTION_TYPE_JWT_BEARER,
        "client_assertion": assertion,
    }
    answers = post_all(lab, [form] * PARALLEL)
    assert all(a.status_code < 500 for a in answers), [
        a.text for a in answers if a.status_code >= 500
    ]
    assert [a.status_code for a in answers].count(200) == 1, [a.text for a in answers]
    refused = {(a.status_code, a.json()["error"]) for a in answers if a.status_code != 200}
    assert refused == {(401, "invalid_client")}


def test_clients_hanging_up_mid_request_leave_no_double_redemption_and_no_wedge(
    lab: RunningLab,
) -> None:
    id_jag = fresh_id_jag(lab)
    jti = unverified_claims(id_jag)["jti"]
    before = last_seq(lab)
    # Each client gives up after a few milliseconds: most hang up while the grant or the
    # commit is under way on the server.
    hasty = httpx.Timeout(0.005)
    with ThreadPoolExecutor(PARALLEL) as pool:

        def hang_up(form: dict[str, str]) -> int | None:
            try:
                return httpx.post(lab.endpoints.zts_token, data=form, timeout=hasty).status_code
            except httpx.TimeoutException:
                return None

        statuses = list(pool.map(hang_up, [redemption_form(lab, id_jag) for _ in range(PARALLEL)]))
    assert all(s is None or s < 500 for s in statuses), statuses
    time.sleep(0.5)  # let the server finish what the clients abandoned
    started = time.monotonic()
    again = httpx.post(lab.endpoints.zts_token, data=redemption_form(lab, id_jag), timeout=10)
    assert time.monotonic() - started < 2.0
    records = records_since(lab, before)
    allows = allowed_for(records, jti)
    assert len(allows) <= 1, allows
    if allows:  # an abandoned request won the jti: the late one is a replay
        assert again.status_code == 400 and again.json()["error"] == "invalid_grant", again.text
    else:
        assert again.status_code == 200, again.text
    # The endpoint still works for a new chain.
    fresh = httpx.post(lab.endpoints.zts_token, data=redemption_form(lab, fresh_id_jag(lab)))
    assert fresh.status_code == 200, fresh.text


def test_more_requests_than_workers_while_the_audit_commit_is_held(
    lab: RunningLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The commit is held (a slow disk) while 8x the worker threads' requests arrive: each
    waits on the event loop, none fails, the replayed assertion wins once, and the PDP's other
    routes answer meanwhile (the waits hold no worker thread)."""
    gate = threading.Event()
    original = Store._commit_audit_batch

    def held(self: Store, batch: list[Any]) -> None:
        gate.wait(timeout=20)
        original(self, batch)

    monkeypatch.setattr(Store, "_commit_audit_batch", held)
    replayed = client_assertion(lab, LEARNER_PRINCIPAL)
    forms = [
        {
            "grant_type": GRANT_CLIENT_CREDENTIALS,
            "scope": "api:role.docs-getter",
            "client_assertion_type": CLIENT_ASSERTION_TYPE_JWT_BEARER,
            "client_assertion": replayed
            if i % 4 == 0
            else client_assertion(lab, LEARNER_PRINCIPAL),
        }
        for i in range(PARALLEL)
    ]
    with httpx.Client(timeout=30) as http, ThreadPoolExecutor(len(forms)) as pool:
        pending = [pool.submit(http.post, lab.endpoints.zts_token, data=form) for form in forms]
        time.sleep(0.5)
        assert not any(p.done() for p in pending)  # all waiting for the held commit
        started = time.monotonic()
        keys = http.get(lab.endpoints.zts_jwks)
        health = http.get(f"{lab.endpoints.zms}/domain", headers=admin_headers(lab))
        assert keys.status_code == 200 and health.status_code == 200, health.text
        assert time.monotonic() - started < 2.0
        gate.set()
        answers = [p.result() for p in pending]
    assert all(a.status_code < 500 for a in answers), [a.text for a in answers]
    fresh = [a for i, a in enumerate(answers) if i % 4 != 0]
    assert all(a.status_code == 200 for a in fresh), [a.text for a in fresh]
    replays = [a for i, a in enumerate(answers) if i % 4 == 0]
    assert [a.status_code for a in replays].count(200) == 1, [a.text for a in replays]
    assert {a.json()["error"] for a in replays if a.status_code != 200} == {"invalid_client"}
