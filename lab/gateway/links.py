"""A broken link of the chain, worded the way the steps word it.

The gateway turns every refusal (sign-in, ID-JAG, jwt-bearer grant, the MCP server's 401/403,
the MCP server's own token exchange) into one sentence that says which link broke and, when it is
one of the lab's three lessons, which: **F1** no token, **F2** role configured but membership
missing, **F3** delegation not granted (STEPS.md; the steps' ``teaches`` lines). The PDP's and
the MCP server's own text is kept verbatim after it, so the Athenz message a step checks for
(e.g. ``principal human.idjag-learner is not included in the requested role(s) in domain api``)
reaches the AI client unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

#: The links, in chain order, as a learner reads them.
LINKS = {
    "lab": "the lab itself",
    "sign_in": "sign-in at the IdP",
    "id_jag": "the ID-JAG request at the PDP (RFC 8693 token exchange)",
    "redeem": "the jwt-bearer grant at the PDP (RFC 7523, ID-JAG redemption)",
    "mcp": "the MCP server",
    "tool": "the MCP server's token exchange for the tool",
}

LESSONS = {
    "F1": "F1: no token",
    "F2": "F2: role configured, membership missing",
    "F3": "F3: delegation not granted",
}

#: Athenz's wording (reference/athenz.md) and the MCP server's explanations, lower-cased.
_MEMBERSHIP_MARKERS = (
    "is not included in the requested role(s)",
    "the user is not a member of",
)
_DELEGATION_MARKERS = (
    "principal not authorized for token exchange",
    "principal not authorized for token impersonation",
    "is not allowed to exchange tokens",
    "zts.jag_exchange",
)


def lesson_of(status: int | None, error: str | None, text: str) -> str | None:
    """Which of F1–F3 a refusal is, from its status, OAuth error code and text."""
    lowered = text.lower()
    if any(marker in lowered for marker in _DELEGATION_MARKERS) or error == "unauthorized_client":
        return "F3"
    if any(marker in lowered for marker in _MEMBERSHIP_MARKERS):
        return "F2"
    if status == 401:
        return "F1"
    return None


@dataclass
class ChainBroken(Exception):
    """The gateway could not get (or use) a token: ``link`` says where, ``detail`` what was said."""

    link: str
    detail: str
    status: int | None = None
    error: str | None = None

    def __post_init__(self) -> None:
        super().__init__(self.explain())

    @property
    def lesson(self) -> str | None:
        return lesson_of(self.status, self.error, self.detail)

    def explain(self) -> str:
        return explain(self.link, self.detail, self.lesson)


def explain(link: str, detail: str, lesson: str | None) -> str:
    """``The chain broke at <link> (<lesson>): <detail>`` — one sentence for the AI client."""
    where = LINKS.get(link, link)
    label = f" ({LESSONS[lesson]})" if lesson else ""
    return f"lab gateway: the chain broke at {where}{label}: {detail}"


def tool_error_text(
    text: str, dropped: Sequence[str] = (), subject: str | None = None
) -> str | None:
    """The MCP server's tool error with the broken link named in front of it, or None when the
    error is not about the chain (a missing document is just a tool error).

    ``dropped`` are roles the gateway asked for but the PDP left out of its ID-JAG: when the MCP
    server then finds one missing from the token, the cause is a membership (F2), which the MCP
    server cannot see but the gateway can."""
    lesson = lesson_of(None, None, text)
    if lesson is None and "token exchange" not in text.lower():
        return None
    missing = [role for role in dropped if role in text]
    if lesson is None and missing:
        lesson = "F2"
        who = subject or "the user"
        text += (
            f" The PDP left {', '.join(missing)} out of the gateway's ID-JAG and access token: "
            f"{who} is not a member of it now."
        )
    return explain("tool", text, lesson)
