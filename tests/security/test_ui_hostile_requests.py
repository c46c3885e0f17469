"""The lab ui's write routes with hostile values: a precise 4xx, nothing run, never a 500.

Found by an outsider's battery (sixth session): a launch-token header of obs-text
(``X-Lab-UI-Token: \\xff``) made ``hmac.compare_digest`` raise (500); an ``Origin`` no URL
parser reads (``http://[::1``) made the guard raise (500); a step number of 5000 digits was a
500 before any handler (Starlette's ``int`` convertor); a reset body that is no JSON object
(``[]``, ``"x"``, ``5``) reset the lab to its baseline; and ``{"to": 999}`` handed ``--to 999``
to ``lab reset`` (its failure came back as a 502). Each test below was run with its fix undone
(``guard.token_matches`` on str, ``origin_is_local`` without its ``except``, the routes on
``{number:int}``, the reset's old ``isinstance(body, dict)`` fallback and no step check) and
failed there.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from lab.config import Settings
from lab.ui.app import create_app
from lab.ui.guard import TOKEN_HEADER
from tests.ui.test_app import LOCAL, TOKEN, FakeLab


@pytest.fixture
def lab_commands() -> FakeLab:
    return FakeLab()


@pytest.fixture
def ui(tmp_path: Path, lab_commands: FakeLab) -> TestClient:
    app = create_app(Settings(home=tmp_path / "home"), TOKEN, lab_commands)
    return TestClient(app, base_url=LOCAL, raise_server_exceptions=False)


@pytest.mark.parametrize("presented", [b"\xff", b"\xe9" + TOKEN.encode(), TOKEN.encode() + b"\xa0"])
def test_a_launch_token_of_obs_text_is_403_not_a_crash(
    ui: TestClient, lab_commands: FakeLab, presented: bytes
) -> None:
    for path in ("/api/steps/12/run", "/api/run-all", "/api/reset"):
        response = ui.post(path, headers={TOKEN_HEADER: presented}, json={"to": 12})  # type: ignore[dict-item]
        assert response.status_code == 403, (path, response.text)
        assert response.json()["error"] == "forbidden"
    assert lab_commands.calls == []


@pytest.mark.parametrize(
    "origin", ["http://[::1", "http://[127.0.0.1]:80", "http://127.0.0.1:99999999999", "http://["]
)
def test_an_unparsable_origin_is_refused_as_foreign(
    ui: TestClient, lab_commands: FakeLab, origin: str
) -> None:
    response = ui.post("/api/steps/12/run", headers={TOKEN_HEADER: TOKEN, "Origin": origin})
    assert response.status_code == 403, response.text
    assert response.json()["error"] == "forbidden"
    assert lab_commands.calls == []


@pytest.mark.parametrize("digits", [7, 4301, 5000])
def test_a_step_number_of_many_digits_is_404(
    ui: TestClient, lab_commands: FakeLab, digits: int
) -> None:
    number = "9" * digits
    assert ui.get(f"/api/runs/{number}").status_code == 404
    ran = ui.post(f"/api/steps/{number}/run", headers={TOKEN_HEADER: TOKEN})
    assert ran.status_code == 404, ran.text
    assert ran.json()["error"] == "not_found"
    assert lab_commands.calls == []


@pytest.mark.parametrize("body", [b"[]", b'"x"', b"5", b"null", b'[{"to": 3}]'])
def test_a_reset_body_that_is_no_object_resets_nothing(
    ui: TestClient, lab_commands: FakeLab, body: bytes
) -> None:
    response = ui.post(
        "/api/reset",
        content=body,
        headers={TOKEN_HEADER: TOKEN, "Content-Type": "application/json"},
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_request"
    assert lab_commands.calls == []


@pytest.mark.parametrize("to", [999, 10**30, 2**63])
def test_a_reset_to_a_step_that_does_not_exist_is_404_and_runs_nothing(
    ui: TestClient, lab_commands: FakeLab, to: int
) -> None:
    response = ui.post("/api/reset", json={"to": to}, headers={TOKEN_HEADER: TOKEN})
    assert response.status_code == 404, response.text
    assert response.json()["error"] == "not_found"
    assert len(response.json()["error_description"]) <= 100
    assert lab_commands.calls == []


def test_the_genuine_reset_and_baseline_still_run(ui: TestClient, lab_commands: FakeLab) -> None:
    """The guard: a real step and the baseline (``null``, or no ``to``) still reset."""
    for body, args in (
        ({"to": 12}, ("reset", "--json", "--to", "12")),
        ({"to": None}, ("reset", "--json")),
        ({}, ("reset", "--json")),
    ):
        response = ui.post("/api/reset", json=body, headers={TOKEN_HEADER: TOKEN})
        assert response.status_code == 200, response.text
        assert lab_commands.calls[-1] == args
