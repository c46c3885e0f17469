"""Scopes a client can learn: RFC 8414 scopes_supported, and the default scope when none is sent.

RFC 8693 §2.1, RFC 6749 §4.4.2 and ID-JAG draft -04 §4.3 make ``scope`` optional; SEP-990
clients send none unless a challenge told them one. Without a scope the PDP grants the roles the
named resource needs, derived from stored policy (lab/pdp/zts/grants/resource_scope.py).
"""

from __future__ import annotations

from typing import Any

import jwt

from lab.oauth.tokens import GRANT_CLIENT_CREDENTIALS
from tests.pdp.conftest import LEARNER, PdpLab


def _claims(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


def _metadata(lab: PdpLab) -> dict[str, Any]:
    response = lab.http.get(lab.zts + "/.well-known/oauth-authorization-server")
    assert response.status_code == 200
    return dict(response.json())


def test_metadata_of_an_empty_pdp_has_no_empty_arrays(pdp_lab: PdpLab) -> None:
    document = _metadata(pdp_lab)
    assert [name for name, value in document.items() if value == []] == []
    assert "scopes_supported" not in document  # no roles yet: omitted (RFC 8414 §2)


def test_metadata_lists_every_role_and_the_id_jag_profiles(world: PdpLab) -> None:
    document = _metadata(world)
    assert [name for name, value in document.items() if value == []] == []
    assert {"api:role.docs-getter", "mcp:role.mcp-accessor"} <= set(document["scopes_supported"])
    assert not [s for s in document["scopes_supported"] if s.endswith(":role.admin")]
    # ID-JAG draft -04 §7.
    assert document["authorization_grant_profiles_supported"] == [
        "urn:ietf:params:oauth:grant-profile:id-jag"
    ]
    assert document["identity_chaining_requested_token_types_supported"] == [
        "urn:ietf:params:oauth:token-type:id-jag"
    ]


def test_id_jag_without_scope_carries_the_roles_the_mcp_server_needs(world: PdpLab) -> None:
    response = world.request_id_jag(world.id_token(), scope="")
    assert response.status_code == 200, response.text
    # access on mcp:mcp (domain mcp's policy), then what mcp.api-mcp may exchange into (api).
    assert response.json()["scope"] == "mcp:role.mcp-accessor api:role.docs-getter"
    assert _claims(response.json()["access_token"])["scope"] == response.json()["scope"]


def test_default_scope_follows_the_policy_not_a_list_in_code(world: PdpLab) -> None:
    world.role("api", "docs-poster", [LEARNER])
    world.allow(
        "api",
        "poster-exchange",
        "docs-getter-exchanger",
        "zts.token_target_exchange",
        "api:mcp:role.docs-poster",
    )
    world.allow(
        "api", "poster-jag", "docs-getter-jag-exchanger", "zts.jag_exchange", "api:role.docs-poster"
    )
    response = world.request_id_jag(world.id_token(), scope="")
    assert response.status_code == 200, response.text
    assert "api:role.docs-poster" in response.json()["scope"].split()


def test_default_scope_leaves_out_roles_the_client_may_not_carry(world: PdpLab) -> None:
    world.ok("DELETE", "/domain/mcp/policy/jag")  # ai.agent may no longer carry mcp-accessor
    response = world.request_id_jag(world.id_token(), scope="")
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "api:role.docs-getter"


def test_without_scope_or_resource_the_id_jag_request_is_refused(world: PdpLab) -> None:
    response = world.request_id_jag(world.id_token(), scope="", resource="")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert response.json()["message"] == "Invalid request: no scope provided"


def test_client_credentials_for_a_resource_default_to_its_roles(world: PdpLab) -> None:
    response = world.token(
        {"grant_type": GRANT_CLIENT_CREDENTIALS, "resource": world.settings.endpoints.mcp},
        client=LEARNER,
    )
    assert response.status_code == 200, response.text
    claims = _claims(response.json()["access_token"])
    assert claims["aud"] == world.settings.endpoints.mcp
    assert claims["scp"] == ["mcp-accessor", "api:role.docs-getter"]


def test_exchange_without_scope_takes_every_role_of_the_audience_the_token_carries(
    world: PdpLab,
) -> None:
    agent_token = world.redeem(
        world.request_id_jag(world.id_token()).json()["access_token"]
    ).json()["access_token"]
    response = world.exchange(agent_token, scope="")
    assert response.status_code == 200, response.text
    assert _claims(response.json()["access_token"])["scp"] == ["docs-getter"]
