"""Tests written for mutants of ``lab/pdp/zts/grants/jwt_bearer.py`` that ``make mutate`` found
alive (docs/dev/mutation.md): the ID-JAG's ``resource`` at redemption (missing or empty, a
trailing slash), and what the redemption writes into the audit record.
"""

from __future__ import annotations

from typing import Any

from lab.oauth.jose import SigningKey, new_jti, unverified_claims, unverified_header
from tests.pdp.conftest import LEARNER, PdpLab


def _jag(lab: PdpLab, **kwargs: str) -> str:
    response = lab.request_id_jag(lab.id_token(), **kwargs)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def _resigned(lab: PdpLab, jag: str, **changes: Any) -> str:
    """The PDP's own ID-JAG with some claims changed, signed again with the PDP's key."""
    key = SigningKey.load_or_create(lab.settings.key_file("pdp-signing"))
    claims = {**unverified_claims(jag), "jti": new_jti(), **changes}
    claims = {k: v for k, v in claims.items() if v is not None}
    return key.sign(claims, typ=unverified_header(jag).get("typ"))


def test_an_id_jag_without_or_with_an_empty_resource_is_refused_by_name(world: PdpLab) -> None:
    genuine = _jag(world)
    for resource in (None, ""):
        response = world.redeem(_resigned(world, genuine, resource=resource))
        assert response.status_code == 400, response.text
        body = response.json()
        assert body["error"] == "invalid_grant"
        assert body["error_description"] == (
            "the ID-JAG names no resource; tokens from an ID-JAG are issued only for a "
            "registered resource (ask for the ID-JAG with resource=<the MCP server's URL>)"
        )
        assert body["message"] == "Invalid jag assertion - missing resource"


def test_the_resource_sent_at_redemption_may_differ_by_a_trailing_slash(world: PdpLab) -> None:
    mcp = world.settings.endpoints.mcp.rstrip("/")
    response = world.redeem(_jag(world), resource=mcp + "/")
    assert response.status_code == 200, response.text
    refused = world.redeem(_jag(world), resource="/" + mcp)
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"


def test_a_redemption_is_audited_with_the_new_tokens_jti_and_the_roles_held(
    world: PdpLab,
) -> None:
    jag = _jag(world)
    response = world.redeem(jag)
    assert response.status_code == 200, response.text
    token_claims = unverified_claims(response.json()["access_token"])
    record = world.audit()[-1]
    assert record["jti"] == token_claims["jti"]
    assert record["reason"] == (
        f"ID-JAG {unverified_claims(jag)['jti']} redeemed; {LEARNER} holds "
        "api:role.docs-getter, mcp:role.mcp-accessor now"
    )


def test_an_id_jag_resource_with_a_trailing_slash_matches_the_one_sent(world: PdpLab) -> None:
    mcp = world.settings.endpoints.mcp.rstrip("/")
    jag = _resigned(world, _jag(world), resource=mcp + "/")
    response = world.redeem(jag, resource=mcp)
    assert response.status_code == 200, response.text


def test_a_different_resource_at_redemption_is_named(world: PdpLab) -> None:
    mcp = world.settings.endpoints.mcp
    other = "http://127.0.0.1:1/other"
    body = world.redeem(_jag(world), resource=other).json()
    assert (body["error"], body["error_description"], body["message"]) == (
        "invalid_grant",
        f"resource {other} differs from the ID-JAG's resource {mcp}",
        f"Invalid resource: {other}",
    )


def test_an_id_jag_for_an_unregistered_resource_is_invalid_grant_named_as_a_target(
    world: PdpLab,
) -> None:
    other = "http://127.0.0.1:1/other"
    body = world.redeem(_resigned(world, _jag(world), resource=other)).json()
    assert body["error"] == "invalid_grant"
    assert body["error_description"].startswith(f"resource {other} is not a registered resource")
    assert body["message"] == f"Invalid resource: {other}"


def test_an_id_jag_naming_no_roles_is_refused_by_name(world: PdpLab) -> None:
    body = world.redeem(_resigned(world, _jag(world), scope="api:domain")).json()
    assert (body["error"], body["error_description"], body["message"]) == (
        "invalid_grant",
        "the ID-JAG names no roles (a D:domain scope in an ID-JAG grants nothing)",
        "Invalid jag assertion - scope names no roles",
    )


def test_a_one_second_token_may_be_asked_for_at_redemption(world: PdpLab) -> None:
    response = world.redeem(_jag(world), expires_in="1")
    assert response.status_code == 200, response.text
    claims = unverified_claims(response.json()["access_token"])
    assert claims["exp"] - claims["iat"] == 1 == response.json()["expires_in"]
