"""What a request that is unauthenticated or refused can add to the audit trail is bounded in
rate and size, at every place that audits: the ZTS token endpoint and ZMS writes.

Issue #16 ("bound what unauthenticated requests can add"): only the token endpoint's
unauthenticated requests were bounded. A registered key that is no admin could still add one
record per refused ZMS write, and an authenticated client one per refused token request, without
limit. ZMS requests that fail authentication add no record at all.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from lab.oauth.tokens import GRANT_CLIENT_CREDENTIALS
from lab.pdp.audit import REFUSED_BURST, REFUSED_PER_S, UNAUTHENTICATED_BURST
from tests.pdp.conftest import AGENT, LEARNER, PdpLab

#: Records the bucket may refill while a flood is sent (5/s for a few seconds).
SLACK = 30


def records(lab: PdpLab) -> list[dict[str, Any]]:
    return list(lab.ok("GET", "/lab/audit").json()["records"])


def refused_token_request(lab: PdpLab, client: str) -> httpx.Response:
    # The agent holds no role in domain api's docs-getter: client_credentials is refused.
    return lab.token(
        {"grant_type": GRANT_CLIENT_CREDENTIALS, "scope": "api:role.docs-getter"}, client=client
    )


def test_refused_token_requests_of_one_client_add_a_bounded_number_of_records(
    world: PdpLab,
) -> None:
    before = len(records(world))
    for _ in range(REFUSED_BURST + 60):
        response = refused_token_request(world, AGENT)
        assert response.status_code in (400, 403), response.text
        assert response.json()["error"] in ("invalid_scope", "access_denied", "invalid_grant")
    added = [r for r in records(world)[before:] if r["client"] == AGENT]
    assert REFUSED_BURST <= len(added) <= REFUSED_BURST + SLACK
    assert all(r["decision"] == "deny" for r in added)


def test_one_clients_flood_neither_hides_another_clients_refusals_nor_any_allowed_token(
    world: PdpLab,
) -> None:
    for _ in range(REFUSED_BURST + 20):
        refused_token_request(world, AGENT)
    before = len(records(world))
    assert world.client_credentials(LEARNER, "api:role.docs-getter").status_code == 200
    other = world.client_credentials(LEARNER, "mcp:role.nope")
    assert other.status_code in (400, 403)
    added = records(world)[before:]
    assert [(r["client"], r["decision"]) for r in added] == [(LEARNER, "allow"), (LEARNER, "deny")]


def test_dropped_refusals_are_counted_in_the_next_record_admitted(world: PdpLab) -> None:
    for _ in range(REFUSED_BURST + 20):
        refused_token_request(world, AGENT)
    time.sleep(1.5 / REFUSED_PER_S)  # one token back in the bucket
    refused_token_request(world, AGENT)
    last = [r for r in records(world) if r["client"] == AGENT][-1]
    assert f"{AGENT}'s refused record(s) dropped before this one" in last["reason"]


def test_refused_zms_writes_of_a_non_admin_add_a_bounded_number_of_bounded_records(
    world: PdpLab,
) -> None:
    before = len(records(world))
    long_name = "r" * 5000
    for index in range(REFUSED_BURST + 60):
        # The agent's key is registered (it authenticates at ZMS) but it administers nothing.
        name = long_name if index % 2 else f"role{index}"
        response = world.zms_call(
            "PUT",
            f"/domain/api/role/{name}",
            {"name": f"api:role.{name}", "roleMembers": []},
            principal=AGENT,
        )
        assert response.status_code in (400, 403), response.text
    added = [r for r in records(world)[before:] if r["client"] == AGENT]
    assert REFUSED_BURST <= len(added) <= REFUSED_BURST + SLACK
    assert all(r["decision"] == "deny" and r["action"] == "zms:put" for r in added)
    assert all(len(json.dumps(r)) < 4000 for r in added)
    # The admin's writes are still recorded, every one.
    world.role("api", "after-the-flood", [LEARNER])
    last = records(world)[-1]
    assert (last["resource"], last["decision"]) == ("/domain/api/role/after-the-flood", "allow")


def test_zms_requests_that_fail_authentication_add_no_record(world: PdpLab) -> None:
    before = len(records(world))
    with httpx.Client(timeout=10) as http:
        for index in range(UNAUTHENTICATED_BURST + 10):
            headers = {"Authorization": "Bearer not-a-jwt"} if index % 2 else {}
            response = http.put(
                world.zms + "/domain/api/role/x" + "y" * 3000,
                json={"name": "api:role.x", "roleMembers": []},
                headers=headers,
            )
            assert response.status_code == 401, response.text
    assert len(records(world)) == before
