"""The web view draws what servers and clients sent (bodies, headers, claims, refusals) as text:
no value is read as markup or script, in headless Chromium (docs/dev/security-tests.md).

A guard: ``app.js`` builds every node with ``textContent``/``append`` of strings, and the run
model is served as JSON (``/api/runs/N``), never inlined into the page. This keeps it so.
"""

from __future__ import annotations

from pathlib import Path

from lab.config import Settings
from lab.render.run_model import step_model
from lab.serving import bind_socket, serve_in_thread
from lab.state import save_run_model
from lab.ui.app import LabCommands, create_app
from tests.chromium import chromium_path
from tests.render.test_terminal import _hostile_result
from tests.stack import ROOT
from tests.ui.cdp import Browser

TOKEN = "hostile-values-launch-token"
#: Markup a value may carry: each would add an element (and run script) if read as HTML.
MARKUP = '"><img src=x onerror="document.title=1"><script>document.title=2</script><b>bold</b>'


def test_hostile_values_in_a_run_are_drawn_as_text(tmp_path: Path) -> None:
    chromium_path()  # skip (or fail under CI) when there is no browser
    settings = Settings.from_env({"LAB_HOME": str(tmp_path / "home")})
    model = step_model(_hostile_result(tmp_path))
    call = model["actions"][0]["calls"][0]
    call["response_body"] = f"error: {MARKUP}"
    call["response_headers"] = {"x-evil": MARKUP}
    call["party"] = "PDP"
    model["sequence"] = [
        {
            "from": "agent",
            "to": "PDP",
            "call": f"call {MARKUP}",
            "status": 400,
            "action": 0,
            "index": 0,
            "hop": None,
            "refusal": f"refused {MARKUP}",
        }
    ]
    for check in model["checks"]:
        check["check"] = f"check {MARKUP}"
    save_run_model(settings, 4, model)
    app = create_app(settings, TOKEN, LabCommands(env={}, cwd=ROOT))
    with serve_in_thread(app, bind_socket("127.0.0.1", 0)) as url:
        page = Browser(f"{url}/?step=4#token={TOKEN}", tmp_path / "chromium")
        try:
            page.wait_for("document.querySelectorAll('.hop').length > 0")
            page.click(".hop")
            page.wait_for("!document.getElementById('hop-detail').hidden")
            injected = page.eval(
                "document.querySelectorAll('main img, main script, main b').length"
            )
            text = page.eval("document.body.innerText")
            title = page.eval("document.title")
        finally:
            page.close()
    assert injected == 0, text
    assert title not in ("1", "2")
    assert '<img src=x onerror="document.title=1">' in text, text
    assert "<script>document.title=2</script>" in text
