"""`lab ui` in a real browser: headless Chromium, offline but for loopback, against a running
embedded lab. Resetting and running steps from the page drives the real engine (`lab step N
--json`); the page draws the run model that run saved.

Set ``LAB_UI_SCREENSHOT=1`` to refresh the screenshot of the step 12 view in the docs
(``docs/images/lab-ui-step-12.png``); by default it goes to the test's temp folder.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

from lab.serving import bind_socket, serve_in_thread
from lab.state import load_run_model
from lab.ui.app import LabCommands, create_app
from tests.chromium import chromium_path
from tests.npmtools import AXE, require
from tests.stack import ROOT, Stack, embedded_stack
from tests.ui.cdp import Browser

TOKEN = "browser-test-launch-token"
RUN_TIMEOUT_S = 300

#: The hops of step 12, as the page labels its arrows (from, to, words of the label).
STEP_12_HOPS = [
    ("user", "IdP", "sign in"),
    ("agent", "IdP", "code → ID token"),
    ("agent", "PDP", "token exchange → ID-JAG"),
    ("agent", "PDP", "jwt-bearer → access token"),
    ("agent", "MCP server", "tools/call list_docs"),
    ("MCP server", "PDP", "RFC 8693 exchange"),
    ("MCP server", "document API", "GET /api/docs"),
]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    chromium_path()  # skip (or fail under CI) before starting a lab for nothing
    with embedded_stack(tmp_path_factory.mktemp("ui-lab") / "home") as running:
        yield running


@pytest.fixture(scope="module")
def page(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    app = create_app(stack.settings, TOKEN, LabCommands(env=stack.env, cwd=ROOT))
    with serve_in_thread(app, bind_socket("127.0.0.1", 0)) as url:
        browser = Browser(f"{url}/?step=12#token={TOKEN}", tmp_path_factory.mktemp("chromium"))
        try:
            browser.wait_for("document.body.dataset.ready === 'true'")
            yield browser
        finally:
            browser.close()


def reset_and_run(page: Browser, number: int) -> None:
    page.click(f'button[data-step="{number}"]')
    page.wait_for(
        f"document.getElementById('step-heading').textContent.startsWith('Step {number}:')"
    )
    page.click("#reset-step")
    page.wait_for(
        f"document.getElementById('run-status').textContent.includes('ready for step {number}')",
        RUN_TIMEOUT_S,
    )
    page.click("#run-step")
    page.wait_for(
        f"document.getElementById('run-status').textContent.startsWith('Step {number}: ')",
        RUN_TIMEOUT_S,
    )


def test_step_12_run_from_the_page_draws_the_chain_and_opens_the_id_jag(
    page: Browser, stack: Stack
) -> None:
    assert page.eval("document.getElementById('mode').textContent").startswith("You can run")
    titles = page.eval("[...document.querySelectorAll('#steps button')].map(b => b.textContent)")
    assert any("12. The whole chain, end to end" in t for t in titles)

    reset_and_run(page, 12)
    assert page.eval("document.getElementById('run-status').textContent") == "Step 12: passed"
    hops = page.eval(
        "[...document.querySelectorAll('.hop')]"
        ".map(b => [b.dataset.from, b.dataset.to, b.textContent, b.classList.contains('refused')])"
    )
    for sender, receiver, words in STEP_12_HOPS:
        assert any(h[0] == sender and h[1] == receiver and words in h[2] for h in hops), (
            sender,
            receiver,
            words,
            hops,
        )
    assert not any(h[3] for h in hops)  # nothing refused: every link holds

    index = next(i for i, h in enumerate(hops) if "ID-JAG" in h[2])
    page.click(f'.hop[data-hop="{index}"]')
    page.wait_for("!document.getElementById('hop-detail').hidden")
    shown = page.eval(
        "(() => { const t = document.querySelector("
        "'#hop-detail .token[data-typ=\"oauth-id-jag+jwt\"]');"
        " if (!t) return null;"
        " const rows = tables => Object.fromEntries([...tables.querySelectorAll('tr')]"
        "   .map(r => [r.cells[0].textContent, r.cells[1].textContent]));"
        " const [header, claims] = t.querySelectorAll('table');"
        " return {header: rows(header), claims: rows(claims)}; })()"
    )
    assert shown is not None, "the ID-JAG hop shows no decoded ID-JAG"
    assert shown["header"]["typ"] == "oauth-id-jag+jwt"
    # The page shows what the engine recorded: the same sub as the saved run model.
    run = load_run_model(stack.settings, 12)
    assert run is not None
    recorded = [t for a in run["actions"] for t in a["tokens"] if t["typ"] == "oauth-id-jag+jwt"]
    assert shown["claims"]["sub"] and shown["claims"]["sub"] == str(recorded[0]["claims"]["sub"])
    assert page.eval("document.getElementById('hop-heading').textContent").startswith("agent → PDP")

    target = ROOT / "docs" / "images" / "lab-ui-step-12.png"
    shot = target if os.environ.get("LAB_UI_SCREENSHOT") == "1" else stack.home / "step-12.png"
    page.screenshot(shot)
    assert shot.stat().st_size > 10_000


def test_step_6_refusal_is_drawn_in_red_with_its_reason(page: Browser) -> None:
    reset_and_run(page, 6)
    refused = page.wait_for(
        "[...document.querySelectorAll('.hop.refused')].map(b => [b.dataset.to, b.textContent])"
    )
    assert any(to == "MCP server" and "401" in text for to, text in refused), refused
    reason = " ".join(text for _, text in refused)
    assert "invalid_token" in reason, reason
    color = page.eval("getComputedStyle(document.querySelector('.hop.refused')).color")
    assert color == "rgb(176, 0, 32)", color  # --bad, the red of refusals


def test_a_step_run_in_the_terminal_appears_on_the_page_live(page: Browser, stack: Stack) -> None:
    page.click('button[data-step="1"]')
    page.wait_for("document.getElementById('step-heading').textContent.startsWith('Step 1:')")
    done = stack.lab("step", "1", "--json", timeout=RUN_TIMEOUT_S)
    assert json.loads(done.stdout)["status"] == "passed", done.stderr
    page.wait_for(
        "document.querySelector('#steps button[data-step=\"1\"] .status').textContent === 'passed'"
    )


def show_run(page: Browser, number: int) -> None:
    """Select step ``number``; run it from the page first if it has no run yet."""
    page.click(f'button[data-step="{number}"]')
    page.wait_for(
        f"document.getElementById('step-heading').textContent.startsWith('Step {number}:')"
    )
    page.wait_for("document.getElementById('sequence').children.length > 0")
    if not page.eval("document.querySelector('.hop') !== null"):
        reset_and_run(page, number)


def run_axe(page: Browser) -> list[dict[str, Any]]:
    """axe-core's WCAG 2 A/AA rules on the page as it is now: the violations (id, nodes)."""
    source = (require(AXE).joinpath("node_modules/axe-core/axe.min.js")).read_text()
    page.eval(source + ";true")  # DevTools evaluation is not subject to the page's CSP
    found = page.eval(
        "axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa']}})"
        ".then(r => r.violations.map(v => ({id: v.id, help: v.help,"
        " nodes: v.nodes.map(n => n.target.join(' '))})))"
    )
    return list(found)


def test_the_views_pass_axe_core_wcag_aa_and_work_from_the_keyboard(page: Browser) -> None:
    show_run(page, 12)
    page.click(".hop")
    page.wait_for("!document.getElementById('hop-detail').hidden")
    assert run_axe(page) == []  # labels, contrast, names of buttons, landmarks, lang
    show_run(page, 6)
    page.wait_for("document.querySelectorAll('.hop.refused').length > 0")
    assert run_axe(page) == []  # the refusal red on white is readable too
    # Keyboard: every arrow is a real button in the tab order, with a visible focus ring.
    focus = page.eval(
        "(() => { const b = document.querySelector('.hop'); b.focus();"
        " const s = getComputedStyle(b);"
        " return {active: document.activeElement === b, tab: b.tabIndex,"
        " outline: s.outlineStyle + ' ' + s.outlineWidth}; })()"
    )
    assert focus["active"] and focus["tab"] == 0
    assert focus["outline"].startswith("solid") and focus["outline"] != "solid 0px", focus
