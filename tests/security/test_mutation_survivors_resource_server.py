"""Tests written for mutants of ``lab/oauth/resource_server.py`` that ``make mutate`` found
alive (docs/dev/mutation.md): what the policy cache reports (``held``, health, the message
when no copy can be had), how it fetches (``If-None-Match``, 304, 404, other answers, a
document that fails verification), and how tokens' roles and actors are read.

The PDP is replaced by a patched ``lab.oauth.http.get`` and a verifier returning a small
policy object, so every rule is asserted exactly and without a server.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import pytest

import lab.oauth.resource_server as rs
from lab.oauth.resource_server import PolicyCache, PolicyUnavailable

ZTS = "http://pdp.test/zts/v1"
URL = f"{ZTS}/domain/api/signed_policy_data"


@dataclass
class Decision:
    allowed: Any
    effect: Any
    reason: str = "why"


@dataclass
class FakePolicy:
    """A verified policy as the cache sees it; records what it was asked."""

    expires_at: float | None = None
    roles: dict[str, set[str]] = field(default_factory=dict)
    answer: Decision = field(default_factory=lambda: Decision(True, "ALLOW"))
    asked: list[tuple[Any, ...]] = field(default_factory=list)

    def roles_of(self, principal: str) -> set[str]:
        return self.roles.get(principal, set())

    def decide(
        self, roles: Iterable[str], action: str, resource: str, actor_roles: Iterable[str]
    ) -> Decision:
        self.asked.append((list(roles), action, resource, tuple(actor_roles)))
        return self.answer


class Pdp:
    """Answers the cache's GETs; records URL, headers and timeout of each."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.status = 200
        self.etag: str | None = '"v1"'
        self.body: Any = {"doc": 1}
        self.error: Exception | None = None

    def get(self, url: str, **options: Any) -> httpx.Response:
        self.calls.append((url, options))
        if self.error is not None:
            raise self.error
        headers = {"etag": self.etag} if self.etag else {}
        return httpx.Response(
            self.status, json=self.body, headers=headers, request=httpx.Request("GET", url)
        )


class _Client:
    """Stands in for the cache's client (built once, with the cache's timeout)."""

    def __init__(self, pdp: Pdp, timeout: float) -> None:
        self.pdp, self.timeout = pdp, timeout

    def get(self, url: str, **options: Any) -> httpx.Response:
        return self.pdp.get(url, **options, timeout=self.timeout)


@pytest.fixture
def pdp(monkeypatch: pytest.MonkeyPatch) -> Pdp:
    fake = Pdp()
    monkeypatch.setattr(PolicyCache, "_http", lambda self: _Client(fake, self._timeout))
    return fake


def cache(
    policy: FakePolicy | None = None, refresh_s: float = 60.0, timeout_s: float = 0.3
) -> PolicyCache:
    made = policy if policy is not None else FakePolicy()

    def verify(document: Any, keys: Any) -> FakePolicy:
        if document != {"doc": 1}:
            raise ValueError("bad signature")
        return made

    return PolicyCache(
        ZTS,
        "api",
        None,
        verify=verify,
        refresh_s=refresh_s,
        timeout_s=timeout_s,  # type: ignore[arg-type]
    )


# -------------------------------------------------------------------- what it reports


def test_held_reports_nothing_before_the_first_fetch(pdp: Pdp) -> None:
    assert cache(refresh_s=7.5).held() == {
        "domain": "api",
        "version": None,
        "fetched_at": None,
        "age_s": None,
        "refresh_s": 7.5,
    }


def test_held_reports_the_version_and_when_it_was_fetched(pdp: Pdp) -> None:
    c = cache(refresh_s=7.5)
    c.current()
    assert c._cached is not None
    c._cached = dataclasses.replace(c._cached, fetched_wall=1_800_000_000.1234567)
    held = c.held()
    assert held["version"] == '"v1"'
    assert held["fetched_at"] == 1_800_000_000.123457  # rounded to the microsecond
    assert 0 <= held["age_s"] < 5 and held["age_s"] == round(held["age_s"], 6)
    assert held["refresh_s"] == 7.5
    c._cached = dataclasses.replace(c._cached, fetched_at=time.monotonic() - 1.2345678)
    assert 1.234567 <= c.held()["age_s"] < 1.3  # seconds, to the microsecond


def test_the_default_fetch_timeout_is_five_seconds(pdp: Pdp) -> None:
    PolicyCache(ZTS, "api", None, verify=lambda d, k: FakePolicy(), refresh_s=1.0).current()  # type: ignore[arg-type]
    assert pdp.calls[0][1]["timeout"] == 5.0


