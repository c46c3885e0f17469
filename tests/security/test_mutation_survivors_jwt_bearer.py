"""Tests for ``lab/pdp/zts/grants/jwt_bearer.py``'s refusals and audit records, pinned exactly for
``make mutate`` (docs/dev/mutation.md, the full run of the ``jwt_bearer`` target): each refusal of
an ID-JAG at redemption names what is wrong in both dialects, and a refused redemption is still
audited with the user, the ID-JAG's ``jti`` and the scope asked for.
"""

from __future__ import annotations

from typing import Any

import pytest

from lab.oauth.jose import SigningKey, new_jti, unverified_claims, unverified_header
from lab.oauth.tokens import GRANT_JWT_BEARER, TYP_ID_JAG
from tests.pdp.conftest import AGENT, LEARNER, PdpLab


def _jag(lab: PdpLab, **kwargs: str) -> str:
    response = lab.request_id_jag(lab.id_token(), **kwargs)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def _resigned(lab: PdpLab, jag: str, typ: str | None = TYP_ID_JAG, **changes: Any) -> str:
    """The PDP's own ID-JAG with some claims changed (``None`` drops one), signed again with
    the PDP's key and a fresh ``jti``."""
    key = SigningKey.load_or_create(lab.settings.key_file("pdp-signing"))
    claims = {**unverified_claims(jag), "jti": new_jti(), **changes}
    claims = {k: v for k, v in claims.items() if v is not None}
    assert unverified_header(jag)["typ"] == TYP_ID_JAG
    return key.sign(claims, typ=typ)


def _refusal(response: Any) -> tuple[int, str, str, str]:
    body = response.json()
    return response.status_code, body["error"], body["error_description"], body["message"]


def test_a_redemption_without_an_assertion_names_the_missing_parameter(world: PdpLab) -> None:
    response = world.token({"grant_type": GRANT_JWT_BEARER}, client=AGENT)
    assert _refusal(response) == (
        400,
        "invalid_request",
        "missing required parameter assertion",
        "Invalid request: no assertion provided",
    )


def test_an_assertion_of_another_type_is_refused_naming_its_type(world: PdpLab) -> None:
    response = world.redeem(_resigned(world, _jag(world), typ="JWT"))
    reason = f"token type 'JWT' is not {TYP_ID_JAG}"
    assert _refusal(response) == (
        400,
        "invalid_grant",
        f"invalid assertion: {reason}",
        f"Invalid assertion token: {reason}",
    )


def test_an_assertion_that_is_no_jwt_is_refused_with_the_parsers_reason(world: PdpLab) -> None:
    status, error, description, message = _refusal(world.redeem("not-a-jwt"))
    assert (status, error) == (400, "invalid_grant")
    reason = description.removeprefix("invalid assertion: ")
    assert reason != description and reason and reason != "None"
    assert message == f"Invalid assertion token: {reason}"


def test_an_id_jag_signed_with_another_key_is_refused_naming_the_key(world: PdpLab) -> None:
    genuine = unverified_claims(_jag(world))
    forger = SigningKey.load_or_create(world.settings.keys_dir / "forger.pem")
    forged = forger.sign({**genuine, "jti": new_jti()}, typ=TYP_ID_JAG)
    reason = f"unknown signing key id {forger.kid!r}"
    assert _refusal(world.redeem(forged)) == (
        400,
        "invalid_grant",
        f"invalid assertion: {reason}",
        f"Invalid assertion token: {reason}",
    )


@pytest.mark.parametrize("audience", ["https://elsewhere.example/zts/v1", ["x", "y"]])
def test_an_id_jag_for_another_audience_is_refused_naming_it(
    world: PdpLab, audience: object
) -> None:
    response = world.redeem(_resigned(world, _jag(world), aud=audience))
    assert _refusal(response) == (
        400,
        "invalid_grant",
        f"ID-JAG audience {audience!r} is not this authorization server",
        "Unknown jag assertion audience",
    )


