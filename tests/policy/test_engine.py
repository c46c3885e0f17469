"""Athenz policy semantics as a table: globs, case, DENY over ALLOW, actor roles, reasons."""

from __future__ import annotations

import pytest

from lab.policy.engine import Assertion, decide

GET_DOCS = Assertion(
    role="api:role.docs-getter", resource="api:docs", action="get", policy="api:policy.p"
)
ANY_ROLE_GET = Assertion(role="api:role.*", resource="api:docs", action="get")
GLOB_RESOURCE = Assertion(role="api:role.reader", resource="api:doc?/*", action="read")
WILD_ACTION = Assertion(role="api:role.admin", resource="api:*", action="*")
DENY_DELETE = Assertion(role="api:role.*", resource="api:docs", action="delete", effect="DENY")
ALLOW_DELETE = Assertion(role="api:role.deleter", resource="api:docs", action="delete")
DENY_AGENT_DELETE = Assertion(
    role="api:role.agents", resource="api:docs", action="delete", effect="DENY"
)

CASES = [
    # (name, assertions, roles, action, resource, actor_roles, allowed, effect)
    (
        "exact match allows",
        [GET_DOCS],
        ["api:role.docs-getter"],
        "get",
        "api:docs",
        (),
        True,
        "ALLOW",
    ),
    (
        "action is case-insensitive",
        [GET_DOCS],
        ["api:role.docs-getter"],
        "GET",
        "api:docs",
        (),
        True,
        "ALLOW",
    ),
    (
        "resource is case-insensitive",
        [GET_DOCS],
        ["api:role.docs-getter"],
        "get",
        "API:Docs",
        (),
        True,
        "ALLOW",
    ),
    (
        "other action does not match",
        [GET_DOCS],
        ["api:role.docs-getter"],
        "post",
        "api:docs",
        (),
        False,
        "NO_MATCH",
    ),
    ("role not held", [GET_DOCS], ["api:role.other"], "get", "api:docs", (), False, "NO_MATCH"),
    ("no roles at all", [GET_DOCS], [], "get", "api:docs", (), False, "NO_MATCH"),
    ("role glob *", [ANY_ROLE_GET], ["api:role.anything"], "get", "api:docs", (), True, "ALLOW"),
    (
        "role glob stays in its domain",
        [ANY_ROLE_GET],
        ["other:role.x"],
        "get",
        "api:docs",
        (),
        False,
        "NO_MATCH",
    ),
    (
        "resource ? is one character",
        [GLOB_RESOURCE],
        ["api:role.reader"],
        "read",
        "api:docs/1",
        (),
        True,
        "ALLOW",
    ),
    (
        "resource ? is not zero characters",
        [GLOB_RESOURCE],
        ["api:role.reader"],
        "read",
        "api:doc/1",
        (),
        False,
        "NO_MATCH",
    ),
    (
        "resource glob is anchored",
        [GET_DOCS],
        ["api:role.docs-getter"],
        "get",
        "api:docs2",
        (),
        False,
        "NO_MATCH",
    ),
    (
        "action glob *",
        [WILD_ACTION],
        ["api:role.admin"],
        "zts.jag_exchange",
        "api:role.x",
        (),
        True,
        "ALLOW",
    ),
    (
        "regex characters are literal",
        [Assertion("api:role.r", "api:a.c", "get")],
        ["api:role.r"],
        "get",
        "api:abc",
        (),
        False,
        "NO_MATCH",
    ),
    (
        "DENY beats ALLOW (deny listed last)",
        [ALLOW_DELETE, DENY_DELETE],
        ["api:role.deleter"],
        "delete",
        "api:docs",
        (),
        False,
        "DENY",
    ),
    (
        "DENY beats ALLOW (deny listed first)",
        [DENY_DELETE, ALLOW_DELETE],
        ["api:role.deleter"],
        "delete",
        "api:docs",
        (),
        False,
        "DENY",
    ),
    (
        "actor role matches DENY",
        [ALLOW_DELETE, DENY_AGENT_DELETE],
        ["api:role.deleter"],
        "delete",
        "api:docs",
        ("api:role.agents",),
        False,
        "DENY",
    ),
    (
        "actor role never grants",
        [GET_DOCS],
        [],
        "get",
        "api:docs",
        ("api:role.docs-getter",),
        False,
        "NO_MATCH",
    ),
    (
        "actor deny only for its action",
        [GET_DOCS, DENY_AGENT_DELETE],
        ["api:role.docs-getter"],
        "get",
        "api:docs",
        ("api:role.agents",),
        True,
        "ALLOW",
    ),
]


@pytest.mark.parametrize(
    ("assertions", "roles", "action", "resource", "actor_roles", "allowed", "effect"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_policy_rule(assertions, roles, action, resource, actor_roles, allowed, effect) -> None:  # type: ignore[no-untyped-def]
    decision = decide(
        assertions, roles=roles, action=action, resource=resource, actor_roles=actor_roles
    )
    assert decision.allowed is allowed
    assert decision.effect == effect
    assert decision.reason  # every decision says why


def test_reason_names_the_deciding_assertion() -> None:
    decision = decide(
        [ALLOW_DELETE, DENY_DELETE],
        roles=["api:role.deleter"],
        action="delete",
        resource="api:docs",
    )
    assert decision.assertion == DENY_DELETE
    assert "DENY delete on api:docs" in decision.reason
    allowed = decide([GET_DOCS], roles=["api:role.docs-getter"], action="get", resource="api:docs")
    assert allowed.assertion == GET_DOCS and "api:policy.p" in allowed.reason


@pytest.mark.parametrize("deny_first", [True, False])
def test_actor_deny_wins_whatever_the_order_of_the_policies(deny_first: bool) -> None:
    allow = Assertion("api:role.docs-deleter", "api:docs", "delete", "ALLOW", "docs-deleter_x")
    deny = Assertion("api:role.ai-actors", "api:docs", "delete", "DENY", "zz-actors_x")
    assertions = [deny, allow] if deny_first else [allow, deny]
    decision = decide(
        assertions, ["api:role.docs-deleter"], "delete", "api:docs", ["api:role.ai-actors"]
    )
    assert not decision.allowed and decision.effect == "DENY"
