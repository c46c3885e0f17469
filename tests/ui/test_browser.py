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


#: The chain's four tokens, as the lineage lists them (label, typ), in order.
CHAIN_TOKENS = [
    ("id_token", "JWT"),
    ("id_jag", "oauth-id-jag+jwt"),
    ("access_token", "at+jwt"),
    ("exchanged by the MCP server", "at+jwt"),
]
LINEAGE = (
    "[...document.querySelectorAll('#lineage button')]"
    ".map(b => [b.textContent, b.dataset.typ, b.dataset.lineage])"
)


def lineage_button(page: Browser, label: str) -> str:
    entries = page.eval(LINEAGE)
    return str(next(i for text, _, i in entries if text.startswith(f"{label} (")))


def test_the_lineage_lists_the_four_tokens_of_the_chain_once_each(page: Browser) -> None:
    show_run(page, 12)
    entries = page.wait_for(LINEAGE)
    shown = [(text.rsplit(" (", 1)[0], typ) for text, typ, _ in entries]
    assert shown == CHAIN_TOKENS, shown
    froms = page.eval("[...document.querySelectorAll('#lineage .from')].map(s => s.textContent)")
    # Each link names the token it was exchanged from: ID token → ID-JAG → access → exchanged.
    assert froms[0] == ""
    assert "id_token" in froms[1] and "id_jag" in froms[2] and "access_token" in froms[3], froms


def test_an_opened_token_shows_its_signature_valid_and_a_countdown_that_decreases(
    page: Browser,
) -> None:
    show_run(page, 12)
    page.wait_for(LINEAGE)
    page.click(f'#lineage button[data-lineage="{lineage_button(page, "id_jag")}"]')
    page.wait_for("!document.getElementById('token-detail').hidden")
    sig = page.eval("document.querySelector('#token-detail .sig').textContent")
    # Checked by lab ui against the PDP's JWKS, with the kid of the ID-JAG's header.
    kid = page.eval(
        "[...document.querySelector('#token-detail table.kv').querySelectorAll('tr')]"
        ".find(r => r.cells[0].textContent === 'kid').cells[1].textContent"
    )
    assert sig.startswith("✓ signature valid (kid ") and "the PDP's JWKS" in sig, sig
    assert sig.split("kid ")[1].split(",")[0] == kid
    first = int(page.eval("document.querySelector('#token-detail .countdown').dataset.left"))
    text = page.eval("document.querySelector('#token-detail .countdown').textContent")
    assert text.startswith("expires in ") and 0 < first <= 300, (text, first)  # an ID-JAG: 300 s
    later = page.wait_for(
        f"(() => {{ const c = document.querySelector('#token-detail .countdown');"
        f" return Number(c.dataset.left) < {first} && c.dataset.left; }})()",
        10,
    )
    assert int(later) < first
    # What changed against the ID token it was exchanged from: the subject became the PDP's
    # principal, the audience the PDP, and client_id/resource/scope were added.
    diff = page.eval(
        "Object.fromEntries([...document.querySelectorAll("
        "'#token-detail table.diff tr[data-claim]')].map(r => [r.dataset.claim, r.className]))"
    )
    assert page.eval(
        "document.querySelector('#token-detail table.diff caption').textContent"
    ).endswith("exchanged from, sign_in.id_token")
    assert diff["sub"] == "changed" and diff["aud"] == "changed", diff
    assert diff["client_id"] == "added" and diff["resource"] == "added", diff
    assert diff["preferred_username"] == "removed", diff

    # The MCP server's token: its signature checked where it lives, never sent to the agent.
    page.click(
        f'#lineage button[data-lineage="{lineage_button(page, "exchanged by the MCP server")}"]'
    )
    page.wait_for("document.getElementById('token-heading').textContent.includes('exchanged by')")
    sig = page.eval("document.querySelector('#token-detail .sig').textContent")
    assert sig.startswith("✓ signature valid (kid ") and "checked by the MCP server" in sig, sig
    changed = page.eval(
        "[...document.querySelectorAll('#token-detail table.diff tr[data-claim]')]"
        ".map(r => r.dataset.claim)"
    )
    assert "aud" in changed and "act" in changed, changed


