"""Refusals are named with the steps' wording: F1 no token, F2 membership, F3 delegation."""

from __future__ import annotations

import pytest

from lab.gateway.links import ChainBroken, lesson_of, tool_error_text

ATHENZ_MEMBERSHIP = (
    "principal human.idjag-learner is not included in the requested role(s) in domain api"
)


@pytest.mark.parametrize(
    ("status", "error", "text", "lesson"),
    [
        (401, None, "MCP server refused the request: HTTP 401 invalid_token", "F1"),
        (403, "invalid_scope", ATHENZ_MEMBERSHIP, "F2"),
        (
            403,
            "unauthorized_client",
            "Principal not authorized for token exchange for the requested role",
            "F3",
        ),
        (
            None,
            None,
            "... Principal not authorized for token impersonation from source domain",
            "F3",
        ),
        (403, "insufficient_scope", "MCP server refused the request: HTTP 403", None),
        (400, "invalid_grant", "issuer not trusted", None),
    ],
)
def test_lesson_of_each_refusal(
    status: int | None, error: str | None, text: str, lesson: str | None
) -> None:
    assert lesson_of(status, error, text) == lesson


def test_chain_broken_names_the_link_the_lesson_and_keeps_the_pdp_text() -> None:
    broken = ChainBroken(
        "id_jag", f"HTTP 403 invalid_scope: {ATHENZ_MEMBERSHIP}", 403, "invalid_scope"
    )
    text = broken.explain()
    assert "the ID-JAG request at the PDP" in text
    assert "(F2: role configured, membership missing)" in text
    assert text.endswith(ATHENZ_MEMBERSHIP)
    assert str(broken) == text


def test_a_tool_error_unrelated_to_the_chain_is_left_alone() -> None:
    assert tool_error_text("document 7 not found") is None
    named = tool_error_text(f"token exchange for api:role.docs-getter refused: {ATHENZ_MEMBERSHIP}")
    assert named is not None and "F2" in named and "token exchange for the tool" in named


def test_a_role_the_pdp_left_out_is_named_as_a_missing_membership() -> None:
    text = (
        "token exchange for api:role.docs-getter refused by the PDP (HTTP 400 invalid_scope): "
        "Invalid scope for token exchange. Missing permission: the token the MCP server "
        "received does not carry api:role.docs-getter."
    )
    named = tool_error_text(text, ("api:role.docs-getter",), "human.idjag-learner")
    assert named is not None
    assert "(F2: role configured, membership missing)" in named
    assert named.endswith("human.idjag-learner is not a member of it now.")
    # Without knowing the PDP dropped it, the gateway does not guess a lesson.
    unnamed = tool_error_text(text)
    assert unnamed is not None and "F2" not in unnamed