def test_without_a_copy_the_refusal_names_the_last_error(pdp: Pdp) -> None:
    pdp.status = 500
    c = cache()
    with pytest.raises(PolicyUnavailable) as refused:
        c.current()
    assert refused.value.description == "the PDP answered 500 for the signed policy data of api"
    assert c.health() == (False, "the PDP answered 500 for the signed policy data of api")


@pytest.mark.parametrize("form", ["thread", "async"])
def test_a_reader_waiting_on_another_refresh_is_told_to_try_again(pdp: Pdp, form: str) -> None:
    c = cache(timeout_s=0.2)
    assert c._refreshing.acquire(blocking=False)  # another caller's first fetch is running
    started = time.monotonic()
    try:
        with pytest.raises(PolicyUnavailable) as refused:
            if form == "thread":
                c.current()
            else:
                anyio.run(c.current_async)
    finally:
        c._refreshing.release()
    elapsed = time.monotonic() - started
    assert refused.value.description == "signed policy data is being fetched; try again"
    assert 0.18 <= elapsed < 0.9  # waited for its deadline, in small steps
    assert pdp.calls == []


@pytest.mark.parametrize("form", ["thread", "async"])
def test_a_fresh_copy_is_served_without_a_fetch(pdp: Pdp, form: str) -> None:
    policy = FakePolicy()
    c = cache(policy, refresh_s=60.0)
    for _ in range(3):
        got = c.current() if form == "thread" else anyio.run(c.current_async)
        assert got is policy
    assert len(pdp.calls) == 1


def test_health_before_any_fetch_and_with_a_copy(pdp: Pdp) -> None:
    c = cache()
    assert c.health() == (True, "policy data not fetched yet")
    c.current()
    assert c.health() == (True, "policy data cached")


# -------------------------------------------------------------------- how it fetches


def test_the_fetch_asks_the_domains_url_with_the_timeout_then_if_none_match(pdp: Pdp) -> None:
    c = cache(refresh_s=0.0, timeout_s=0.7)
    c.current()
    pdp.status = 304
    c.current()
    assert pdp.calls == [
        (URL, {"headers": {}, "timeout": 0.7}),
        (URL, {"headers": {"If-None-Match": '"v1"'}, "timeout": 0.7}),
    ]


def test_a_304_keeps_the_copy_and_restarts_its_age(pdp: Pdp) -> None:
    policy = FakePolicy()
    c = cache(policy, refresh_s=0.0)
    assert c.current() is policy
    first = c._cached
    pdp.status, pdp.body = 304, None
    assert c.current() is policy
    assert c._cached is not None and first is not None
    assert c._cached.fetched_at > first.fetched_at and c._cached.etag == '"v1"'


def test_a_304_for_an_expired_copy_is_not_trusted(pdp: Pdp) -> None:
    policy = FakePolicy()
    c = cache(policy, refresh_s=0.0)
    c.current()
    policy.expires_at = time.time() - 1  # the copy held has now expired
    pdp.status, pdp.body = 304, None
    with pytest.raises(PolicyUnavailable) as refused:
        c.current()
    assert refused.value.description == "the PDP answered 304 for the signed policy data of api"


def test_a_404_means_no_such_domain_and_nothing_is_granted(pdp: Pdp) -> None:
    pdp.status = 404
    c = cache()
    assert c.current() is None
    decision = rs.decide_locally(
        c.current(), {"sub": "u", "scp": ["docs-getter"]}, domain="api", action="get", resource="x"
    )
    assert decision == rs.AccessDecision(False, "NO_MATCH", "domain api has no policies")


def test_a_document_that_fails_verification_is_never_used(pdp: Pdp) -> None:
    pdp.body = {"doc": "forged"}
    with pytest.raises(PolicyUnavailable) as refused:
        cache().current()
    assert refused.value.description == "signed policy data failed verification: bad signature"


def test_a_network_error_is_named(pdp: Pdp) -> None:
    pdp.error = httpx.ConnectError("refused")
    with pytest.raises(PolicyUnavailable) as refused:
        cache().current()
    assert refused.value.description == (
        "signed policy data could not be fetched from the PDP: refused"
    )
    assert (refused.value.status, refused.value.error) == (503, "temporarily_unavailable")


# -------------------------------------------------------------------- tokens