def open_hop(page: Browser, words: str) -> dict[str, Any]:
    hops = page.eval(
        "[...document.querySelectorAll('.hop')].map(b => [b.dataset.hop, b.textContent])"
    )
    index = next(i for i, text in hops if words in text)
    page.click(f'.hop[data-hop="{index}"]')
    page.wait_for(
        f"document.querySelector('.hop[data-hop=\"{index}\"]')"
        ".getAttribute('aria-expanded') === 'true'"
    )
    return dict(
        page.eval(
            "(() => { const d = document.getElementById('hop-detail'); const q = s =>"
            " (d.querySelector(s) || {}).textContent || null;"
            " return {heading: q('#hop-heading'), request: q('.request-line'),"
            " request_body: q('.request-body'), response: q('.response-line'),"
            " response_body: q('.response-body'), refusal: q('.refusal'), text: d.innerText}; })()"
        )
    )


def test_the_mcp_servers_own_hops_open_with_their_request_and_response(page: Browser) -> None:
    show_run(page, 12)
    exchange = open_hop(page, "RFC 8693 exchange")
    assert exchange["heading"].startswith("MCP server → PDP"), exchange["heading"]
    assert exchange["request"].startswith("POST ") and "/oauth2/token" in exchange["request"]
    assert "grant-type:token-exchange" in exchange["request_body"]
    assert "subject_token=***" in exchange["request_body"]  # the received token: redacted
    assert exchange["response"].startswith("HTTP 200")
    assert '"access_token": "***"' in exchange["response_body"]  # stays on the MCP server
    assert "eyJ" not in exchange["text"]  # no token of any kind on the page's hop
    docs = open_hop(page, "GET /api/docs")
    assert docs["heading"].startswith("MCP server → document API")
    assert docs["request"].startswith("GET ") and docs["response"].startswith("HTTP 200")
    assert "first default doc" in docs["response_body"]


def test_step_6_refusal_is_drawn_in_red_with_its_reason(page: Browser) -> None:
    reset_and_run(page, 6)
    refused = page.wait_for(
        "[...document.querySelectorAll('.hop.refused')]"
        ".map(b => [b.dataset.from, b.dataset.to, b.textContent])"
    )
    assert any(to == "MCP server" and "401" in text for _, to, text in refused), refused
    reason = " ".join(text for _, _, text in refused)
    assert "invalid_token" in reason, reason
    color = page.eval("getComputedStyle(document.querySelector('.hop.refused')).color")
    assert color == "rgb(176, 0, 32)", color  # --bad, the red of refusals
    # The refusal inside the chain: the MCP server's own exchange, refused by the PDP, with the
    # OAuth error and Athenz's wording of the public tutorial.
    inner = [t for sender, to, t in refused if sender == "MCP server" and to == "PDP"]
    assert inner and "(403)" in inner[0], refused
    assert "unauthorized_client" in inner[0], inner
    assert "Principal not authorized for token impersonation from source domain" in inner[0]
    hop = open_hop(page, "RFC 8693 exchange")
    assert hop["refusal"] and "unauthorized_client" in hop["refusal"], hop
    assert hop["response"].startswith("HTTP 403")
    color = page.eval(
        "getComputedStyle(document.querySelector('.hop.refused[data-from=\"MCP server\"]')).color"
    )
    assert color == "rgb(176, 0, 32)", color


