"""RFC 8693 access-token exchange by the MCP server (impersonation, gated by Athenz policies)."""

from __future__ import annotations

import jwt

from tests.pdp.conftest import LEARNER, MCP, PdpLab


def _user_token(lab: PdpLab) -> str:
    response = lab.client_credentials(LEARNER, "api:role.docs-getter api:role.mcp-accessor")
    assert response.status_code == 200
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


def test_exchange_of_a_token_audienced_to_the_mcp_url_maps_to_domain_api(world: PdpLab) -> None:
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
    world.ok(
        "PUT",
        "/domain/api/policy/token-exchange",
        {
            "assertions": [
                {
                    "role": "api:role.docs-token-exchanger",
                    "resource": "api:api:role.docs-getter",
                    "action": "zts.token_target_exchange",
                }
            ]
        },
    )
    response = world.exchange(_user_token(world))
    assert response.status_code == 403
    assert response.json()["error"] == "unauthorized_client"
    assert (
        response.json()["message"]
        == "Principal not authorized for token impersonation from source domain"
    )


def test_missing_target_exchange_is_refused(world: PdpLab) -> None:
    world.ok(
        "PUT",
        "/domain/api/policy/token-exchange",
        {
            "assertions": [
                {
                    "role": "api:role.docs-token-exchanger",
                    "resource": "api:api",
                    "action": "zts.token_source_exchange",
                }
            ]
        },
    )
    response = world.exchange(_user_token(world))
    assert response.status_code == 403
    assert response.json()["error"] == "unauthorized_client"
    assert (
        response.json()["message"]
        == "Principal not authorized for token exchange for the requested role"
    )


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
    world.ok(
        "PUT",
        "/domain/api/policy/poster-exchange",
        {
            "assertions": [
                {
                    "role": "api:role.docs-token-exchanger",
                    "resource": "api:api:role.docs-poster",
                    "action": "zts.token_target_exchange",
                }
            ]
        },
    )
    token = world.client_credentials(LEARNER, "api:role.docs-getter").json()["access_token"]
    response = world.exchange(token, scope="api:role.docs-poster")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"
    assert response.json()["message"] == "Invalid scope for token exchange"
