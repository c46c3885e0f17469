"""mkdocs hooks: add the pages generated from ``steps/`` and the CLI to the site at build time.

Nothing generated is written into ``docs/``: the step files stay the single source.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

from lab.docsite import pages


def _data_dir() -> Path:
    return Path(os.environ.get("LAB_DOCS_DATA", pages.DATA_DIR))


def on_config(config: Any) -> Any:
    steps = pages.read_steps()
    section = [{"Overview": "steps/index.md"}] + [
        {f"{s.number}. {s.title}": s.page_path} for s in steps
    ]
    nav = config["nav"] or []
    for i, entry in enumerate(nav):
        if isinstance(entry, dict) and "Steps" in entry:
            nav[i] = {"Steps": section}
    return config


def on_files(files: Files, config: Any) -> Files:
    steps = pages.read_steps()
    data_dir = _data_dir()
    runs = pages.load_run(data_dir)
    files.append(
        File.generated(config, "steps/index.md", content=pages.render_steps_index(steps, runs))
    )
    for step in steps:
        svg = data_dir / f"{step.number:02d}.svg"
        svg_name = f"{step.number:02d}-{step.slug}.svg" if svg.exists() else None
        if svg_name:
            files.append(File.generated(config, f"steps/{svg_name}", abs_src_path=str(svg)))
        content = pages.render_step_page(step, steps, runs.get(step.number), svg_name)
        files.append(File.generated(config, step.page_path, content=content))
    files.append(File.generated(config, "reference/cli.md", content=pages.render_cli_reference()))
    return files


CHAIN_MARKER = "<!-- lab:chain-diagram -->"
MERMAID_FENCE = re.compile(r"^```mermaid\n(.*?)^```[ \t]*$", re.S | re.M)


def _drawn(match: re.Match[str]) -> str:
    """A Mermaid sequence diagram becomes inline SVG at build time (offline, no library)."""
    from lab.render.sequence_svg import svg_from_mermaid

    svg = svg_from_mermaid(match.group(1))
    return f'<figure class="lab-diagram">{svg}</figure>' if svg else match.group(0)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    # The data-files reference ends with a summary read from the files, so it cannot go stale.
    if page.file.src_uri == pages.DATA_FILES_PAGE:
        return markdown.rstrip() + "\n\n" + pages.render_data_summary()
    markdown = MERMAID_FENCE.sub(_drawn, markdown)
    if CHAIN_MARKER in markdown:
        # Drawn here, at build time, as inline SVG: no diagram library is fetched by the page.
        from lab.render.sequence_svg import CHAIN, sequence_svg

        figure = f'<figure class="lab-diagram">{sequence_svg(CHAIN)}</figure>'
        markdown = markdown.replace(CHAIN_MARKER, figure)
    return markdown


def on_post_build(config: Any) -> None:
    # The docs/dev contracts are for contributors; keep them out of the site but not lost.
    stray = Path(config["site_dir"]) / "dev"
    if stray.exists():
        shutil.rmtree(stray)
