"""Tests written for mutants of ``lab/pdp/zts/grants/token_exchange.py`` (docs/dev/mutation.md):
the token-type refusals, the default scope of an access-token exchange, the roles a subject
token carries, the ``act`` chain, the remaining lifetime, the ID-JAG's audience and claims, and
what each exchange writes into the audit record.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import jwt
import pytest

from lab.config import ADMIN_PRINCIPAL
from lab.oauth.jose import SigningKey, new_jti, now, unverified_claims
from lab.oauth.tokens import (
    GRANT_CLIENT_CREDENTIALS,
    GRANT_TOKEN_EXCHANGE,
    TOKEN_TYPE_ACCESS_TOKEN,
    TOKEN_TYPE_ID_JAG,
    TOKEN_TYPE_ID_TOKEN,
    TYP_ACCESS_TOKEN,
)
from lab.pdp.zts.grants import token_exchange
from tests.pdp.conftest import AGENT, LEARNER, MCP, PdpLab


def _user_token(lab: PdpLab) -> str:
    response = lab.token(
        {
            "grant_type": GRANT_CLIENT_CREDENTIALS,
            "scope": "mcp:role.mcp-accessor api:role.docs-getter",
            "resource": lab.settings.endpoints.mcp,
        },
        client=LEARNER,
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def _subject_token(lab: PdpLab, typ: str = TYP_ACCESS_TOKEN, **claims: Any) -> str:
    """An access token as the PDP signs them, with the claims given (None drops one)."""
    key = SigningKey.load_or_create(lab.settings.key_file("pdp-signing"))
    issued = now()
    body: dict[str, Any] = {
        "iss": lab.zts,
        "sub": LEARNER,
        "aud": "mcp",
        "client_id": LEARNER,
        "jti": new_jti(),
        "iat": issued,
        "exp": issued + 600,
        "scp": ["mcp-accessor", "api:role.docs-getter"],
    }
    body.update(claims)
    return key.sign({k: v for k, v in body.items() if v is not None}, typ=typ)


def _error(response: httpx.Response, status: int, error: str) -> tuple[str, str]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error
    assert "access_token" not in body
    return str(body["error_description"]), str(body["message"])


# ---------------------------------------------------------------- token types


def test_each_unsupported_token_type_is_refused_by_name(world: PdpLab) -> None:
    token = _user_token(world)
    as_id_jag = world.exchange(token, requested_token_type=TOKEN_TYPE_ID_JAG)
    assert _error(as_id_jag, 400, "invalid_request") == (
        f"an ID-JAG is issued only for subject_token_type {TOKEN_TYPE_ID_TOKEN}",
        f"Invalid subject token type: {TOKEN_TYPE_ACCESS_TOKEN}",
    )
    other = world.exchange(token, requested_token_type="urn:example:other")
    assert _error(other, 400, "invalid_request") == (
        "unsupported requested_token_type urn:example:other",
        "Invalid requested token type: urn:example:other",
    )
    id_token_in = world.exchange(token, subject_token_type=TOKEN_TYPE_ID_TOKEN)
    assert _error(id_token_in, 400, "invalid_request") == (
        f"unsupported subject_token_type {TOKEN_TYPE_ID_TOKEN}",
        f"Invalid subject token type: {TOKEN_TYPE_ID_TOKEN}",
    )
    # Asking for an access token by name is the same as not asking.
    named = world.exchange(token, requested_token_type=TOKEN_TYPE_ACCESS_TOKEN)
    assert named.status_code == 200, named.text


def test_a_missing_subject_token_or_type_is_refused_in_athenz_words(world: PdpLab) -> None:
    form = {"grant_type": GRANT_TOKEN_EXCHANGE, "scope": "api:role.docs-getter"}
    no_token = world.token({**form, "subject_token_type": TOKEN_TYPE_ACCESS_TOKEN}, client=MCP)
    assert _error(no_token, 400, "invalid_request")[1] == (
        "Invalid request: no subject token provided"
    )
    no_type = world.token({**form, "subject_token": _user_token(world)}, client=MCP)
    assert _error(no_type, 400, "invalid_request")[1] == "Invalid subject token type: none"


# ---------------------------------------------------------------- access token -> access token


def test_a_forged_subject_token_is_refused_in_both_dialects(world: PdpLab) -> None:
    header, payload, signature = _user_token(world).split(".")
    description, message = _error(
        world.exchange(f"{header}.{payload}.{signature[:-4]}AAAA"), 400, "invalid_grant"
    )
    assert description.startswith("invalid subject token: ")
    assert message.startswith("Invalid subject token: ")
    assert description.removeprefix("invalid subject token: ") == message.removeprefix(
        "Invalid subject token: "
    )


def test_the_exchanged_token_names_the_exchanger_alone_for_a_users_own_token(
    world: PdpLab,
) -> None:
    response = world.exchange(_user_token(world))
    assert response.status_code == 200, response.text
    claims = unverified_claims(response.json()["access_token"])
    assert claims["act"] == {"sub": MCP}  # the user's own token: client_id == sub, no prior actor
    assert claims["uid"] == MCP
    assert response.json()["issued_token_type"] == TOKEN_TYPE_ACCESS_TOKEN


def test_prior_actors_nest_inside_the_new_act(world: PdpLab) -> None:
    prior = {"sub": AGENT, "act": {"sub": "ai.planner"}}
    response = world.exchange(_subject_token(world, act=prior, client_id=AGENT))
    assert response.status_code == 200, response.text
    assert unverified_claims(response.json()["access_token"])["act"] == {"sub": MCP, "act": prior}


def test_a_token_obtained_by_another_client_names_that_client_as_prior_actor(
    world: PdpLab,
) -> None:
    response = world.exchange(_subject_token(world, client_id=AGENT))
    assert response.status_code == 200, response.text
    assert unverified_claims(response.json()["access_token"])["act"] == {
        "sub": MCP,
        "act": {"sub": AGENT},
    }


def test_roles_carried_in_a_scope_string_count_and_are_case_folded(world: PdpLab) -> None:
    # No scp: the space-separated scope claim; a short name is the source domain's role.
    token = _subject_token(world, scp=None, scope="MCP-Accessor API:role.Docs-Getter")
    response = world.exchange(token)
    assert response.status_code == 200, response.text
    assert unverified_claims(response.json()["access_token"])["scp"] == ["docs-getter"]


def test_without_scope_the_audience_is_read_case_insensitively(world: PdpLab) -> None:
    response = world.exchange(_user_token(world), scope="", audience="API")
    assert response.status_code == 200, response.text
    claims = unverified_claims(response.json()["access_token"])
    assert claims["aud"] == "api" and claims["scp"] == ["docs-getter"]


def test_without_scope_an_audience_the_token_has_no_role_in_is_invalid_scope(
    world: PdpLab,
) -> None:
    response = world.exchange(_user_token(world), scope="", audience="human")
    assert _error(response, 400, "invalid_scope") == (
        "the subject token carries no role of domain human",
        "Invalid scope for token exchange",
    )


def test_a_scope_outside_the_audience_is_invalid_scope(world: PdpLab) -> None:
    response = world.exchange(_user_token(world), scope="mcp:role.mcp-accessor", audience="api")
    assert _error(response, 400, "invalid_scope") == (
        "scope domain must equal audience",
        "Invalid scope for token exchange",
    )


def test_widening_is_refused_naming_the_role_not_carried(world: PdpLab) -> None:
    world.role("api", "docs-poster", [LEARNER])
    response = world.exchange(_user_token(world), scope="api:role.docs-poster")
    assert _error(response, 400, "invalid_scope")[0] == (
        "the subject token does not carry api:role.docs-poster; an exchange may only narrow"
    )
    two = world.exchange(_user_token(world), scope="api:role.docs-poster api:role.docs-deleter")
    assert _error(two, 400, "invalid_scope")[0] == (
        "the subject token does not carry api:role.docs-deleter, api:role.docs-poster; "
        "an exchange may only narrow"
    )
    whole = world.exchange(_user_token(world), scope="api:domain")
    assert _error(whole, 400, "invalid_scope")[0] == (
        "the subject token does not carry api:domain; an exchange may only narrow"
    )


def test_a_subject_token_for_an_unknown_audience_is_invalid_grant(world: PdpLab) -> None:
    token = _subject_token(world, aud="http://127.0.0.1:1/nowhere")
    assert _error(world.exchange(token), 400, "invalid_grant") == (
        "invalid subject token: audience 'http://127.0.0.1:1/nowhere' is not a known domain "
        "or registered resource",
        "Invalid subject token: audience 'http://127.0.0.1:1/nowhere' is not a known domain "
        "or registered resource",
    )
    listed = world.exchange(_subject_token(world, aud=["http://127.0.0.1:1/nowhere", "mcp"]))
    assert listed.status_code == 200, listed.text


def test_the_exchanged_token_never_outlives_its_subject_token(world: PdpLab) -> None:
    response = world.exchange(_subject_token(world, exp=now() + 100))
    assert response.status_code == 200, response.text
    assert 90 <= response.json()["expires_in"] <= 100
    shorter = world.exchange(_subject_token(world), expires_in="50")
    assert shorter.status_code == 200 and shorter.json()["expires_in"] == 50


def test_a_subject_token_past_its_exp_within_the_leeway_gives_nothing(world: PdpLab) -> None:
    response = world.exchange(_subject_token(world, exp=now() - 5))
    assert _error(response, 400, "invalid_grant") == (
        "invalid subject token: subject token has expired",
        "Invalid subject token: subject token has expired",
    )


def test_a_subject_token_with_one_second_left_gives_one_and_with_none_nothing(
    world: PdpLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The grant's clock is pinned relative to exp (pyjwt's own check uses the real clock).
    exp = now() + 100
    monkeypatch.setattr(token_exchange, "now", lambda: exp - 1)
    response = world.exchange(_subject_token(world, exp=exp))
    assert response.status_code == 200, response.text
    assert response.json()["expires_in"] == 1
    monkeypatch.setattr(token_exchange, "now", lambda: exp)
    assert _error(world.exchange(_subject_token(world, exp=exp)), 400, "invalid_grant")[1] == (
        "Invalid subject token: subject token has expired"
    )


def test_an_exchange_is_audited_with_the_new_jti_and_both_permissions(world: PdpLab) -> None:
    world.role("api", "docs-poster", [LEARNER])
    world.allow(
        "api",
        "poster-exchange",
        "docs-getter-exchanger",
        "zts.token_target_exchange",
        "api:mcp:role.docs-poster",
    )
    token = _subject_token(
        world, scp=["mcp-accessor", "api:role.docs-getter", "api:role.docs-poster"]
    )
    response = world.exchange(token, scope="api:role.docs-getter api:role.docs-poster")
    assert response.status_code == 200, response.text
    record = world.audit()[-1]
    assert record["jti"] == unverified_claims(response.json()["access_token"])["jti"]
    assert record["reason"] == (
        f"{MCP} holds zts.token_source_exchange and zts.token_target_exchange; "
        f"{LEARNER} holds api:role.docs-getter, api:role.docs-poster"
    )


# ---------------------------------------------------------------- ID token -> ID-JAG


def test_the_id_jag_audience_may_be_the_issuer_with_a_slash_or_the_token_endpoint(
    world: PdpLab,
) -> None:
    for audience in (world.zts + "/", world.zts + "/oauth2/token"):
        response = world.request_id_jag(world.id_token(), audience=audience)
        assert response.status_code == 200, (audience, response.text)
    # Only slashes are stripped: an issuer with a letter appended is another audience.
    for audience in (world.zts + "X", world.zts + "/oauth2/tokenX"):
        response = world.request_id_jag(world.id_token(), audience=audience)
        assert _error(response, 400, "invalid_target")[1] == f"Invalid audience: {audience}"
    other = world.request_id_jag(world.id_token(), audience="http://127.0.0.1:1/zts/v1")
    assert _error(other, 400, "invalid_target") == (
        f"audience must be this authorization server ({world.zts})",
        "Invalid audience: http://127.0.0.1:1/zts/v1",
    )


def test_an_id_token_addressed_to_the_client_in_a_list_or_other_case_is_accepted(
    world: PdpLab,
) -> None:
    listed = world.request_id_jag(world.id_token(aud=["someone-else", AGENT.upper()]))
    assert listed.status_code == 200, listed.text
    other = world.request_id_jag(world.id_token(aud="someone-else"))
    assert _error(other, 400, "invalid_grant") == (
        f"ID token audience 'someone-else' is not the authenticated client {AGENT}",
        "Invalid subject token audience",
    )


def test_an_unreadable_or_unmapped_id_token_is_refused_by_name(world: PdpLab) -> None:
    garbled = world.request_id_jag("not-a-jwt")
    assert _error(garbled, 400, "invalid_grant") == (
        "invalid subject token: malformed token: Not enough segments",
        "Invalid subject token: malformed token: Not enough segments",
    )
    unmapped = world.request_id_jag(world.id_token(username="\u212aelvin"))
    assert _error(unmapped, 400, "invalid_grant") == (
        "ID token maps to no principal",
        "Invalid subject token - missing subject",
    )


def test_a_scope_that_expands_to_no_roles_is_refused_as_not_included(world: PdpLab) -> None:
    # explicit_scope refuses a D:domain that spells out to nothing, so the grant's own
    # "scope names no roles" guard after it is never reached (docs/dev/mutation.md).
    response = world.request_id_jag(world.id_token(), scope="ai:domain")
    assert _error(response, 403, "invalid_scope")[1] == (
        f"postaccesstokenrequest: principal {LEARNER} is not included in the requested "
        "role(s) in domain ai"
    )
    record = world.audit()[-1]
    assert (record["subject"], record["resource"]) == (LEARNER, "ai:domain")


def test_the_id_jag_carries_the_id_tokens_auth_time_or_its_iat(world: PdpLab) -> None:
    id_token = world.id_token(auth_time=now() - 120)
    body = world.request_id_jag(id_token).json()
    claims = unverified_claims(body["access_token"])
    assert claims["auth_time"] == unverified_claims(id_token)["auth_time"]
    claims = unverified_claims(world.id_token(iat=now() - 7))
    del claims["auth_time"]
    without = world.idp_key.sign(claims, typ="JWT")
    claims = unverified_claims(world.request_id_jag(without).json()["access_token"])
    assert claims["auth_time"] == unverified_claims(without)["iat"]


def test_the_id_jag_lives_its_expires_in_capped_at_the_short_default(world: PdpLab) -> None:
    for asked, lives in (("60", 60), ("100000", 300), (None, 300)):
        extra = {} if asked is None else {"expires_in": asked}
        body = world.request_id_jag(world.id_token(), **extra).json()
        claims = unverified_claims(body["access_token"])
        assert body["expires_in"] == lives, asked
        assert claims["exp"] - claims["iat"] == lives, asked


def test_an_id_jag_asked_without_resource_names_none(world: PdpLab) -> None:
    form = {
        "grant_type": GRANT_TOKEN_EXCHANGE,
        "requested_token_type": TOKEN_TYPE_ID_JAG,
        "subject_token": world.id_token(),
        "subject_token_type": TOKEN_TYPE_ID_TOKEN,
        "audience": world.zts,
        "scope": "api:role.docs-getter",
    }
    response = world.token(form, client=AGENT)
    assert response.status_code == 200, response.text
    assert "resource" not in unverified_claims(response.json()["access_token"])


def test_an_id_jag_issuance_is_audited_as_such(world: PdpLab) -> None:
    body = world.request_id_jag(world.id_token()).json()
    record = world.audit()[-1]
    assert record["jti"] == unverified_claims(body["access_token"])["jti"]
    assert record["action"] == "id-jag"
    assert record["reason"] == (
        f"{AGENT} holds zts.jag_exchange; {LEARNER} holds "
        "api:role.docs-getter mcp:role.mcp-accessor"
    )


def test_without_scope_a_client_that_may_carry_none_of_the_roles_is_refused(
    world: PdpLab,
) -> None:
    mcp = world.settings.endpoints.mcp
    response = world.request_id_jag(world.id_token(aud=MCP), client=MCP, scope="")
    description, message = _error(response, 403, "unauthorized_client")
    needed = ["mcp:role.mcp-accessor", "api:role.docs-getter"]  # never the admin role
    assert description == f"{MCP} may carry none of the roles {mcp} needs ({', '.join(needed)})"
    assert message == "Principal not authorized for token exchange for the requested role"
    record = world.audit()[-1]
    assert record["resource"] == " ".join(needed)
    assert record["action"] == "zts.jag_exchange"


def test_without_scope_a_resource_needing_no_role_names_none_and_is_audited_by_url(
    world: PdpLab,
) -> None:
    # A domain with only its admin policy: the default scope leaves role.admin out, so the
    # resource needs no role at all and the refusal says so.
    world.create_domain("tools")
    gate = "http://127.0.0.1:1/tools"
    world.register_service("tools.gate", provider_endpoint=gate)
    response = world.request_id_jag(world.id_token(), scope="", resource=gate)
    assert _error(response, 403, "unauthorized_client")[0] == (
        f"{AGENT} may carry none of the roles {gate} needs (none found in policy)"
    )
    record = world.audit()[-1]
    assert (record["resource"], record["action"]) == (gate, "zts.jag_exchange")


def test_a_subject_token_with_neither_scp_nor_scope_carries_no_role(world: PdpLab) -> None:
    # Not even one named "none" (str(None)) in its own domain.
    token = _subject_token(world, aud="api", scp=None)
    for role in ("none", "xxxx"):
        response = world.exchange(token, scope=f"api:role.{role}")
        assert _error(response, 400, "invalid_scope")[0] == (
            f"the subject token does not carry api:role.{role}; an exchange may only narrow"
        )


def test_a_subject_token_must_be_typed_as_an_access_token(world: PdpLab) -> None:
    # Signed by the PDP, with every claim an access token has, but typ JWT.
    response = world.exchange(_subject_token(world, typ="JWT"))
    assert _error(response, 400, "invalid_grant")[1] == (
        "Invalid subject token: token type 'JWT' is not accepted here (expected 'at+jwt')"
    )


def test_a_bare_role_name_in_scope_is_read_in_the_audience_domain(world: PdpLab) -> None:
    response = world.exchange(_user_token(world), scope="Docs-Getter", audience="api")
    assert response.status_code == 200, response.text
    assert unverified_claims(response.json()["access_token"])["scp"] == ["docs-getter"]
    record = world.audit()[-1]
    assert (record["subject"], record["resource"]) == (LEARNER, "api:role.docs-getter")


def test_without_scope_a_short_role_name_counts_in_the_tokens_own_domain(world: PdpLab) -> None:
    # A token of domain api carrying the short name "docs-getter", exchanged within api.
    world.role("api", "self-exchanger", [MCP])
    world.allow("api", "self-source", "self-exchanger", "zts.token_source_exchange", "api:api")
    world.allow(
        "api", "self-target", "self-exchanger", "zts.token_target_exchange", "api:api:role.*"
    )
    token = _subject_token(world, aud="api", scp=["docs-getter"])
    response = world.exchange(token, scope="", audience="api")
    assert response.status_code == 200, response.text
    assert unverified_claims(response.json()["access_token"])["scp"] == ["docs-getter"]


def test_a_user_who_left_the_role_is_not_included_in_the_target_domain(world: PdpLab) -> None:
    token = _user_token(world)
    world.role("api", "docs-getter", [])
    response = world.exchange(token)
    assert _error(response, 403, "invalid_scope")[1] == (
        f"postaccesstokenrequest: principal {LEARNER} is not included in the requested "
        "role(s) in domain api"
    )
    record = world.audit()[-1]
    assert (record["subject"], record["resource"]) == (LEARNER, "api:role.docs-getter")


def test_a_missing_target_exchange_is_audited_on_the_role_it_names(world: PdpLab) -> None:
    world.ok("DELETE", "/domain/api/policy/target-exchange")
    response = world.exchange(_user_token(world))
    description = _error(response, 403, "unauthorized_client")[0]
    assert description.startswith(
        f"{MCP} lacks zts.token_target_exchange on api:mcp:role.docs-getter: "
    )
    record = world.audit()[-1]
    assert record["resource"] == "api:mcp:role.docs-getter"
    assert record["action"] == "zts.token_target_exchange"


def test_a_subject_token_from_another_issuer_is_refused(world: PdpLab) -> None:
    # Signed with the PDP's own key, every claim in place, but iss names someone else.
    response = world.exchange(_subject_token(world, iss="http://127.0.0.1:1/zts/v1"))
    description, message = _error(response, 400, "invalid_grant")
    assert message == "Invalid subject token: " + description.removeprefix(
        "invalid subject token: "
    )
    assert "issuer" in message.lower(), message


@pytest.mark.parametrize("claim", ["sub", "aud", "exp", "iat"])
def test_a_subject_token_missing_a_required_claim_is_refused_by_name(
    world: PdpLab, claim: str
) -> None:
    response = world.exchange(_subject_token(world, **{claim: None}))
    assert _error(response, 400, "invalid_grant")[1] == (
        f"Invalid subject token: token is missing the '{claim}' claim"
    )


def test_a_token_for_a_subdomain_service_crosses_from_the_subdomain(world: PdpLab) -> None:
    # The source domain is everything before the service's last dot: mcp.tools, whose
    # policies grant no zts.token_source_exchange (mcp's would, for mcp.api-mcp).
    world.ok("POST", "/subdomain/mcp", {"name": "tools", "adminUsers": [ADMIN_PRINCIPAL]})
    gate = "http://127.0.0.1:1/gate"
    world.register_service("mcp.tools.gate", provider_endpoint=gate)
    response = world.exchange(_subject_token(world, aud=gate))
    assert _error(response, 403, "unauthorized_client")[1] == (
        "Principal not authorized for token impersonation from source domain"
    )
    assert world.audit()[-1]["resource"] == "mcp.tools:api"


# ---------------------------------------------------------------- ID token -> ID-JAG (second run)


def _id_token_without(lab: PdpLab, claim: str) -> str:
    claims = unverified_claims(lab.id_token())
    del claims[claim]
    return lab.idp_key.sign(claims, typ="JWT")


@pytest.mark.parametrize("claim", ["exp", "iat", "sub", "aud"])
def test_an_id_token_missing_a_required_claim_is_refused_by_name(world: PdpLab, claim: str) -> None:
    response = world.request_id_jag(_id_token_without(world, claim))
    assert _error(response, 400, "invalid_grant") == (
        f"invalid subject token: token is missing the '{claim}' claim",
        f"Invalid subject token: token is missing the '{claim}' claim",
    )


def test_an_id_token_without_iss_names_no_trusted_issuer(world: PdpLab) -> None:
    response = world.request_id_jag(_id_token_without(world, "iss"))
    assert _error(response, 400, "invalid_grant") == (
        "issuer None is not a trusted identity provider",
        "Invalid subject token: issuer None is not a trusted identity provider",
    )


def test_a_non_text_issuer_is_refused_not_looked_up(world: PdpLab) -> None:
    # A list is unhashable: looked up in the providers it would be a 500. (pyjwt refuses to
    # encode a non-text iss, so the JWS is signed over the JSON directly.)
    claims = {**unverified_claims(world.id_token()), "iss": ["x"]}
    key = world.idp_key
    token = jwt.PyJWS().encode(
        json.dumps(claims).encode(), key.key, algorithm=key.alg, headers={"kid": key.kid}
    )
    assert _error(world.request_id_jag(token), 400, "invalid_grant")[1] == (
        "Invalid subject token: issuer ['x'] is not a trusted identity provider"
    )


def test_an_id_token_typed_as_another_token_is_refused_and_an_untyped_one_accepted(
    world: PdpLab,
) -> None:
    claims = unverified_claims(world.id_token())
    for typ in ("at+jwt", "oauth-id-jag+jwt"):
        response = world.request_id_jag(world.idp_key.sign(claims, typ=typ))
        assert _error(response, 400, "invalid_grant")[1] == (
            f"Invalid subject token: token type {typ!r} is not accepted here "
            "(expected 'JWT' or None)"
        )
    untyped = world.request_id_jag(world.idp_key.sign(claims))
    assert untyped.status_code == 200, untyped.text


def test_an_id_jag_issuance_is_audited_with_its_subject_and_roles(world: PdpLab) -> None:
    response = world.request_id_jag(world.id_token())
    assert response.status_code == 200, response.text
    record = world.audit()[-1]
    assert record["subject"] == LEARNER
    assert record["client"] == AGENT
    assert record["resource"] == "api:role.docs-getter mcp:role.mcp-accessor"


def test_an_id_jag_for_a_domain_scope_is_audited_with_the_roles_it_carries(
    world: PdpLab,
) -> None:
    response = world.request_id_jag(world.id_token(), scope="api:domain")
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "api:role.docs-getter"
    assert world.audit()[-1]["resource"] == "api:role.docs-getter"


def test_a_domain_scope_is_audited_as_the_roles_it_spells_out(world: PdpLab) -> None:
    world.ok("DELETE", "/domain/api/policy/jag")
    response = world.request_id_jag(world.id_token(), scope="api:domain")
    assert _error(response, 403, "unauthorized_client")[0].startswith(
        f"{AGENT} lacks zts.jag_exchange on api:role.docs-getter: "
    )
    record = world.audit()[-1]
    assert record["resource"] == "api:role.docs-getter"
    assert record["action"] == "zts.jag_exchange"
    assert record["subject"] == LEARNER


def test_a_user_outside_every_role_is_audited_with_the_requested_scope(world: PdpLab) -> None:
    response = world.request_id_jag(world.id_token(username="idjag-other"))
    _error(response, 403, "invalid_scope")
    record = world.audit()[-1]
    assert record["resource"] == "api:role.docs-getter mcp:role.mcp-accessor"
    assert record["subject"] == "human.idjag-other"


def test_a_scope_sent_with_a_resource_is_the_scope_asked_not_the_default(world: PdpLab) -> None:
    response = world.request_id_jag(world.id_token(), scope="api:role.docs-getter")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["scope"] == "api:role.docs-getter"
    claims = unverified_claims(body["access_token"])
    assert claims["scope"] == "api:role.docs-getter"
    assert claims["resource"] == world.settings.endpoints.mcp


def test_the_id_jag_resource_is_the_registered_one_without_its_trailing_slash(
    world: PdpLab,
) -> None:
    mcp = world.settings.endpoints.mcp
    response = world.request_id_jag(world.id_token(), resource=mcp + "/")
    assert response.status_code == 200, response.text
    assert unverified_claims(response.json()["access_token"])["resource"] == mcp


def test_without_scope_the_id_jag_carries_the_resources_roles_the_client_may_carry(
    world: PdpLab,
) -> None:
    response = world.request_id_jag(world.id_token(), scope="")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["scope"] == "mcp:role.mcp-accessor api:role.docs-getter"
    assert body["expires_in"] == 300
    assert unverified_claims(body["access_token"])["resource"] == world.settings.endpoints.mcp


def test_a_client_lacking_jag_exchange_is_told_which_role_and_audited(world: PdpLab) -> None:
    world.ok("DELETE", "/domain/mcp/policy/jag")
    response = world.request_id_jag(world.id_token())
    description, message = _error(response, 403, "unauthorized_client")
    assert description.startswith(f"{AGENT} lacks zts.jag_exchange on mcp:role.mcp-accessor: ")
    assert message == "Principal not authorized for token exchange for the requested role"
    record = world.audit()[-1]
    assert record["resource"] == "mcp:role.mcp-accessor"
    assert record["action"] == "zts.jag_exchange"


# ---------------------------------------------------------------- verified-token cache (issue #21)


def test_a_subject_token_exchanged_again_is_not_verified_again(
    world: PdpLab, decodes: list[str]
) -> None:
    # The MCP server exchanges the same user token on every tool call (the PDP's cache).
    token = _user_token(world)
    for _ in range(2):
        response = world.exchange(token)
        assert response.status_code == 200, response.text
    assert decodes.count(token) == 1


def test_an_id_token_presented_again_for_an_id_jag_is_not_verified_again(
    world: PdpLab, decodes: list[str]
) -> None:
    # The agent asks one ID-JAG per resource with the same ID token.
    id_token = world.id_token()
    for _ in range(2):
        response = world.request_id_jag(id_token)
        assert response.status_code == 200, response.text
    assert decodes.count(id_token) == 1
