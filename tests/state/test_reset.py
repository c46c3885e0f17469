"""Reset and checkpoints against a real embedded lab: every piece of state goes back, over HTTP.

One lab per module (``lab up`` in a subprocess, private $LAB_HOME and ports); each test starts
from the baseline.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from lab.backends.embedded import EmbeddedBackend
from lab.config import ADMIN_PRINCIPAL
from lab.oauth.admin import make_admin_assertion
from lab.oauth.jose import SigningKey
from lab.state import (
    DEFAULT_DOCS,
    StateClient,
    StateError,
    checkpoint_file,
    drop_checkpoints,
    load_checkpoint,
    load_results,
    record_result,
    reset,
    reset_to_baseline,
    reset_to_step,
    save_checkpoint,
)
from tests.stack import Stack, embedded_stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with embedded_stack(tmp_path_factory.mktemp("state") / "home") as running:
        yield running


@pytest.fixture
def state(stack: Stack) -> StateClient:
    settings = stack.settings
    client = StateClient(settings, stack.endpoints, EmbeddedBackend(settings))
    drop_checkpoints(settings)
    reset_to_baseline(client)
    return client


def admin(state: StateClient, audience: str) -> dict[str, str]:
    key = SigningKey.load_or_create(state.settings.key_file(ADMIN_PRINCIPAL))
    return {"Authorization": f"Bearer {make_admin_assertion(ADMIN_PRINCIPAL, key, audience)}"}


def mcp_origin(state: StateClient) -> str:
    return state.endpoints.mcp.rsplit("/mcp", 1)[0]


def change_everything(state: StateClient) -> None:
    """What steps do: a ZMS domain, a document, an MCP setting, a trusted IdP, a capture."""
    e = state.endpoints
    created = httpx.post(
        f"{e.zms}/domain",
        json={"name": "resettest", "adminUsers": [ADMIN_PRINCIPAL]},
        headers=admin(state, e.zms),
    )
    assert created.status_code in (200, 201, 204), created.text
    doc = httpx.post(f"{e.docapi_unprotected}/api/docs", json={"name": "n", "content": "c"})
    assert doc.status_code == 201, doc.text
    setting = httpx.put(
        f"{mcp_origin(state)}/lab/settings",
        json={"require_access": True},
        headers=admin(state, mcp_origin(state)),
    )
    assert setting.status_code == 200, setting.text
    state.backend.set_providers(
        [
            {
                "issuerUri": e.idp_issuer,
                "jwksUri": e.idp_jwks,
                "principalTemplate": "human.{preferred_username}",
            }
        ]
    )
    (state.settings.home / "captures.json").write_text(
        json.dumps({"values": {"x": 1}, "redacted": []})
    )


def observed(state: StateClient) -> dict:
    e = state.endpoints
    domain = httpx.get(f"{e.zms}/domain/resettest", headers=admin(state, e.zms)).status_code
    docs = httpx.get(f"{e.docapi_unprotected}/api/docs").json()["docs"]
    setting = httpx.get(
        f"{mcp_origin(state)}/lab/settings", headers=admin(state, mcp_origin(state))
    ).json()
    captures = json.loads((state.settings.home / "captures.json").read_text())
    return {
        "domain_status": domain,
        "doc_count": len(docs),
        "require_access": setting["require_access"],
        "providers": len(state.backend.get_providers()),
        "captures": captures,
    }


def test_reset_to_baseline_undoes_every_kind_of_change(state: StateClient) -> None:
    change_everything(state)
    assert observed(state)["doc_count"] == len(DEFAULT_DOCS) + 1

    outcome = reset_to_baseline(state)

    assert outcome.target == 1
    assert observed(state) == {
        "domain_status": 404,
        "doc_count": len(DEFAULT_DOCS),
        "require_access": False,
        "providers": 0,
        "captures": {},
    }


def test_checkpoint_restores_the_state_it_captured(state: StateClient) -> None:
    change_everything(state)
    before = observed(state)
    save_checkpoint(state, 3)
    reset_to_baseline(state)

    outcome = reset_to_step(state, 4)

    assert outcome.restored_from == 3
    assert outcome.replayed == ()
    assert observed(state) == before


def test_checkpoint_files_are_private(state: StateClient) -> None:
    path = save_checkpoint(state, 1)
    assert path == checkpoint_file(state.settings, 1)
    assert path.stat().st_mode & 0o077 == 0


def test_reset_without_checkpoint_fast_forwards_and_checkpoints_each_step(
    state: StateClient,
) -> None:
    ran: list[int] = []

    def run_step(number: int) -> bool:
        ran.append(number)
        return True

    outcome = reset_to_step(state, 3, run_step=run_step)

    assert ran == [1, 2]
    assert outcome.restored_from == 0
    assert outcome.replayed == (1, 2)
    assert load_checkpoint(state.settings, 1) is not None
    assert load_checkpoint(state.settings, 2) is not None


def test_fast_forward_starts_from_the_nearest_earlier_checkpoint(state: StateClient) -> None:
    save_checkpoint(state, 2)
    ran: list[int] = []
    outcome = reset_to_step(state, 5, run_step=lambda n: ran.append(n) is None)
    assert outcome.restored_from == 2
    assert ran == [3, 4]


def test_reset_without_checkpoint_or_runner_says_what_to_run(state: StateClient) -> None:
    with pytest.raises(StateError) as caught:
        reset_to_step(state, 3)
    assert "no checkpoint after step 1" in caught.value.message
    assert caught.value.fix == "run the steps first (`lab run --to 2`), then reset again"


def test_a_failing_step_while_fast_forwarding_is_named(state: StateClient) -> None:
    with pytest.raises(StateError) as caught:
        reset_to_step(state, 4, run_step=lambda n: n != 2)
    assert caught.value.message == "step 2 failed while fast-forwarding to step 4"


def test_an_old_checkpoint_is_not_restored(state: StateClient) -> None:
    path = save_checkpoint(state, 2)
    data = json.loads(path.read_text())
    data["taken"] = time.time() - 3 * 24 * 3600
    path.write_text(json.dumps(data))
    assert load_checkpoint(state.settings, 2) is None
    assert load_checkpoint(state.settings, 2, max_age_s=None) is not None


def test_a_checkpoint_holding_a_token_about_to_expire_is_not_restored(state: StateClient) -> None:
    key = SigningKey.load_or_create(state.settings.key_file(ADMIN_PRINCIPAL))
    now = int(time.time())
    expiring = key.sign({"sub": "x", "iat": now, "exp": now + 10})
    lasting = key.sign({"sub": "x", "iat": now, "exp": now + 3600})
    captures = state.settings.home / "captures.json"
    captures.write_text(json.dumps({"values": {"id_jag": lasting}, "redacted": []}))
    save_checkpoint(state, 2)
    assert load_checkpoint(state.settings, 2) is not None
    captures.write_text(json.dumps({"values": {"id_jag": expiring}, "redacted": []}))
    save_checkpoint(state, 2)
    assert load_checkpoint(state.settings, 2) is None  # the next step would fail on it


def test_a_checkpoint_from_other_endpoints_is_not_restored(state: StateClient) -> None:
    path = save_checkpoint(state, 2)
    data = json.loads(path.read_text())
    data["endpoints"]["zts"] = "http://127.0.0.1:1/zts/v1"
    path.write_text(json.dumps(data))
    assert load_checkpoint(state.settings, 2, endpoints=state.endpoints) is None


def test_reset_forgets_results_of_the_steps_it_undoes(state: StateClient) -> None:
    for number in (1, 2, 3):
        record_result(state.settings, number, f"s{number}", "passed", 1.0)
    save_checkpoint(state, 1)
    reset_to_step(state, 2)
    assert sorted(load_results(state.settings)) == [1]


def test_reset_entry_point_uses_the_running_backend(stack: Stack) -> None:
    outcome = reset(stack.settings)
    assert outcome.target == 1
    docs = httpx.get(f"{stack.endpoints.docapi_unprotected}/api/docs").json()["docs"]
    assert [d["id"] for d in docs] == [d["id"] for d in DEFAULT_DOCS]


def test_reset_with_the_lab_down_is_an_environment_error(tmp_path: Path) -> None:
    from dataclasses import replace

    from lab.backends.base import BackendNotRunning
    from lab.config import Settings

    with pytest.raises(BackendNotRunning):
        reset(replace(Settings(), home=tmp_path))