def test_token_roles_read_scp_then_scope_and_qualify_short_names() -> None:
    assert rs.token_roles({"scp": ["", "docs-getter", 7, "mcp:role.x"]}, "api") == [
        "api:role.docs-getter",
        "mcp:role.x",
    ]
    assert rs.token_roles({"scope": "a b:role.c"}, "api") == ["api:role.a", "b:role.c"]
    assert rs.token_roles({"scp": "a", "scope": "b"}, "api") == ["api:role.b"]
    assert rs.token_roles({"scope": 5}, "api") == []


def test_actors_are_the_client_and_every_act_sub_but_not_the_subject() -> None:
    claims = {
        "sub": "human.u",
        "client_id": "ai.agent",
        "act": {"sub": "mcp.m", "act": {"sub": "ai.agent", "act": {"sub": "human.u"}}},
    }
    assert rs.actor_principals(claims) == ["ai.agent", "mcp.m"]
    assert rs.actor_principals({"sub": "x", "client_id": "x"}) == []


def test_actor_chains_are_read_ten_deep_at_most() -> None:
    act: dict[str, Any] = {"sub": "a10"}
    for depth in range(9, -1, -1):
        act = {"sub": f"a{depth}", "act": act}
    assert rs.actor_principals({"sub": "s", "act": act}) == [f"a{d}" for d in range(10)]


def test_the_local_decision_passes_roles_action_resource_and_actor_roles() -> None:
    policy = FakePolicy(roles={"ai.agent": {"api:role.b", "api:role.a"}})
    decision = rs.decide_locally(
        policy,
        {"sub": "human.u", "client_id": "ai.agent", "scp": ["docs-getter"]},
        domain="api",
        action="get",
        resource="api:docs",
    )
    assert policy.asked == [
        (["api:role.docs-getter"], "get", "api:docs", ("api:role.a", "api:role.b"))
    ]
    assert decision == rs.AccessDecision(True, "ALLOW", "why")


@pytest.mark.parametrize(
    "answer", [Decision(1, "ALLOW"), Decision(True, "DENY"), Decision(False, "ALLOW")]
)
def test_only_an_explicit_allow_is_allowed(answer: Decision) -> None:
    decision = rs.decide_locally(
        FakePolicy(answer=answer), {"sub": "u"}, domain="api", action="get", resource="x"
    )
    assert decision.allowed is False
    assert decision.effect == str(answer.effect)


# -------------------------------------------------------------------- maintenance calls


def test_a_maintenance_call_before_the_admin_key_exists_is_refused_by_name(tmp_path: Any) -> None:
    from lab.oauth.errors import InvalidToken, MissingToken

    missing = tmp_path / "user.athenz_admin.pub.pem"
    with pytest.raises(MissingToken):
        rs.verify_admin_request({}, missing, "http://docapi.test")
    with pytest.raises(InvalidToken) as refused:
        rs.verify_admin_request({"authorization": "Bearer a.b.c"}, missing, "http://docapi.test")
    assert refused.value.description == (
        "the admin public key user.athenz_admin.pub.pem is not provisioned yet"
    )
    assert not isinstance(refused.value, MissingToken)


def test_a_maintenance_call_needs_a_single_use_assertion_of_the_admin(tmp_path: Any) -> None:
    from lab.config import ADMIN_PRINCIPAL
    from lab.oauth.admin import make_admin_assertion
    from lab.oauth.errors import InvalidToken
    from lab.oauth.jose import SigningKey

    admin = SigningKey.load_or_create(tmp_path / "user.athenz_admin.pem")
    public = tmp_path / "user.athenz_admin.pub.pem"  # written beside the key
    audience = "http://docapi.test"
    good = make_admin_assertion(ADMIN_PRINCIPAL, admin, audience)
    headers = {"authorization": f"Bearer {good}"}
    assert rs.verify_admin_request(headers, public, audience)["sub"] == ADMIN_PRINCIPAL
    with pytest.raises(InvalidToken) as replayed:
        rs.verify_admin_request(headers, public, audience)
    assert replayed.value.description == "assertion has already been used"
    # Signed with the admin's key but naming another principal: not the admin.
    other = make_admin_assertion("ai.agent", admin, audience)
    with pytest.raises(InvalidToken) as refused:
        rs.verify_admin_request({"authorization": f"Bearer {other}"}, public, audience)
    assert refused.value.description == f"only {ADMIN_PRINCIPAL} may call this endpoint"


def test_the_caller_summary_shows_who_and_never_the_token() -> None:
    claims = {
        "sub": "human.u",
        "client_id": "ai.agent",
        "act": {"sub": "mcp.m"},
        "aud": "api",
        "scope": "docs-getter",
        "jti": "j1",
        "exp": 1,
        "secret": "x",
    }
    assert rs.caller_summary(claims) == {
        "sub": "human.u",
        "client_id": "ai.agent",
        "act": {"sub": "mcp.m"},
        "aud": "api",
        "scope": "docs-getter",
        "jti": "j1",
    }


