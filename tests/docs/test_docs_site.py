"""The docs site builds strictly and its step pages come from the step files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lab.docsite import pages

ROOT = Path(__file__).resolve().parents[2]

SAMPLE_STEP = """---
step: 1
slug: document-api
title: Knock on the document API
teaches: F1
actions:
  - id: protected_without_token
    say: Ask without a token.
    request:
      method: GET
      url: "${endpoints.docapi_protected}/api/docs"
    capture:
      challenge: {header: WWW-Authenticate}
    expect:
      - status: 401
        why: A protected resource refuses a request that carries no credentials.
---

In this step you will knock. The server answered with `${challenge}`.
"""


def _write_sample(tmp_path: Path) -> Path:
    steps = tmp_path / "steps"
    steps.mkdir()
    (steps / "01-document-api.md").write_text(SAMPLE_STEP)
    return steps


def test_step_page_shows_narrative_request_and_expectations(tmp_path):
    steps = pages.read_steps(_write_sample(tmp_path))
    page = pages.render_step_page(steps[0], steps, None, None)
    assert page.startswith("# Step 1: Knock on the document API")
    assert "GET http://127.0.0.1:14443/api/docs" in page  # endpoints filled with the defaults
    assert "`status: 401`" in page and "refuses a request" in page
    assert "${challenge}" in page  # no run captured: the capture stays visible, never invented


def test_step_page_uses_a_captured_run(tmp_path):
    steps = pages.read_steps(_write_sample(tmp_path))
    import jwt as pyjwt

    token = pyjwt.encode(
        {"sub": "human.idjag-learner"}, "k" * 32, algorithm="HS256", headers={"typ": "at+jwt"}
    )
    run = {
        "number": 1,
        "status": "passed",
        "duration_ms": 12,
        "captures": {"challenge": 'Bearer realm="api"'},
        "tokens": [{"label": "access token", "token": token}],
    }
    page = pages.render_step_page(steps[0], steps, run, "01-document-api.svg")
    assert 'answered with `Bearer realm="api"`' in page
    assert '"sub": "human.idjag-learner"' in page and "**passed**" in page
    assert "01-document-api.svg" in page


def test_broken_front_matter_names_the_file(tmp_path):
    bad = tmp_path / "02-x.md"
    bad.write_text("---\nstep: [unclosed\n---\nbody")
    with pytest.raises(pages.StepFileError, match="02-x.md"):
        pages.read_step_file(bad)


def test_load_run_reads_verify_json(tmp_path):
    (tmp_path / "verify.json").write_text(
        json.dumps({"steps": [{"number": 3, "status": "passed"}]})
    )
    assert pages.load_run(tmp_path)[3]["status"] == "passed"
    assert pages.load_run(tmp_path / "missing") == {}


def test_mkdocs_build_is_strict_and_complete(tmp_path):
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "LAB_DOCS_DATA": str(tmp_path / "no-data")}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (site / "index.html").exists() and (site / "architecture" / "index.html").exists()
    for step in pages.read_steps():
        page = site / "steps" / f"{step.number:02d}-{step.slug}" / "index.html"
        assert page.exists(), f"no page for step {step.number}"
    assert "lab" in (site / "reference" / "cli" / "index.html").read_text()


# ---------------------------------------------------------------------- capture -> page


def _fake_result():
    """A StepResult as the engine makes it: one action, one check, one issued token."""
    import jwt as pyjwt

    from lab.steps.model import ActionResult, CheckResult, StepResult, TokenSeen

    header = {"alg": "HS256", "typ": "at+jwt"}
    claims = {"sub": "human.idjag-learner", "aud": "api", "scope": "docs-getter"}
    token = pyjwt.encode(claims, "k" * 32, algorithm="HS256", headers={"typ": "at+jwt"})
    action = ActionResult(
        action_id="protected_without_token",
        kind="request",
        tokens=(TokenSeen("protected_without_token", "access_token", token, header, claims),),
        checks=(CheckResult("protected_without_token", "status equals 401", 401, 401, True),),
        captured={"challenge": 'Bearer realm="api"', "learner_token": token, "secret": "***"},
    )
    result = StepResult(
        number=1,
        slug="document-api",
        title="Knock on the document API",
        status="passed",
        duration_ms=12.5,
        actions=(action,),
        path="steps/01-document-api.md",
    )
    return result, token


def test_page_renders_the_real_verify_json_shape(tmp_path):
    from lab.docsite.__main__ import run_records

    result, token = _fake_result()
    records = json.loads(json.dumps(run_records([result])))  # through JSON, as on disk
    (tmp_path / "verify.json").write_text(json.dumps(records))
    run = pages.load_run(tmp_path)[1]
    steps = pages.read_steps(_write_sample(tmp_path))
    page = pages.render_step_page(steps[0], steps, run, None)
    assert 'answered with `Bearer realm="api"`' in page  # captures fill the narrative
    assert '"scope": "docs-getter"' in page and "Decoded access_token" in page
    assert "**passed** (12 ms)" in page
    assert token not in page  # the raw bearer token never reaches the site


def test_captured_tokens_are_abbreviated_in_the_narrative():
    _, token = _fake_result()
    shown = pages.shown_value(f"token={token}")
    assert token not in shown and shown.startswith("token=eyJ") and "…" in shown


def test_literal_passwords_are_hidden_but_references_stay():
    spec = {
        "op": "sign_in",
        "username": "idjag-learner",
        "password": "password",
        "form": {"client_secret": "${realm.client_secret}"},
    }
    hidden = pages.hide_secrets(spec)
    assert hidden["password"] == "***" and hidden["username"] == "idjag-learner"
    assert hidden["form"]["client_secret"] == "${realm.client_secret}"


def test_terminal_svg_is_what_lab_step_prints(tmp_path):
    from lab.docsite.__main__ import write_terminal_svg

    result, _ = _fake_result()
    svg = tmp_path / "01.svg"
    write_terminal_svg(result, svg)
    text = svg.read_text().replace("&#160;", " ")  # rich writes spaces as no-break spaces
    assert text.startswith("<svg") and "lab step 1" in text
    assert "Knock" in text  # the step's title as the terminal shows it


def test_capture_shows_default_ports_and_hides_lab_home(tmp_path):
    from lab.config import PORTS
    from lab.docsite.__main__ import normalise

    env = {var: str(40000 + i) for i, (var, _) in enumerate(PORTS.values())}
    home = tmp_path / "home"
    (tmp_path / "01.svg").write_text(
        f"GET http://127.0.0.1:{env['LAB_DOCAPI_PORT']}/api {home}/keys"
    )
    normalise(tmp_path, env, home)
    assert (tmp_path / "01.svg").read_text() == "GET http://127.0.0.1:14443/api $LAB_HOME/keys"


def test_a_secret_in_the_captured_data_is_found(tmp_path, monkeypatch):
    from lab.docsite.__main__ import find_secrets
    from lab.steps.values import realm_client_secret

    data, home = tmp_path / "data", tmp_path / "home"
    data.mkdir()
    home.mkdir()
    (data / "01.svg").write_text("nothing secret here")
    assert find_secrets(data, home) == []
    (data / "02.svg").write_text(f"client_secret={realm_client_secret()}")
    (data / "03.svg").write_text("username=idjag-learner&amp;password=password")
    assert find_secrets(data, home) == ["02.svg", "03.svg"]


def test_build_goes_on_without_run_data_when_the_capture_fails(monkeypatch, capsys, tmp_path):
    from lab.backends.base import BackendError
    from lab.docsite import __main__ as docsite

    def broken_capture() -> list[dict[str, object]]:
        raise BackendError("port 9090 on 127.0.0.1 is already in use", "set LAB_IDP_PORT")

    calls: list[list[str]] = []
    monkeypatch.setattr(docsite, "capture", broken_capture)
    monkeypatch.setattr(docsite, "mkdocs", lambda args: calls.append(list(args)) or 0)
    monkeypatch.setenv("LAB_DOCS_DATA", str(tmp_path / "old"))  # restored after the test
    assert docsite.main(["build", "--site-dir", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert "The capture failed (port 9090" in err and "fix: set LAB_IDP_PORT" in err
    assert calls == [["build", "--strict", "--site-dir", str(tmp_path)]]
    assert os.environ["LAB_DOCS_DATA"].endswith("no-docs-data")  # the old capture is not shown


def test_data_files_summary_names_clients_and_users_but_no_secret():
    from lab.steps.values import realm_client_secret

    summary = pages.render_data_summary()
    assert "`ai.agent`" in summary and "`idjag-learner`" in summary and "S256" in summary
    assert realm_client_secret() not in summary


def test_pages_show_every_action_the_engine_runs():
    """The page and the engine read the same file the same way (a step 14 comment with
    '---' once cut its page short; the solution include is expanded as the engine does)."""
    from lab.steps import load_steps

    engine = {s.number: [a.id for a in s.actions] for s in load_steps()}
    shown = {s.number: [a.get("id") for a in s.actions] for s in pages.read_steps()}
    assert shown == engine


def test_challenge_answer_is_marked_on_the_page():
    steps = pages.read_steps()
    challenge = next(s for s in steps if any(a.get("solution") is True for a in s.actions))
    page = pages.render_step_page(challenge, steps, None, None)
    assert (
        '??? tip "Part of the answer' in page and f"lab step {challenge.number} --solution" in page
    )


def test_folded_answer_keeps_multi_line_requests_inside_the_fold():
    action = {
        "id": "grant_post",
        "solution": True,
        "request": {"method": "PUT", "url": "http://x/policy", "json": {"name": "p", "a": [1]}},
        "expect": [{"status": 204}],
    }
    text = pages.render_action(action, {}, 14)
    body = text.split('??? tip "Part of the answer', 1)[1].splitlines()[1:]
    assert all(line == "" or line.startswith("    ") for line in body), text
    assert '    !!! success "Expected"' in text and "lab step 14 --solution" in text
