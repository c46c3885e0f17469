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

    token = pyjwt.encode({"sub": "human.idjag-learner"}, "k" * 32, algorithm="HS256", headers={"typ": "at+jwt"})
    run = {"number": 1, "status": "passed", "duration_ms": 12,
           "captures": {"challenge": 'Bearer realm="api"'},
           "tokens": [{"label": "access token", "token": token}]}
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
    (tmp_path / "verify.json").write_text(json.dumps({"steps": [{"number": 3, "status": "passed"}]}))
    assert pages.load_run(tmp_path)[3]["status"] == "passed"
    assert pages.load_run(tmp_path / "missing") == {}


def test_mkdocs_build_is_strict_and_complete(tmp_path):
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "LAB_DOCS_DATA": str(tmp_path / "no-data")}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (site / "index.html").exists() and (site / "architecture" / "index.html").exists()
    for step in pages.read_steps():
        page = site / "steps" / f"{step.number:02d}-{step.slug}" / "index.html"
        assert page.exists(), f"no page for step {step.number}"
    assert "lab" in (site / "reference" / "cli" / "index.html").read_text()
