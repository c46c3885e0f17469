"""The web view tells "a terminal's lab command holds the lab" by the CLI's error marker
(``lab.cli.error_marker``), never by the wording of its sentence: reworded, busy is still 409;
a sentence that merely reads like busy, without the marker, is not."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from lab.cli import error_marker
from lab.config import Settings
from lab.ui import app as ui_app
from lab.ui.app import create_app

TOKEN = "launch-token-for-tests"
LOCAL = "http://127.0.0.1"
HEADERS = {"X-Lab-UI-Token": TOKEN}


def lab_answering(code: int, stderr: str) -> ui_app.Runner:
    def run(*args: str) -> tuple[int, str, str]:
        return code, "", stderr

    return run


def page_commands(client: TestClient) -> list[tuple[int, dict]]:
    answers = [
        client.post("/api/steps/1/run", headers=HEADERS),
        client.post("/api/reset", json={"to": 3}, headers=HEADERS),
        client.post("/api/run-all", headers=HEADERS),
    ]
    return [(answer.status_code, answer.json()) for answer in answers]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home")


def test_busy_reworded_is_still_409_with_the_clis_own_sentence(settings: Settings) -> None:
    sentence = "the lab is occupied by pid 41 (lab verify) for more than 3 s"  # new wording
    stderr = (
        f"error: {sentence}\nfix: try later\n"
        + error_marker.marker_line(error_marker.BUSY, sentence, "try later")
        + "\n"
    )
    client = TestClient(create_app(settings, TOKEN, lab_answering(3, stderr)), base_url=LOCAL)
    for status, body in page_commands(client):
        assert status == 409, body
        assert body == {"error": "busy", "error_description": sentence}


def test_the_old_wording_without_the_marker_is_not_busy(settings: Settings) -> None:
    stderr = "error: busy: another lab command (pid 7: lab run) still holds the lab after 3 s\n"
    client = TestClient(create_app(settings, TOKEN, lab_answering(3, stderr)), base_url=LOCAL)
    for status, body in page_commands(client):
        assert status != 409, body


def test_another_kind_of_failure_is_not_busy_and_its_marker_is_not_shown(
    settings: Settings,
) -> None:
    marker = error_marker.marker_line(None, "nothing answers at http://127.0.0.1:1", "lab up")
    stderr = f"error: nothing answers at http://127.0.0.1:1\nfix: lab up\n{marker}\n"
    client = TestClient(create_app(settings, TOKEN, lab_answering(3, stderr)), base_url=LOCAL)
    status, body = page_commands(client)[1]  # the reset
    assert status == 502 and body["error"] == "reset_failed"
    assert body["error_description"] == "fix: lab up"  # the last line a person reads


def test_the_page_asks_the_cli_for_its_marker(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, str] = {}

    def fake_run(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        seen.update(kwargs["env"])  # type: ignore[arg-type]
        return subprocess.CompletedProcess(args, 0, "{}", "")

    monkeypatch.setattr(ui_app.subprocess, "run", fake_run)
    ui_app.LabCommands(env={"LAB_HOME": "x"})("step", "1", "--json")
    assert seen[error_marker.ENV] == "1"
