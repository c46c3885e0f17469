"""Indexed lookups decide exactly as a scan of every assertion and every member would."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from lab.policy.engine import Assertion, decide, member_matches
from lab.policy.signed import PolicyData

ROLES = ["api:role.a", "api:role.b", "api:role.c", "api:role.*", "API:ROLE.A", "api:role.?"]
MEMBERS = ["human.x", "human.y", "human.*", "*", "HUMAN.X", "ai.agent"]
PRINCIPALS = ["human.x", "human.y", "ai.agent", "Human.X", "other"]

assertions = st.lists(
    st.builds(
        Assertion,
        role=st.sampled_from(ROLES),
        resource=st.sampled_from(["api:docs", "api:*", "api:other"]),
        action=st.sampled_from(["get", "delete", "*"]),
        effect=st.sampled_from(["ALLOW", "DENY"]),
    ),
    max_size=12,
)
role_members = st.dictionaries(
    st.sampled_from(ROLES[:3]), st.lists(st.sampled_from(MEMBERS), max_size=3), max_size=3
)


@settings(max_examples=200, deadline=None)
@given(assertions, role_members, st.sampled_from(PRINCIPALS), st.sampled_from(PRINCIPALS))
def test_indexed_decisions_equal_a_full_scan(
    items: list[Assertion], roles: dict[str, list[str]], principal: str, actor: str
) -> None:
    policy = PolicyData("api", assertions=items, roles=roles)
    scanned_roles = {r for r, ms in roles.items() if any(member_matches(m, principal) for m in ms)}
    assert policy.roles_of(principal) == scanned_roles
    held = sorted(scanned_roles)
    acting = sorted(policy.roles_of(actor))
    for action, resource in (("get", "api:docs"), ("delete", "api:docs"), ("get", "api:other")):
        full = decide(items, held, action, resource, actor_roles=acting)
        indexed = decide(
            policy.assertions_for([*held, *acting]), held, action, resource, actor_roles=acting
        )
        assert indexed == full
