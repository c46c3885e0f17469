"""The token keeper and the proxy against the whole lab in-process (tests/agent's fixture)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from lab.agent.signin import browser_like, parse_login_form
from lab.config import AGENT_PRINCIPAL, LEARNER_PRINCIPAL
from lab.gateway.chain import BROWSER, HEADLESS, HeldToken, SignInPlan
from lab.gateway.launch import Gateway
from lab.gateway.links import ChainBroken
from lab.oauth.jose import unverified_claims
from tests.agent.conftest import running_lab  # noqa: F401 - the fixture, reused
from tests.agent.labsetup import RunningLab


class Clock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def gateway(running_lab: RunningLab, clock: Clock) -> Iterator[Gateway]:  # noqa: F811
    created = Gateway.create(
        running_lab.settings, running_lab.endpoints, SignInPlan(mode=HEADLESS), margin_s=60
    )
    created.keeper.clock = clock
    try:
        yield created
    finally:
        created.close()


def sign_ins(gateway: Gateway) -> int:
    gateway.hops.flush()
    return sum(
        1
        for hop in gateway.hops.hops
        if hop.url.endswith("/protocol/openid-connect/token") and hop.status == 200
    )


#: Roles that give ai.agent zts.jag_exchange in tests/agent/labsetup.py (old and tutorial names).
JAG_EXCHANGE_ROLES = (("api", "token-exchangable-ai-agents"), ("api", "docs-getter-jag-exchanger"))


def remove_agent_delegation(lab: RunningLab) -> None:
    """Take zts.jag_exchange on api:role.docs-getter away from ai.agent (step 11 undone)."""
    for domain, role in JAG_EXCHANGE_ROLES:
        try:
            lab.admin.remove_member(domain, role, AGENT_PRINCIPAL)
        except AssertionError:  # Admin.call asserts success: this lab names the role otherwise
            continue
        return
    pytest.fail(f"none of {JAG_EXCHANGE_ROLES} holds {AGENT_PRINCIPAL} in this lab's setup")


def test_a_fresh_access_token_is_reused(gateway: Gateway) -> None:
    first = gateway.keeper.access_token()
    assert gateway.keeper.access_token() == first
    assert gateway.keeper.renewals == 1 and sign_ins(gateway) == 1
    claims = unverified_claims(first)
    assert (claims["sub"], claims["client_id"]) == (LEARNER_PRINCIPAL, AGENT_PRINCIPAL)


def test_tokens_are_renewed_before_they_expire(gateway: Gateway, clock: Clock) -> None:
    first = gateway.keeper.access_token()
    expires_at = unverified_claims(first)["exp"]
    clock.offset = expires_at - 30 - time.time()  # 30 s left, inside the 60 s margin
    second = gateway.keeper.access_token()
    assert second != first
    assert unverified_claims(second)["jti"] != unverified_claims(first)["jti"]
    assert gateway.keeper.renewals == 2
    assert sign_ins(gateway) == 2  # the ID token was about to expire as well


def test_margin_never_exceeds_half_a_token_lifetime() -> None:
    short = HeldToken("t", issued_at=0.0, expires_at=100.0)
    assert short.fresh(now=49.0, margin_s=600) and not short.fresh(now=51.0, margin_s=600)


def test_wrong_password_breaks_the_chain_at_sign_in(running_lab: RunningLab) -> None:  # noqa: F811
    plan = SignInPlan(mode=HEADLESS, password="wrong")
    gateway = Gateway.create(running_lab.settings, running_lab.endpoints, plan)
    try:
        with pytest.raises(ChainBroken) as broken:
            gateway.keeper.access_token()
    finally:
        gateway.close()
    assert broken.value.link == "sign_in"
    assert "sign-in at the IdP" in broken.value.explain()


async def test_missing_delegation_is_a_tool_error_naming_f3(
    gateway: Gateway,
    running_lab: RunningLab,  # noqa: F811
) -> None:
    remove_agent_delegation(running_lab)
    result = await gateway.proxy.call_tool("list_docs", {}, "test-client")
    assert result.is_error
    text = result.content[0].text
    assert "the ID-JAG request at the PDP" in text
    assert "(F3: delegation not granted)" in text
    assert "Principal not authorized for token exchange for the requested role" in text


async def test_a_401_from_the_mcp_server_renews_the_token_once(
    gateway: Gateway, clock: Clock
) -> None:
    gateway.keeper._access = HeldToken("not-a-valid-token", time.time(), time.time() + 3600)
    result = await gateway.proxy.call_tool("list_docs", {}, "test-client")
    assert not result.is_error, result.content
    assert [doc["id"] for doc in result.structured_content["docs"]] == [1, 2]
    assert gateway.keeper.renewals == 1
    statuses = [h.status for h in gateway.hops.hops if h.hop == "mcp"]
    assert 401 in statuses and statuses[-1] == 200
    assert gateway.agent.recorder.exchanges == []  # logged once, then let go


async def test_tools_are_listed_with_the_servers_annotations(gateway: Gateway) -> None:
    tools = {tool.name: tool for tool in await gateway.proxy.list_tools("test-client")}
    assert tools["list_docs"].annotations.read_only_hint is True
    assert tools["delete_doc"].annotations.destructive_hint is True
    assert tools["get_doc"].input_schema["required"] == ["id"]


def test_chain_every_call_asks_for_a_new_id_jag_each_time(
    running_lab: RunningLab,  # noqa: F811
) -> None:
    plan = SignInPlan(mode=HEADLESS)
    gateway = Gateway.create(running_lab.settings, running_lab.endpoints, plan, reuse=False)
    try:
        first, second = gateway.keeper.access_token(), gateway.keeper.access_token()
    finally:
        gateway.close()
    assert first != second and gateway.keeper.renewals == 2
    assert sign_ins(gateway) == 1  # the ID token is still reused


def test_browser_sign_in_goes_through_the_loopback_redirect(
    running_lab: RunningLab,  # noqa: F811
) -> None:
    opened: list[str] = []

    def person_at_a_browser(url: str) -> None:
        """The user's browser reduced to HTTP: show the login page, submit it, follow on."""
        opened.append(url)
        with browser_like(httpx.Client(follow_redirects=True)) as browser:
            page = browser.get(url)
            form = parse_login_form(page.text, str(page.url))
            browser.post(
                form.action,
                data={**form.fields, "username": "idjag-learner", "password": "password"},
            )

    plan = SignInPlan(mode=BROWSER, opener=person_at_a_browser, timeout_s=10)
    gateway = Gateway.create(running_lab.settings, running_lab.endpoints, plan)
    try:
        token = gateway.keeper.access_token()
    finally:
        gateway.close()
    assert len(opened) == 1 and "code_challenge_method=S256" in opened[0]
    redirect = parse_qs(urlsplit(opened[0]).query)["redirect_uri"][0]
    assert urlsplit(redirect).hostname == "127.0.0.1"  # RFC 8252 §7.3 loopback redirect
    assert unverified_claims(token)["sub"] == LEARNER_PRINCIPAL