# -------------------------------------------------------------------- exact boundaries


def test_a_copy_is_unusable_from_the_instant_it_expires() -> None:
    cached = rs._Cached(FakePolicy(expires_at=1000.0), '"v"', 0.0)  # type: ignore[arg-type]
    assert cached.usable(999.999) is True
    assert cached.usable(1000.0) is False
    assert rs._Cached(None, None, 0.0).usable(1e12) is True  # no such domain: nothing expires


def test_a_copy_is_stale_exactly_refresh_s_after_its_fetch(
    pdp: Pdp, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [5000.0]
    monkeypatch.setattr(rs.time, "monotonic", lambda: now[0])
    c = cache(refresh_s=10.0)
    c.current()
    now[0] = 5009.5
    c.current()
    assert len(pdp.calls) == 1
    now[0] = 5010.0
    c.current()
    assert len(pdp.calls) == 2


def test_a_caller_that_gets_the_refresh_right_after_another_does_not_refetch(pdp: Pdp) -> None:
    policy = FakePolicy()
    c = cache(policy, refresh_s=60.0)
    c.current()
    assert c._try_refresh() is c._cached  # e.g. a second caller that was just behind the first
    assert len(pdp.calls) == 1


def test_health_after_a_success_then_expiry_is_not_an_error(pdp: Pdp) -> None:
    policy = FakePolicy()
    c = cache(policy)
    c.current()
    policy.expires_at = time.time() - 1
    assert c.health() == (True, "policy data not fetched yet")


def test_a_failed_refresh_with_a_good_copy_serves_it_and_says_so(
    pdp: Pdp, caplog: pytest.LogCaptureFixture
) -> None:
    policy = FakePolicy()
    c = cache(policy, refresh_s=0.0)
    c.current()
    pdp.status = 502
    with caplog.at_level("WARNING", logger="lab.oauth.resource_server"):
        assert c.current() is policy
    assert caplog.messages == [
        "policy refresh failed, serving the last good copy: "
        "the PDP answered 502 for the signed policy data of api"
    ]
    assert c.health() == (True, "policy data cached")


# -------------------------------------------------------------------- access tokens


ISSUER = "http://pdp.test/zts/v1"


def _access_token(**changes: Any) -> tuple[str, Any]:
    from lab.oauth.jose import SigningKey, generate_private_key, now, static_key_resolver

    key = SigningKey(generate_private_key(), "pdp-1")
    t = now()
    claims = {"iss": ISSUER, "sub": "human.u", "aud": "api", "iat": t, "exp": t + 60}
    typ = changes.pop("typ", "at+jwt")
    claims.update(changes)
    claims = {k: v for k, v in claims.items() if v is not None}
    token = key.sign(claims, typ=typ)
    return token, static_key_resolver({"pdp-1": key.key.public_key()})


def _refused(token: str, resolver: Any, audience: Any = "api") -> str:
    from lab.oauth.errors import InvalidToken

    with pytest.raises(InvalidToken) as refused:
        rs.verify_access_token(token, resolver, issuer=ISSUER, audience=audience)
    return refused.value.description


def test_an_access_token_is_checked_for_typ_issuer_subject_and_audience(
    caplog: pytest.LogCaptureFixture,
) -> None:
    token, resolver = _access_token()
    assert (
        rs.verify_access_token(token, resolver, issuer=ISSUER, audience="api")["sub"] == "human.u"
    )
    # An ID token or any other JWT signed by the same key is not an access token (RFC 9068 §4).
    assert _refused(*_access_token(typ="JWT")) == (
        "token type 'JWT' is not accepted here (expected 'at+jwt')"
    )
    assert _refused(*_access_token(iss="http://elsewhere")) == "token issuer is not accepted here"
    assert _refused(*_access_token(sub=None)) == "token is missing the 'sub' claim"
    token, resolver = _access_token(aud="mcp")
    assert _refused(token, resolver) == "token audience is not accepted here (accepted: api)"
    with caplog.at_level("INFO", logger="lab.oauth.resource_server"):
        assert _refused(token, resolver, ["api", "docs"]) == (
            "token audience is not accepted here (accepted: api, docs)"
        )
    from lab.oauth.jose import token_fingerprint

    assert caplog.messages == [
        f"access token {token_fingerprint(token)} refused: "
        "token audience is not accepted here (accepted: api, docs)"
    ]
