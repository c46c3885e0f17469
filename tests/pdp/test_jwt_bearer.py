"""RFC 7523 jwt-bearer grant with an ID-JAG: access token by membership now, and each refusal."""

from __future__ import annotations

import jwt

from lab.oauth.tokens import TYP_ACCESS_TOKEN
from tests.pdp.conftest import AGENT, LEARNER, MCP, PdpLab


def _jag(lab: PdpLab, **kwargs: str) -> str:
    response = lab.request_id_jag(lab.id_token(), **kwargs)
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def test_id_jag_redeems_for_a_token_audienced_to_the_mcp_server(world: PdpLab) -> None:
    response = world.redeem(_jag(world))
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    assert jwt.get_unverified_header(token)["typ"] == TYP_ACCESS_TOKEN
    claims = jwt.decode(token, options={"verify_signature": False})
    assert (
        claims["aud"] == world.settings.endpoints.mcp
    )  # RFC 8707: not replayable at the document API
    assert claims["sub"] == LEARNER and claims["client_id"] == AGENT
    # The token belongs to the MCP server's domain: its roles by short name, api's by full name.
    assert claims["scp"] == ["api:role.docs-getter", "mcp-accessor"]


def test_id_jag_without_resource_does_not_redeem_to_an_api_token(world: PdpLab) -> None:
    jag = world.request_id_jag(world.id_token(), resource="").json()["access_token"]
    response = world.redeem(jag)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_grant"
    assert "access_token" not in response.json()


def test_replayed_id_jag_is_refused(world: PdpLab) -> None:
    jag = _jag(world)
    assert world.redeem(jag).status_code == 200
    replay = world.redeem(jag)
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    assert replay.json()["message"] == "Invalid assertion token: assertion has already been used"


def test_id_jag_of_another_client_is_refused(world: PdpLab) -> None:
    world.role("api", "docs-getter-jag-exchanger", [AGENT, MCP])
    world.role("mcp", "mcp-accessor-jag-exchanger", [AGENT, MCP])
    response = world.redeem(_jag(world), client=MCP)
    assert response.status_code == 400
    assert response.json()["message"] == "Invalid jag assertion client_id"


def test_scope_wider_than_the_id_jag_is_refused(world: PdpLab) -> None:
    jag = _jag(world, scope="api:role.docs-getter")
    response = world.redeem(jag, scope="api:role.docs-getter mcp:role.mcp-accessor")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"
    assert (
        response.json()["message"]
        == "Invalid request: requested scope is not a subset of assertion scope"
    )


def test_narrower_scope_is_granted(world: PdpLab) -> None:
    response = world.redeem(_jag(world), scope="mcp:role.mcp-accessor")
    assert response.status_code == 200
    assert jwt.decode(response.json()["access_token"], options={"verify_signature": False})[
        "scp"
    ] == ["mcp-accessor"]


def test_membership_is_checked_at_redemption(world: PdpLab) -> None:
    jag = _jag(world)
    world.ok("DELETE", f"/domain/api/role/docs-getter/member/{LEARNER}")
    partial = world.redeem(jag)
    assert partial.status_code == 200
    assert jwt.decode(partial.json()["access_token"], options={"verify_signature": False})[
        "scp"
    ] == ["mcp-accessor"]
    jag2 = _jag(world, scope="mcp:role.mcp-accessor")
    world.ok("DELETE", f"/domain/mcp/role/mcp-accessor/member/{LEARNER}")
    refused = world.redeem(jag2)
    assert refused.status_code == 403
    assert refused.json()["error"] == "invalid_scope"


def test_access_token_is_not_an_id_jag(world: PdpLab) -> None:
    at = world.client_credentials(LEARNER, "api:role.docs-getter").json()["access_token"]
    response = world.redeem(at, client=LEARNER)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert (
        "is not 'oauth-id-jag+jwt'" in response.json()["error_description"]
        or "oauth-id-jag+jwt" in response.json()["message"]
    )


def test_id_jag_for_another_audience_is_refused(world: PdpLab) -> None:
    jag = _jag(world)
    claims = jwt.decode(jag, options={"verify_signature": False})
    claims["aud"] = "https://elsewhere.example/zts/v1"
    other = world.settings  # signed by a foreign key: audience is checked first
    foreign = jwt.encode(claims, "x" * 32, algorithm="HS256", headers={"typ": "oauth-id-jag+jwt"})
    response = world.redeem(foreign)
    assert other and response.status_code == 400
    assert response.json()["message"] == "Unknown jag assertion audience"


def test_redemption_for_another_resource_is_invalid_grant(world: PdpLab) -> None:
    """MCP enterprise-managed authorization: an aud/resource mismatch is invalid_grant."""
    response = world.redeem(_jag(world), resource="http://127.0.0.1:1/other")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert "access_token" not in response.json()
