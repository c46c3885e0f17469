"""A sequence of hops as an SVG swimlane diagram, drawn at docs build time.

The same hops the terminal draws as swimlanes (``run_model.sequence``: ``from``, ``to``,
``call``, ``status``) become a self-contained ``<svg>``: no script, no font or library to fetch,
so the docs site shows the flow in a workshop without internet.
"""

from __future__ import annotations

import re
from html import escape
from typing import Any

from lab.render.run_model import LANES

LANE_WIDTH = 150
ROW_HEIGHT = 34
TOP = 40
MARGIN = 20
FONT = "font-family:system-ui,sans-serif;font-size:12px"

#: The whole chain, as architecture.md describes it (steps 9-12): used where no run is at hand.
CHAIN: list[dict[str, Any]] = [
    {"from": "user", "to": "IdP", "call": "sign in (authorization code + PKCE)", "status": None},
    {"from": "IdP", "to": "agent", "call": "ID token (aud ai.agent)", "status": None},
    {"from": "agent", "to": "PDP", "call": "token exchange → ID-JAG", "status": None},
    {"from": "agent", "to": "PDP", "call": "jwt-bearer → access token (aud MCP)", "status": None},
    {"from": "agent", "to": "MCP server", "call": "tools/call list_docs (Bearer)", "status": None},
    {"from": "MCP server", "to": "PDP", "call": "RFC 8693 exchange → aud api", "status": None},
    {"from": "MCP server", "to": "document API", "call": "GET /api/docs", "status": None},
    {"from": "document API", "to": "MCP server", "call": "documents", "status": None},
    {"from": "MCP server", "to": "agent", "call": "tool result", "status": None},
]


def sequence_svg(
    hops: list[dict[str, Any]],
    title: str = "The chain, call by call",
    lanes: list[str] | None = None,
) -> str:
    if lanes is None:
        lanes = [lane for lane in LANES if any(lane in (h["from"], h["to"]) for h in hops)]
    x = {lane: MARGIN + LANE_WIDTH // 2 + i * LANE_WIDTH for i, lane in enumerate(lanes)}
    width = MARGIN * 2 + LANE_WIDTH * len(lanes)
    height = TOP + ROW_HEIGHT * (len(hops) + 1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="lab-sequence" role="img" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}">',
        f"<title>{escape(title)}</title>",
        '<defs><marker id="lab-arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'fill="#3949ab"/></marker></defs>',
    ]
    for lane, cx in x.items():
        parts.append(
            f'<rect x="{cx - 62}" y="6" width="124" height="24" rx="4" fill="#e8eaf6" '
            f'stroke="#3949ab"/><text x="{cx}" y="22" text-anchor="middle" '
            f'style="{FONT};font-weight:600">{escape(lane)}</text>'
            f'<line x1="{cx}" y1="30" x2="{cx}" y2="{height - 6}" stroke="#9fa8da" '
            'stroke-dasharray="4 3"/>'
        )
    for row, hop in enumerate(hops, start=1):
        y = TOP + row * ROW_HEIGHT - 10
        a, b = x[hop["from"]], x[hop["to"]]
        failed = isinstance(hop.get("status"), int) and hop["status"] >= 400
        colour = "#c62828" if failed else "#3949ab"
        status = "" if hop.get("status") is None else f" {hop['status']}"
        label = escape(f"{hop['call']}{status}")
        parts.append(
            f'<line x1="{a}" y1="{y}" x2="{b}" y2="{y}" stroke="{colour}" stroke-width="1.5" '
            'marker-end="url(#lab-arrow)"/>'
            f'<text x="{min(a, b) + 6}" y="{y - 5}" style="{FONT}" fill="{colour}">{label}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


PARTICIPANT = re.compile(r"^\s*(?:participant|actor)\s+(\S+)(?:\s+as\s+(.+))?$")
MESSAGE = re.compile(r"^\s*([^-\s>]+)\s*(-{1,2}>>?|-{1,2}x|-{1,2}\))\s*([^:\s]+)\s*:\s*(.*)$")


def svg_from_mermaid(source: str) -> str | None:
    """A Mermaid ``sequenceDiagram`` (participants and messages; notes are left out) drawn as
    the same SVG, or None for any other kind of diagram."""
    lines = [line for line in source.strip().splitlines() if line.strip()]
    if not lines or lines[0].strip() != "sequenceDiagram":
        return None
    names: dict[str, str] = {}
    hops: list[dict[str, Any]] = []
    for line in lines[1:]:
        if match := PARTICIPANT.match(line):
            names[match[1]] = (match[2] or match[1]).strip()
        elif match := MESSAGE.match(line):
            for alias in (match[1], match[3]):
                names.setdefault(alias, alias)
            label = re.sub(r"<br\s*/?>", " ", match[4]).strip()
            hops.append({"from": names[match[1]], "to": names[match[3]], "call": label})
    if not hops:
        return None
    for hop in hops:
        hop["status"] = None
    return sequence_svg(hops, "Sequence", lanes=list(dict.fromkeys(names.values())))
