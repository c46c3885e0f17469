"""What every ZTS grant shares (``lab/pdp/zts/grants/base.py``), in process.

The scope grammar, partial grants, ``D:domain`` spelled out, ``scp`` short names, the
``expires_in`` cap, the access token's claims and the RFC 8707 resource lookup, each pinned
with a stand-in PDP (only what these functions read of ``lab.pdp.core.Pdp``): the grants'
server tests run them in threads that mutmut's per-test map does not follow.
"""

from __future__ import annotations

from typing import Any

import jwt
import pytest

from lab.oauth.errors import InvalidRequest, InvalidScope, InvalidTarget
from lab.oauth.jose import SigningKey, generate_private_key
from lab.pdp.zts.grants.base import (
    DEFAULT_LIFETIME_S,
    MAX_LIFETIME_S,
    MAX_SCOPE_ITEMS,
    MAX_SCOPE_LENGTH,
    Grant,
    Scope,
    TokenRequest,
    bearer_response,
    explicit_scope,
    granted_roles,
    lifetime,
    mint_access_token,
    not_included,
    parse_scope,
    registered_resource,
    role_domain,
    short_names,
)

ISSUER = "http://127.0.0.1:1/zts/v1"
KEY = SigningKey(key=generate_private_key("ES256"), kid="pdp-1")


class Services:
    def __init__(self, services: dict[str, dict[str, Any]]) -> None:
        self.services = services

    def service_by_endpoint(self, url: str) -> dict[str, Any] | None:
        return self.services.get(url)


