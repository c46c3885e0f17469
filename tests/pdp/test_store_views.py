"""The PDP's indexed domain views: patched per write, per domain, never stale, same decisions."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from lab.pdp.store import Store, timestamp

LEARNER = "human.idjag-learner"


def _role(name: str, *members: str | dict[str, Any]) -> dict[str, Any]:
    return {
        "name": f"api:role.{name}",
        "roleMembers": [m if isinstance(m, dict) else {"memberName": m} for m in members],
    }


def _policy(name: str, *assertions: tuple[str, str, str, str]) -> dict[str, Any]:
    return {
        "name": f"api:policy.{name}",
        "assertions": [
            {"role": r, "resource": res, "action": a, "effect": e} for r, res, a, e in assertions
        ],
    }


def _store(tmp_path: Path) -> Store:
    store = Store(tmp_path / "pdp.db")
    store.put_domain(
        {"name": "api", "modified": timestamp()},
        roles=[_role("docs-getter", LEARNER), _role("everyone", "human.*")],
        policies=[
            _policy("get", ("api:role.docs-getter", "api:docs", "get", "ALLOW")),
            _policy("glob", ("api:role.every*", "api:public", "read", "ALLOW")),
        ],
    )
    store.put_domain({"name": "mcp", "modified": timestamp()}, roles=[_role("x", LEARNER)])
    return store


def _fresh(store: Store, domain: str) -> Any:
    """The same domain read by a store that has never cached anything (a full build)."""
    return Store(store.path).domain_view(domain)


def _same_decisions(patched: Any, fresh: Any) -> None:
    for principal in (LEARNER, "human.other", "ai.agent"):
        assert patched.roles_of(principal) == fresh.roles_of(principal)
        held = fresh.roles_of(principal)
        assert patched.assertions_for(held) == [
            a for a in fresh.assertions if a in fresh.assertions_for(held)
        ]
    assert patched.assertions == fresh.assertions
    assert patched.roles == fresh.roles
    assert patched.policies == fresh.policies


def test_a_membership_change_is_seen_by_the_next_decision(tmp_path: Path) -> None:
    store = _store(tmp_path)
    assert "api:role.docs-getter" in store.domain_view("api").roles_of(LEARNER)  # type: ignore[union-attr]

    def drop(data: dict[str, Any]) -> None:
        data["roleMembers"] = []

    store.update_object("roles", "api", "docs-getter", drop)
    view = store.domain_view("api")
    assert view is not None and "api:role.docs-getter" not in view.roles_of(LEARNER)
    _same_decisions(view, _fresh(store, "api"))


def test_a_policy_write_patches_the_role_index(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.domain_view("api")
    store.put_object(
        "policies",
        "api",
        "deny",
        _policy("deny", ("api:role.docs-getter", "api:docs", "delete", "DENY")),
    )
    store.delete_object("policies", "api", "glob")
    view = store.domain_view("api")
    assert view is not None
    actions = [a.action for a in view.assertions_for(view.roles_of(LEARNER))]
    assert actions == ["delete", "get"]  # policies by name: "deny" before "get"; "glob" gone
    _same_decisions(view, _fresh(store, "api"))


def test_a_write_to_one_domain_keeps_the_other_domains_view(tmp_path: Path) -> None:
    store = _store(tmp_path)
    mcp_before = store.domain_view("mcp")
    api_before = store.domain_view("api")
    store.put_object("roles", "api", "new", _role("new", LEARNER))
    assert store.domain_view("mcp") is mcp_before
    api_after = store.domain_view("api")
    assert api_after is not api_before and api_after is not None
    assert "api:role.new" in api_after.roles_of(LEARNER)


def test_replacing_the_whole_state_drops_every_view(tmp_path: Path) -> None:
    store = _store(tmp_path)
    version = store.domain_version("mcp")
    store.domain_view("mcp")
    store.import_state({"domains": [{"name": "mcp", "roles": [_role("y", "ai.agent")]}]})
    assert store.domain_version("mcp") != version
    view = store.domain_view("mcp")
    assert view is not None and view.roles_of(LEARNER) == [] and view.roles_of("ai.agent")
    assert store.domain_view("api") is None


def test_expired_and_wildcard_memberships_in_the_index(tmp_path: Path) -> None:
    store = _store(tmp_path)
    past = {"memberName": "human.gone", "expiration": "2001-01-01T00:00:00Z"}
    soon = {"memberName": "human.soon", "expiration": timestamp(time.time() + 3600)}
    store.put_object("roles", "api", "temp", _role("temp", past, soon))
    view = store.domain_view("api")
    assert view is not None
    assert "api:role.temp" not in view.roles_of("human.gone")
    assert "api:role.temp" in view.roles_of("HUMAN.SOON")  # member names are case-insensitive
    assert "api:role.everyone" in view.roles_of("human.anybody")  # human.* matches by prefix
    assert view.next_expiry() is not None and view.next_expiry() > time.time()  # type: ignore[operator]
    _same_decisions(view, _fresh(store, "api"))


def test_many_writes_fall_back_to_a_rebuild_with_the_same_result(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.domain_view("api")
    for index in range(Store.PATCH_LIMIT + 5):
        store.put_object("roles", "api", f"r{index}", _role(f"r{index}", f"human.u{index}"))
    view = store.domain_view("api")
    assert view is not None and "api:role.r7" in view.roles_of("human.u7")
    assert "api:role.r8" not in view.roles_of("human.u7")
    _same_decisions(view, _fresh(store, "api"))


def test_indexed_view_decides_as_a_scan_of_every_assertion() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from lab.pdp.view import DomainView
    from lab.policy.engine import decide, member_matches

    roles = ["api:role.a", "api:role.b", "api:role.*", "API:ROLE.A"]
    members = ["human.x", "human.*", "*", "HUMAN.X", "ai.agent"]
    assertion = st.fixed_dictionaries(
        {
            "role": st.sampled_from(roles),
            "resource": st.sampled_from(["api:docs", "api:*"]),
            "action": st.sampled_from(["get", "*"]),
            "effect": st.sampled_from(["ALLOW", "DENY"]),
        }
    )

    @settings(max_examples=150, deadline=None)
    @given(
        st.dictionaries(
            st.sampled_from(["a", "b"]), st.lists(st.sampled_from(members), max_size=3)
        ),
        st.dictionaries(st.sampled_from(["p1", "p2"]), st.lists(assertion, max_size=4)),
        st.sampled_from(["human.x", "ai.agent", "Human.X", "other"]),
    )
    def check(
        role_rows: dict[str, list[str]], policies: dict[str, list[dict[str, str]]], who: str
    ) -> None:
        view = DomainView.build(
            "api",
            "",
            [
                (s, {"name": f"api:role.{s}", "roleMembers": [{"memberName": m} for m in ms]})
                for s, ms in sorted(role_rows.items())
            ],
            [
                (s, {"name": f"api:policy.{s}", "assertions": a})
                for s, a in sorted(policies.items())
            ],
        )
        scanned = sorted(
            f"api:role.{s}"
            for s, ms in role_rows.items()
            if any(member_matches(m, who) for m in ms)
        )
        assert sorted(view.roles_of(who)) == scanned
        for action in ("get", "delete"):
            full = decide(view.assertions, scanned, action, "api:docs")
            assert decide(view.assertions_for(scanned), scanned, action, "api:docs") == full

    check()
