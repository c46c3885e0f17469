"""Single-use jtis are recorded with the decision, not read beforehand (issue #21), and a replay
is still answered as a replay whatever else the grant would have refused: a replayed client
assertion never learns what the PDP decides."""

from __future__ import annotations

from pathlib import Path

from lab.pdp.client_auth import REPLAYED_CLIENT_ASSERTION
from lab.pdp.store import Store
from tests.pdp.conftest import LEARNER, PdpLab


def test_a_replayed_client_assertion_is_invalid_client_even_when_the_grant_now_fails(
    world: PdpLab,
) -> None:
    form = {
        "grant_type": "client_credentials",
        "scope": "api:role.docs-getter",
        **world.client_assertion(LEARNER),
    }
    assert world.token(form).status_code == 200
    world.role("api", "docs-getter", [])  # the grant itself would now refuse (not a member)
    replay = world.token(form)
    assert replay.status_code == 401
    assert replay.json()["error"] == "invalid_client"
    assert REPLAYED_CLIENT_ASSERTION in replay.json()["error_description"]
    denied = [r for r in world.audit() if r["decision"] == "deny"]
    assert denied and REPLAYED_CLIENT_ASSERTION in denied[-1]["reason"]


def test_a_replayed_id_jag_is_a_replay_even_after_the_user_left_the_role(world: PdpLab) -> None:
    response = world.request_id_jag(world.id_token())
    assert response.status_code == 200, response.text
    jag = response.json()["access_token"]
    assert world.redeem(jag).status_code == 200
    world.role("api", "docs-getter", [])
    replay = world.redeem(jag)
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    assert replay.json()["message"] == "Invalid assertion token: assertion has already been used"


def test_the_endpoint_index_follows_service_writes_and_hands_out_copies(tmp_path: Path) -> None:
    store = Store(tmp_path / "pdp.sqlite3")
    store.put_domain({"name": "ai"})
    assert store.service_by_endpoint("http://127.0.0.1:1/new-mcp") is None
    store.put_object(
        "services",
        "ai",
        "new-mcp",
        {"name": "ai.new-mcp", "providerEndpoint": "http://127.0.0.1:1/new-mcp/"},
    )
    found = store.service_by_endpoint("http://127.0.0.1:1/new-mcp")
    assert found is not None and found["name"] == "ai.new-mcp"
    found["name"] = "changed by a caller"
    assert store.service_by_endpoint("http://127.0.0.1:1/new-mcp/")["name"] == "ai.new-mcp"
    assert store.delete_object("services", "ai", "new-mcp")
    assert store.service_by_endpoint("http://127.0.0.1:1/new-mcp") is None