class StandInPdp:
    issuer = ISSUER
    signing_key = KEY

    def __init__(
        self,
        held: dict[str, set[str]] | None = None,
        services: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self.held = held or {}
        self.asked: list[tuple[str, str]] = []
        self.store = Services(services or {})

    def roles_of(self, domain: str, principal: str) -> list[str]:
        self.asked.append((domain, principal))
        return list(self.held.get(domain, set()))


def _request(**form: str) -> TokenRequest:
    return TokenRequest(form=dict(form), client="ai.agent", correlation_id="c-1")


# --------------------------------------------------------------------------- the request


def test_an_empty_parameter_is_absent_and_a_required_one_is_refused_by_name() -> None:
    request = _request(scope="api:role.a", audience="")
    assert request.param("scope") == "api:role.a"
    assert request.param("audience") is None and request.param("resource") is None
    assert request.require("scope", "no scope") == "api:role.a"
    with pytest.raises(InvalidRequest) as refused:
        request.require("audience", "Invalid request: no audience")
    assert refused.value.description == "missing required parameter audience"
    assert refused.value.body()["message"] == "Invalid request: no audience"


def test_a_grant_keeps_the_pdp_it_decides_with() -> None:
    pdp = StandInPdp()
    assert Grant(pdp).pdp is pdp  # type: ignore[arg-type]


# --------------------------------------------------------------------------- scope grammar


def test_a_scope_lists_its_domains_in_order_of_first_mention() -> None:
    scope = Scope(roles=("api:role.a", "mcp:role.b", "api:role.c"), all_domains=("mcp", "zz"))
    assert scope.domains == ("api", "mcp", "zz")
    assert scope.domain == "api"
    assert scope.text() == "api:role.a mcp:role.b api:role.c mcp:domain zz:domain"
    assert Scope(roles=(), all_domains=("zz", "mcp", "zz")).domains == ("zz", "mcp")
    assert role_domain("api.sub:role.x") == "api.sub"


@pytest.mark.parametrize("scope", [None, "", "   "])
def test_a_missing_scope_is_invalid_request(scope: str | None) -> None:
    with pytest.raises(InvalidRequest) as refused:
        parse_scope(scope)
    assert refused.value.description == "missing required parameter scope"
    assert refused.value.body()["message"] == "Invalid request: no scope provided"


def _too_long(scope: str) -> None:
    with pytest.raises(InvalidScope) as refused:
        parse_scope(scope, multi_domain=True)
    assert refused.value.description == (
        f"scope is longer than {MAX_SCOPE_LENGTH} characters or {MAX_SCOPE_ITEMS} values"
    )
    assert refused.value.body()["message"] == "Invalid scope: too long"


def test_a_scope_is_bounded_in_length_and_in_values() -> None:
    at_length = "api:role." + "a" * (MAX_SCOPE_LENGTH - len("api:role."))
    assert parse_scope(at_length).roles == (at_length,)
    _too_long(at_length + "a")
    at_items = " ".join(f"api:role.r{i}" for i in range(MAX_SCOPE_ITEMS))
    assert len(parse_scope(at_items).roles) == MAX_SCOPE_ITEMS
    _too_long(at_items + " api:role.one-more")


def test_scope_values_are_lower_cased_deduplicated_and_openid_ignored() -> None:
    scope = parse_scope("openid API:Role.A api:role.a Api:Domain api:domain api:role.b")
    assert scope == Scope(roles=("api:role.a", "api:role.b"), all_domains=("api",))


def test_a_bare_role_is_read_in_the_default_domain_only_when_one_is_known() -> None:
    assert parse_scope("Docs-Getter", default_domain="API").roles == ("api:role.docs-getter",)
    with pytest.raises(InvalidScope) as refused:
        parse_scope("docs-getter")
    assert refused.value.description == "invalid scope value 'docs-getter'"
    assert refused.value.body()["message"] == "Invalid scope: docs-getter"


@pytest.mark.parametrize(
    ("value", "default_domain"),
    [
        ("api:role.", None),  # a named role must have a name: not "api:domain"
        ("api:role.a/b", None),
        ("-api:role.a", None),
        (":domain", None),
        ("a/b:domain", None),
        ("docs/getter", "api"),
        ("api:role.a:domain", None),
    ],
)
def test_a_malformed_scope_value_is_invalid_scope_naming_it(
    value: str, default_domain: str | None
) -> None:
    with pytest.raises(InvalidScope) as refused:
        parse_scope(value, default_domain=default_domain)
    assert refused.value.description == f"invalid scope value {value!r}"
    assert refused.value.body()["message"] == f"Invalid scope: {value}"
    assert refused.value.status_code == 400


def test_a_scope_of_openid_alone_names_no_domain() -> None:
    with pytest.raises(InvalidScope) as refused:
        parse_scope("openid")
    assert refused.value.description == "scope names no domain"
    assert refused.value.body()["message"] == "Scope value does not contain any roles"


def test_several_domains_need_multi_domain() -> None:
    with pytest.raises(InvalidScope) as refused:
        parse_scope("api:role.a mcp:domain")
    assert refused.value.description == (
        "only one domain per scope (several only for a registered resource, RFC 8707)"
    )
    assert refused.value.body()["message"] == "Multiple domains in scope"
    scope = parse_scope("api:role.a mcp:domain", multi_domain=True)
    assert scope.domains == ("api", "mcp")


def test_not_included_is_athenzs_403() -> None:
    refusal = not_included("human.x", "api")
    assert refusal.status_code == 403
    assert refusal.body()["error"] == "invalid_scope"
    assert refusal.body()["message"] == (
        "postaccesstokenrequest: principal human.x is not included in the requested role(s) "
        "in domain api"
    )


# --------------------------------------------------------------------------- what is granted

HELD = {
    "api": {"api:role.a", "api:role.c"},
    "mcp": {"mcp:role.z", "mcp:role.y"},
}


def test_only_the_named_roles_held_are_granted_and_a_whole_domain_gives_all_held_sorted() -> None:
    pdp = StandInPdp(HELD)
    scope = Scope(roles=("api:role.b", "api:role.a", "mcp:role.y"), all_domains=("mcp",))
    granted = granted_roles(pdp, "human.x", scope)  # type: ignore[arg-type]
    assert granted == ["api:role.a", "mcp:role.y", "mcp:role.z"]
    assert pdp.asked == [("api", "human.x"), ("mcp", "human.x")]


def test_a_scope_without_whole_domains_is_explicit_already() -> None:
    scope = Scope(roles=("api:role.a",))
    pdp = StandInPdp(HELD)
    assert explicit_scope(pdp, "human.x", scope) is scope  # type: ignore[arg-type]
    assert pdp.asked == []


def test_a_whole_domain_is_spelled_out_as_the_roles_held_there() -> None:
    pdp = StandInPdp(HELD)
    scope = Scope(roles=("mcp:role.z", "api:role.b"), all_domains=("mcp", "api"))
    explicit = explicit_scope(pdp, "human.x", scope)  # type: ignore[arg-type]
    assert explicit == Scope(
        roles=("mcp:role.z", "api:role.b", "mcp:role.y", "api:role.a", "api:role.c")
    )
    assert pdp.asked == [("mcp", "human.x"), ("api", "human.x")]


def test_a_whole_domain_where_nothing_is_held_is_not_included() -> None:
    pdp = StandInPdp({})
    scope = Scope(roles=(), all_domains=("mcp", "api"))
    with pytest.raises(InvalidScope) as refused:
        explicit_scope(pdp, "human.x", scope)  # type: ignore[arg-type]
    assert refused.value.status_code == 403
    assert refused.value.description == (
        "principal human.x is not included in the requested role(s) in domain mcp"
    )


def test_scp_names_the_tokens_own_domain_by_short_name_only() -> None:
    roles = ["mcp:role.a", "api:role.b", "mcpx:role.c", "mcp.sub:role.d"]
    assert short_names(roles, "mcp") == ["a", "api:role.b", "mcpx:role.c", "mcp.sub:role.d"]


# --------------------------------------------------------------------------- lifetime


@pytest.mark.parametrize(
    ("expires_in", "cap", "expected"),
    [
        (None, MAX_LIFETIME_S, DEFAULT_LIFETIME_S),
        ("", MAX_LIFETIME_S, DEFAULT_LIFETIME_S),
        (None, 600, 600),
        ("120", MAX_LIFETIME_S, 120),
        ("1", MAX_LIFETIME_S, 1),
        ("9000", MAX_LIFETIME_S, MAX_LIFETIME_S),
        ("601", 600, 600),
        ("000000000042", MAX_LIFETIME_S, 42),
    ],
)
def test_the_lifetime_is_the_asked_expires_in_capped(
    expires_in: str | None, cap: int, expected: int
) -> None:
    request = _request() if expires_in is None else _request(expires_in=expires_in)
    assert lifetime(request, cap) == expected


def test_the_default_cap_is_the_maximum_lifetime() -> None:
    assert lifetime(_request(expires_in="999999")) == MAX_LIFETIME_S


@pytest.mark.parametrize("expires_in", ["-5", "1e3", "12.5", "١٢", " 12", "0000000000001"])
def test_an_expires_in_that_is_no_short_decimal_is_invalid_request(expires_in: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        lifetime(_request(expires_in=expires_in))
    assert refused.value.description == "expires_in must be a number of seconds"


def test_an_expires_in_of_zero_is_invalid_request() -> None:
    with pytest.raises(InvalidRequest) as refused:
        lifetime(_request(expires_in="0"))
    assert refused.value.description == "expires_in must be positive"


# --------------------------------------------------------------------------- the token


def test_an_access_token_has_athenzs_claims_signed_as_at_jwt() -> None:
    pdp = StandInPdp()
    token, claims = mint_access_token(
        pdp,  # type: ignore[arg-type]
        subject="human.x",
        client="ai.agent",
        audience="http://127.0.0.1:1/mcp",
        domain="mcp",
        roles=["mcp:role.a", "api:role.b"],
        lifetime_s=90,
    )
    header = jwt.get_unverified_header(token)
    assert (header["typ"], header["kid"], header["alg"]) == ("at+jwt", "pdp-1", "ES256")
    verified = jwt.decode(
        token, KEY.key.public_key(), algorithms=["ES256"], audience="http://127.0.0.1:1/mcp"
    )
    assert verified == claims
    assert len(claims["jti"]) >= 16
    assert claims == {
        "ver": 1,
        "iss": ISSUER,
        "aud": "http://127.0.0.1:1/mcp",
        "sub": "human.x",
        "client_id": "ai.agent",
        "uid": "human.x",
        "scp": ["a", "api:role.b"],
        "scope": "a api:role.b",
        "jti": claims["jti"],
        "iat": claims["iat"],
        "auth_time": claims["iat"],
        "exp": claims["iat"] + 90,
    }
    _, again = mint_access_token(
        pdp,  # type: ignore[arg-type]
        subject="human.x",
        client="ai.agent",
        audience="api",
        domain="api",
        roles=[],
        lifetime_s=90,
        act={"sub": "ai.agent"},
        uid="ai.agent",
    )
    assert again["jti"] != claims["jti"]
    assert (again["act"], again["uid"], again["scp"], again["scope"]) == (
        {"sub": "ai.agent"},
        "ai.agent",
        [],
        "",
    )


def test_the_bearer_response_states_the_lifetime_and_the_granted_scope() -> None:
    claims = {"iat": 1000, "exp": 1090}
    assert bearer_response("t", claims, ["mcp:role.a", "api:role.b"]) == {
        "access_token": "t",
        "token_type": "Bearer",
        "expires_in": 90,
        "scope": "mcp:role.a api:role.b",
    }


def test_a_registered_resource_names_its_services_domain_and_url() -> None:
    url = "http://127.0.0.1:1/mcp"
    service = {"name": "mcp.tools.api-mcp", "providerEndpoint": url}
    pdp = StandInPdp(services={url: service})
    assert registered_resource(pdp, url) == ("mcp.tools", url)  # type: ignore[arg-type]
    with pytest.raises(InvalidTarget) as refused:
        registered_resource(pdp, url + "/")  # type: ignore[arg-type]
    assert refused.value.description == (
        f"resource {url}/ is not a registered resource "
        "(no service registered it as its providerEndpoint)"
    )
    assert refused.value.body()["message"] == f"Invalid resource: {url}/"