def test_the_audit_view_shows_the_verified_chain_of_the_current_run(
    page: Browser, stack: Stack
) -> None:
    show_run(page, 12)  # the run leaves decisions in the trail
    page.click("#audit-check")
    verdict = page.wait_for(
        "document.getElementById('audit-verdict').dataset.valid === 'true'"
        " && document.getElementById('audit-verdict').textContent",
        60,
    )
    assert verdict.startswith("✓ verified"), verdict
    rows = page.eval(
        "[...document.querySelectorAll('#audit-records tr')].slice(1)"
        ".map(r => [...r.cells].map(c => c.textContent))"
    )
    # The same records `lab audit --verify --json` gives, the newest last.
    done = stack.lab("audit", "--verify", "--json", timeout=RUN_TIMEOUT_S)
    cli = json.loads(done.stdout)
    assert cli["valid"] is True
    assert rows and rows[-1][0] == str(cli["records"][-1]["seq"])
    assert {r[2] for r in rows} <= {"allow", "deny"}
    # The step's own decisions are marked: the correlation ids the PDP answered its calls with.
    marked = [r for r in rows if r[-1].endswith("◆ this step")]
    assert any(r[4] == "id-jag" and r[2] == "allow" for r in marked), marked
    assert any(r[4] == "token:token-exchange" for r in marked), marked  # the MCP server's


def test_a_step_run_in_the_terminal_appears_on_the_page_live(page: Browser, stack: Stack) -> None:
    page.click('button[data-step="1"]')
    page.wait_for("document.getElementById('step-heading').textContent.startsWith('Step 1:')")
    done = stack.lab("step", "1", "--json", timeout=RUN_TIMEOUT_S)
    assert json.loads(done.stdout)["status"] == "passed", done.stderr
    page.wait_for(
        "document.querySelector('#steps button[data-step=\"1\"] .status').textContent === 'passed'"
    )
    # The audit view follows the PDP's trail too, checked again by `lab audit --verify`: step 6
    # asks the PDP for tokens.
    ready = stack.lab("reset", "--to", "6", timeout=RUN_TIMEOUT_S)
    assert ready.returncode == 0, ready.stderr
    page.wait_for("document.getElementById('audit-verdict').dataset.valid === 'true'", 60)
    newest = "(document.querySelector('#audit-records tr:last-child td') || {}).textContent"
    before = page.eval(newest) or "0"
    done = stack.lab("step", "6", "--json", timeout=RUN_TIMEOUT_S)
    assert json.loads(done.stdout)["status"] == "passed", done.stderr
    later = page.wait_for(
        "document.getElementById('audit-verdict').dataset.valid === 'true'"
        f" && {newest} !== {json.dumps(before)} && {newest}",
        60,
    )
    assert int(later) > int(before)  # the newest record's seq


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
    # The token view (signature, countdown, changes), an internal hop and the audit trail.
    page.wait_for(LINEAGE)
    page.click(f'#lineage button[data-lineage="{lineage_button(page, "access_token")}"]')
    page.wait_for("!document.getElementById('token-detail').hidden")
    open_hop(page, "RFC 8693 exchange")
    page.click("#audit-check")
    page.wait_for("document.getElementById('audit-verdict').dataset.valid === 'true'", 60)
    assert run_axe(page) == []
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


def test_the_run_whole_lab_button_runs_every_step_live_and_shows_them_passed(
    page: Browser,
) -> None:
    # Every redraw of the step list is noted: the page follows the run step by step.
    page.eval(
        "window.seen = []; new MutationObserver(() => window.seen.push("
        "[...document.querySelectorAll('#steps .status')].filter(s => s.textContent === 'passed')"
        ".length)).observe(document.getElementById('steps'), {childList: true}); true"
    )
    total = page.eval("document.querySelectorAll('#steps button').length")
    page.click("#run-all")
    status = page.wait_for(
        "document.getElementById('run-status').textContent.startsWith('The whole lab')"
        " && document.getElementById('run-status').textContent",
        RUN_TIMEOUT_S * 2,
    )
    assert status == f"The whole lab: all {total} steps passed.", status
    statuses = page.eval("[...document.querySelectorAll('#steps .status')].map(s => s.textContent)")
    assert statuses == ["passed"] * total, statuses
    seen = page.eval("window.seen")
    # Live: the list showed the run part-way, some steps passed and later ones not yet.
    assert any(0 < n < total for n in seen), seen
    assert not page.eval("document.getElementById('run-all').disabled")