def test_an_id_jag_audienced_as_a_one_element_array_is_redeemed(world: PdpLab) -> None:
    response = world.redeem(_resigned(world, _jag(world), aud=[world.zts]))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("claim", ["jti", "client_id", "sub", "iat"])
def test_an_own_id_jag_missing_a_required_claim_is_refused_by_name(
    world: PdpLab, claim: str
) -> None:
    status, error, description, _ = _refusal(
        world.redeem(_resigned(world, _jag(world), **{claim: None}))
    )
    assert (status, error) == (400, "invalid_grant")
    assert description.startswith("invalid assertion: ") and claim in description


def test_an_id_jag_of_another_client_is_refused_naming_its_client_id(world: PdpLab) -> None:
    response = world.redeem(_resigned(world, _jag(world), client_id="ai.other"))
    assert _refusal(response) == (
        400,
        "invalid_grant",
        "ID-JAG client_id 'ai.other' is not the authenticated client",
        "Invalid jag assertion client_id",
    )


def test_an_id_jag_client_id_is_compared_case_blind(world: PdpLab) -> None:
    response = world.redeem(_resigned(world, _jag(world), client_id=AGENT.upper()))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("scope", [None, "", "   ", ["api:role.docs-getter"]])
def test_an_id_jag_without_a_scope_text_is_refused_by_name(world: PdpLab, scope: object) -> None:
    changes: dict[str, Any] = {"scope": scope}
    response = world.redeem(_resigned(world, _jag(world), **changes))
    assert _refusal(response) == (
        400,
        "invalid_grant",
        "ID-JAG has no scope",
        "Invalid jag assertion - missing scope",
    )


def test_a_refused_redemption_is_audited_with_the_user_the_jti_and_the_scope(
    world: PdpLab,
) -> None:
    jag = _jag(world)
    world.ok("DELETE", f"/domain/api/role/docs-getter/member/{LEARNER}")
    world.ok("DELETE", f"/domain/mcp/role/mcp-accessor/member/{LEARNER}")
    response = world.redeem(jag)
    assert response.status_code == 403, response.text
    record = world.audit()[-1]
    assert (record["decision"], record["subject"], record["jti"], record["resource"]) == (
        "deny",
        LEARNER,
        unverified_claims(jag)["jti"],
        "api:role.docs-getter mcp:role.mcp-accessor",
    )
    assert record["reason"] == (
        f"invalid_scope: postaccesstokenrequest: principal {LEARNER} is not included in the "
        "requested role(s) in domain api"
    )


def test_a_bare_role_asked_at_redemption_is_read_in_the_id_jags_first_domain(
    world: PdpLab,
) -> None:
    """The ID-JAG fixes the domain: ``scope=docs-getter`` is ``api:role.docs-getter`` for an
    ID-JAG whose scope names ``api`` first."""
    jag = _jag(world, scope="api:role.docs-getter mcp:role.mcp-accessor")
    response = world.redeem(jag, scope="docs-getter")
    assert response.status_code == 200, response.text
    assert unverified_claims(response.json()["access_token"])["scp"] == ["api:role.docs-getter"]


def test_the_id_jags_whole_scope_may_be_asked_for_at_redemption(world: PdpLab) -> None:
    both = "api:role.docs-getter mcp:role.mcp-accessor"
    response = world.redeem(_jag(world, scope=both), scope=both)
    assert response.status_code == 200, response.text


def test_a_scope_wider_than_the_id_jags_is_refused_by_name(world: PdpLab) -> None:
    jag = _jag(world, scope="api:role.docs-getter")
    response = world.redeem(jag, scope="api:role.docs-getter mcp:role.mcp-accessor")
    assert _refusal(response) == (
        400,
        "invalid_scope",
        "requested scope is not a subset of the ID-JAG scope",
        "Invalid request: requested scope is not a subset of assertion scope",
    )
