"""Policy matching is exact where it must be, fails closed, and costs linear time.

Each case kills a mutant the audit found alive: role patterns matched as prefixes (``match``
instead of ``fullmatch``), principal membership by substring, the wildcard member's prefix
arithmetic, an unknown domain allowed by ``check_access``, a missing policy document allowed at
a resource server, signed policy data used after its expiry, and backtracking globs.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from lab.config import Settings
from lab.oauth.jose import SigningKey, static_key_resolver
from lab.oauth.resource_server import decide_locally
from lab.pdp.core import Pdp
from lab.policy.engine import MAX_NAME_LENGTH, Assertion, decide, glob_match, member_matches
from lab.policy.signed import PolicyDataError, sign_policy_data, verify_signed_policy_data
from tests.pdp.conftest import LEARNER, PdpLab, pdp_lab, world  # noqa: F401  (fixtures)

GET_DOCS = Assertion(role="api:role.docs", resource="api:docs", action="get")


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("api:docs", "api:docs", True),
        ("api:docs", "api:docs2", False),  # anchored at the end
        ("api:docs", "xapi:docs", False),  # anchored at the start
        ("api:doc?", "api:docs", True),
        ("api:doc?", "api:doc", False),
        ("api:doc?", "api:docss", False),
        ("api:*", "api:", True),
        ("api:*", "api:anything/at:all", True),
        ("*:docs", "api:docs", True),
        ("*:docs", "api:docs:x", False),
        ("a*b*c", "abc", True),
        ("a*b*c", "aXbYc", True),
        ("a*b*c", "acb", False),
        ("a*bc*bc", "abcbc", True),
        ("ab*ba", "aba", False),  # prefix and suffix must not overlap
        ("*a?c*", "zzabc", True),
        ("*a?c*", "zzac", False),
        ("API:Docs", "api:DOCS", True),  # case-insensitive, like Athenz
        ("api.docs", "apixdocs", False),  # '.' is literal, not a regex wildcard
        ("api:(docs)+", "api:docsdocs", False),
        ("", "", True),
        ("*", "", True),
        ("?", "", False),
        # Middle segments: in order, leftmost, and never inside the fixed suffix.
        ("*b*a*", "ab", False),
        ("*ab*b", "ab", False),
        ("*a*b*a*", "abaa", True),
        ("*b*a?*", "a_b", False),
        ("*a?*b", "xab", False),
        ("*a?*b", "xa_b", True),
        ("x*?b*y", "xaby", True),
        ("x*?b*y", "xby", False),
    ],
)
def test_glob_semantics(pattern: str, value: str, expected: bool) -> None:
    assert glob_match(pattern, value) is expected


def test_role_pattern_is_matched_whole_not_as_a_prefix() -> None:
    decision = decide([GET_DOCS], ["api:role.docs-getter"], "get", "api:docs")
    assert (decision.allowed, decision.effect) == (False, "NO_MATCH")
    assert decide([GET_DOCS], ["api:role.docs"], "get", "api:docs").allowed


def test_role_pattern_must_cover_the_start_of_the_role() -> None:
    assertion = Assertion(role="role.docs", resource="api:docs", action="get")
    assert not decide([assertion], ["api:role.docs"], "get", "api:docs").allowed


@pytest.mark.parametrize(
    ("member", "principal", "expected"),
    [
        ("human.idjag-learner", "human.idjag-learner", True),
        ("human.idjag-learner", "HUMAN.IDJAG-LEARNER", True),
        ("human.idjag", "human.idjag-learner", False),  # no substring / prefix membership
        ("idjag-learner", "human.idjag-learner", False),
        ("human.idjag-learner", "human.idjag-learner2", False),
        ("human.idjag-learner2", "human.idjag-learner", False),
        ("*", "anyone.at-all", True),
        ("human.*", "human.idjag-learner", True),
        ("human.*", "humanx", False),  # the '.' before the star is part of the prefix
        ("human.*", "human", False),
        ("human.i*", "human.x", False),
        ("ab*", "ac", False),
        ("ab*", "ab", True),
        ("ab*", "a", False),
        ("human.*", "ai.human.x", False),
    ],
)
def test_member_matching(member: str, principal: str, expected: bool) -> None:
    assert member_matches(member, principal) is expected


def test_check_access_on_an_unknown_domain_is_no_match(lab_settings: Settings) -> None:
    pdp = Pdp.open(lab_settings)
    for resource in ("nosuch:docs", "nosuch:role.x", ":", "nosuch"):
        decision = pdp.check_access("ai.agent", "zts.jag_exchange", resource)
        assert (decision.allowed, decision.effect) == (False, "NO_MATCH")


def test_no_policy_document_denies_at_the_resource_server() -> None:
    claims = {"sub": "human.idjag-learner", "scp": ["docs-getter"], "client_id": "ai.agent"}
    decision = decide_locally(None, claims, domain="api", action="get", resource="api:docs")
    assert (decision.allowed, decision.effect) == (False, "NO_MATCH")


class _Says:
    """A policy object whose decision is fixed: only a real ALLOW may allow."""

    expires_at = None

    def __init__(self, allowed: Any, effect: str) -> None:
        self.allowed, self.effect, self.reason = allowed, effect, "fixed"

    def roles_of(self, principal: str) -> set[str]:
        return set()

    def decide(self, roles: Any, action: str, resource: str, actor_roles: Any) -> Any:
        return self


@pytest.mark.parametrize(("allowed", "effect"), [(False, "ALLOW"), (True, "DENY"), (1, "ALLOW")])
def test_resource_server_allows_only_an_explicit_allow(allowed: Any, effect: str) -> None:
    policy = _Says(allowed, effect)
    decision = decide_locally(policy, {"sub": "x"}, domain="api", action="get", resource="api:x")
    assert decision.allowed is False


def _signed(key: SigningKey, expires: str | None) -> dict[str, Any]:
    signed: dict[str, Any] = {
        "policyData": {"domain": "api", "policies": [], "roles": []},
        "modified": "x",
    }
    if expires is not None:
        signed["expires"] = expires
    return sign_policy_data(signed, key)


@pytest.mark.parametrize("expires", [None, "", "2020-01-01T00:00:00.000Z"])
def test_signed_policy_data_without_or_past_expiry_is_refused(
    tmp_path: Path, expires: str | None
) -> None:
    key = SigningKey.load_or_create(tmp_path / "k.pem")
    with pytest.raises(PolicyDataError):
        verify_signed_policy_data(
            _signed(key, expires), static_key_resolver({key.kid: key.key.public_key()})
        )


def test_verified_policy_data_carries_its_expiry(tmp_path: Path) -> None:
    key = SigningKey.load_or_create(tmp_path / "k.pem")
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() + 600))
    policy = verify_signed_policy_data(
        _signed(key, stamp), static_key_resolver({key.kid: key.key.public_key()})
    )
    assert policy.expires_at is not None
    assert abs(policy.expires_at - (time.time() + 600)) < 2


def _timed(function: Any, *args: Any) -> tuple[Any, float]:
    """Run in a thread with a deadline so a regression fails instead of hanging the suite."""
    result: list[Any] = []
    started = time.monotonic()
    thread = threading.Thread(target=lambda: result.append(function(*args)), daemon=True)
    thread.start()
    thread.join(timeout=10)
    return (result[0] if result else None), time.monotonic() - started


def test_adversarial_glob_does_not_backtrack() -> None:
    # x:*a*a*a*a*b against 150 a's froze a backtracking matcher for 5-9 s; this is a safety
    # bound (10x the linear cost on a slow machine), not a speed target.
    assertion = Assertion(role="api:role.*", resource="x:*a*a*a*a*a*a*b", action="*")
    resource = "x:" + "a" * 1000
    decision, elapsed = _timed(decide, [assertion], ["api:role.r"], "get", resource)
    assert decision is not None and decision.allowed is False
    assert elapsed < 2.0


def test_overlong_names_never_match() -> None:
    long_resource = "api:" + "d" * MAX_NAME_LENGTH
    allow_all = Assertion(role="*", resource="*", action="*")
    decision = decide([allow_all], ["api:role.r"], "get", long_resource)
    assert (decision.allowed, decision.effect) == (False, "NO_MATCH")


# Case-insensitive means ASCII letters only: str.lower() maps the Kelvin sign (U+212A) onto
# "k" and the long s (U+017F) casefolds onto "s", so a request naming a resource nobody wrote
# a policy for was decided by the policy of its ASCII look-alike.
LOOK_ALIKES = ["api:doc.\u212aey", "api:\u212aey", "api:doc.\u017fecret"]


@pytest.mark.parametrize("value", LOOK_ALIKES)
def test_a_non_ascii_look_alike_never_matches_an_ascii_policy(value: str) -> None:
    ascii_twin = value.replace("\u212a", "k").replace("\u017f", "s")
    assert glob_match(ascii_twin, ascii_twin.upper())  # ASCII case still folds
    assert not glob_match(ascii_twin, value)
    assert not glob_match(ascii_twin.upper(), value)
    assert glob_match("api:*", value)  # a wildcard still covers it, as written
    assert not member_matches("human.kelvin", "human.\u212aelvin")
    assert not member_matches("human.k*", "human.\u212aelvin")


def test_check_access_does_not_fold_a_look_alike_onto_the_ascii_policy(
    world: PdpLab,  # noqa: F811
) -> None:
    allowed = [Assertion("api:role.reader", "api:doc.key", "read", "ALLOW")]
    decision = decide(allowed, ["api:role.reader"], "read", "api:doc.\u212aey")
    assert (decision.allowed, decision.effect) == (False, "NO_MATCH")
    assert decide(allowed, ["api:role.reader"], "READ", "API:DOC.KEY").allowed
    # The PDP folds the request the same way before it decides, through its indexes.
    world.allow("api", "reader", "docs-getter", "read", "api:doc.key")
    pdp = Pdp.open(world.settings)
    assert pdp.check_access(LEARNER, "READ", "API:DOC.KEY").allowed
    assert not pdp.check_access(LEARNER, "read", "api:doc.\u212aey").allowed
    # A look-alike principal holds none of its ASCII twin's roles.
    world.role("api", "docs-getter", [LEARNER, "human.kim"])
    pdp = Pdp.open(world.settings)
    assert pdp.check_access("human.KIM", "get", "api:docs").allowed
    assert not pdp.check_access("human.\u212aim", "get", "api:docs").allowed
