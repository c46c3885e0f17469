"""RFC 8693 access-token exchange by the MCP server (impersonation, gated by Athenz policies)."""

from __future__ import annotations

import jwt

from lab.oauth.tokens import GRANT_CLIENT_CREDENTIALS
from tests.pdp.conftest import LEARNER, MCP, PdpLab


def _user_token(lab: PdpLab) -> str:
    """The learner's own token for the MCP server (RFC 8707 resource): domain mcp."""
    response = lab.token(
        {
            "grant_type": GRANT_CLIENT_CREDENTIALS,
            "scope": "mcp:role.mcp-accessor api:role.docs-getter",
            "resource": lab.settings.endpoints.mcp,
        },
        client=LEARNER,
    )
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def test_exchange_keeps_user_and_names_the_exchanger(world: PdpLab) -> None:
    response = world.exchange(_user_token(world))
    assert response.status_code == 200, response.text
    assert response.json()["issued_token_type"] == "urn:ietf:params:oauth:token-type:access_token"
    claims = jwt.decode(response.json()["access_token"], options={"verify_signature": False})
    assert claims["sub"] == LEARNER
    assert claims["client_id"] == MCP
    assert claims["act"]["sub"] == MCP
    assert claims["aud"] == "api"
    assert claims["scp"] == ["docs-getter"]
    assert "may_act" not in claims


def test_exchange_of_a_token_for_the_mcp_url_crosses_from_mcp_to_api(world: PdpLab) -> None:
    jag = world.request_id_jag(world.id_token()).json()["access_token"]
    agent_token = world.redeem(jag).json()["access_token"]
    assert (
        jwt.decode(agent_token, options={"verify_signature": False})["aud"]
        == world.settings.endpoints.mcp
    )
    response = world.exchange(agent_token)
    assert response.status_code == 200, response.text
    claims = jwt.decode(response.json()["access_token"], options={"verify_signature": False})
    assert claims["aud"] == "api" and claims["sub"] == LEARNER
    assert claims["act"] == {"sub": MCP, "act": {"sub": "ai.agent"}}


def test_missing_source_exchange_is_refused(world: PdpLab) -> None:
    # Domain mcp no longer lets its tokens leave (zts.token_source_exchange on mcp:api).
    world.ok("DELETE", "/domain/mcp/policy/source-exchange")
    response = world.exchange(_user_token(world))
    assert response.status_code == 403
    assert response.json()["error"] == "unauthorized_client"
    assert (
        response.json()["message"]
        == "Principal not authorized for token impersonation from source domain"
    )
    assert "mcp:api" in response.json()["error_description"]


def test_missing_target_exchange_is_refused(world: PdpLab) -> None:
    # Domain api no longer lets docs-getter in from mcp (api:mcp:role.docs-getter).
    world.ok("DELETE", "/domain/api/policy/target-exchange")
    response = world.exchange(_user_token(world))
    assert response.status_code == 403
    assert response.json()["error"] == "unauthorized_client"
    assert (
        response.json()["message"]
        == "Principal not authorized for token exchange for the requested role"
    )
    assert "api:mcp:role.docs-getter" in response.json()["error_description"]


def test_source_policy_in_the_wrong_domain_does_not_count(world: PdpLab) -> None:
    """Athenz reads the policies of the domain the resource names: mcp:api is decided by mcp,
    so an assertion on mcp:api written into domain api grants nothing."""
    world.ok("DELETE", "/domain/mcp/policy/source-exchange")
    world.role("api", "to-api-exchanger", [MCP])
    world.allow("api", "misplaced", "to-api-exchanger", "zts.token_source_exchange", "mcp:api")
    response = world.exchange(_user_token(world))
    assert response.status_code == 403
    assert response.json()["error"] == "unauthorized_client"


def test_a_token_for_domain_api_does_not_cross_with_the_mcp_policies(world: PdpLab) -> None:
    """The source is the subject token's domain: an api token would need api:api, not mcp:api."""
    token = world.client_credentials(LEARNER, "api:role.docs-getter").json()["access_token"]
    response = world.exchange(token)
    assert response.status_code == 403
    assert response.json()["message"] == (
        "Principal not authorized for token impersonation from source domain"
    )
    assert "api:api" in response.json()["error_description"]


def test_user_removed_from_role_cannot_be_exchanged_for_it(world: PdpLab) -> None:
    token = _user_token(world)
    world.ok("DELETE", f"/domain/api/role/docs-getter/member/{LEARNER}")
    response = world.exchange(token)
    assert response.status_code == 403
    assert response.json()["error"] == "invalid_scope"
    assert "human.idjag-learner is not included" in response.json()["message"]


def test_forged_subject_token_is_invalid_grant(world: PdpLab) -> None:
    token = _user_token(world)
    header, payload, signature = token.split(".")
    forged = f"{header}.{payload}.{signature[:-4]}AAAA"
    response = world.exchange(forged)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert response.json()["message"].startswith("Invalid subject token")


def test_exchange_may_only_narrow(world: PdpLab) -> None:
    world.role("api", "docs-poster", [LEARNER])
    world.allow(
        "api",
        "poster-exchange",
        "docs-getter-exchanger",
        "zts.token_target_exchange",
        "api:mcp:role.docs-poster",
    )
    token = _user_token(world)
    response = world.exchange(token, scope="api:role.docs-poster")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"
    assert response.json()["message"] == "Invalid scope for token exchange"
