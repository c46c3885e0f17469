"""The docs site works offline (issue #17): every diagram is drawn at build time as inline SVG,
no page asks a CDN for a diagram library or a web font, and a headless Chromium with the
network off finds the rendered diagram on the built pages.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chromium import BASE_FLAGS, chromium_path

ROOT = Path(__file__).resolve().parents[2]
#: Debian's chromium, with everything that could reach the network switched off.
CHROMIUM_FLAGS = (
    *BASE_FLAGS,
    # Network off: every host resolves to nothing and every proxy hop goes nowhere.
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--proxy-server=127.0.0.1:9",
)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    out = tmp_path_factory.mktemp("offline-site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "LAB_DOCS_DATA": str(out / "no-data")}
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    yield out


def test_no_page_fetches_a_diagram_library_or_a_font(site: Path) -> None:
    for page in site.rglob("*.html"):
        html = page.read_text(encoding="utf-8")
        assert 'class="mermaid"' not in html, page  # raw diagram source would show offline
        assert "fonts.googleapis" not in html and "fonts.gstatic" not in html, page


@pytest.mark.parametrize(
    "page", ["index.html", "architecture/index.html", "guide/gateway/index.html"]
)
def test_headless_chromium_offline_finds_the_rendered_diagram(site: Path, page: str) -> None:
    browser = chromium_path()
    shown = subprocess.run(
        [browser, *CHROMIUM_FLAGS, "--dump-dom", (site / page).as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    dom = shown.stdout
    assert "</html>" in dom, shown.stderr[-2000:]
    svg = re.search(r'<svg[^>]*class="lab-sequence".*?</svg>', dom, re.S)
    assert svg is not None, "no rendered diagram on the page"
    lanes = ("agent", "IdP", "PDP", "MCP server") + (() if "gateway" in page else ("document API",))
    for lane in lanes:
        assert re.search(rf">[^<]*{lane}[^<]*</text>", svg.group(0)), lane
    assert svg.group(0).count("<line") >= 9  # lifelines and the arrows of the chain
    assert "sequenceDiagram" not in dom  # no diagram source left as text


def test_a_step_page_draws_its_run_as_svg() -> None:
    from lab.docsite import pages

    run = {
        "number": 12,
        "status": "passed",
        "duration_ms": 1.0,
        "lineage": [{"label": "id_jag"}, {"label": "exchanged by the MCP server"}],
        "sequence": [
            {"from": "agent", "to": "PDP", "call": "token exchange → ID-JAG", "status": 200},
            {"from": "MCP server", "to": "document API", "call": "GET /api/docs", "status": 200},
        ],
    }
    section = "\n".join(pages._run_section(run, None))
    assert 'class="lab-sequence"' in section and "token exchange → ID-JAG 200" in section
