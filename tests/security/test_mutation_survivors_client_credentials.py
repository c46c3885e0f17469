"""Tests written for mutants of ``lab/pdp/zts/grants/client_credentials.py`` (docs/dev/mutation.md):
who chooses the token's audience, the default scope of a resource, and the audit record.
"""

from __future__ import annotations

import httpx

from lab.oauth.jose import unverified_claims
from lab.oauth.tokens import GRANT_CLIENT_CREDENTIALS
from tests.pdp.conftest import LEARNER, PdpLab


def _grant(lab: PdpLab, **form: str) -> httpx.Response:
    return lab.token({"grant_type": GRANT_CLIENT_CREDENTIALS, **form}, client=LEARNER)


def test_an_audience_other_than_the_tokens_own_is_invalid_target(world: PdpLab) -> None:
    response = _grant(world, scope="api:role.docs-getter", audience="mcp")
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == "invalid_target"
    assert body["error_description"] == (
        "audience mcp is not this token's audience (api); "
        "name a registered resource with resource= instead"
    )
    assert body["message"] == "Invalid audience: mcp"
    assert "access_token" not in body


def test_the_tokens_own_audience_may_be_sent_with_or_without_a_trailing_slash(
    world: PdpLab,
) -> None:
    mcp = world.settings.endpoints.mcp.rstrip("/")
    for audience in (mcp, mcp + "/"):
        response = _grant(world, scope="api:role.docs-getter", resource=mcp, audience=audience)
        assert response.status_code == 200, (audience, response.text)
        assert unverified_claims(response.json()["access_token"])["aud"] == mcp
    plain = _grant(world, scope="api:role.docs-getter", audience="api")
    assert plain.status_code == 200, plain.text


def test_a_resource_token_is_audienced_to_the_url_in_the_resources_domain(world: PdpLab) -> None:
    mcp = world.settings.endpoints.mcp
    response = _grant(world, resource=mcp)  # no scope: the roles the MCP server needs
    assert response.status_code == 200, response.text
    claims = unverified_claims(response.json()["access_token"])
    assert claims["aud"] == mcp
    # domain mcp's token: its own role by short name, api's in full.
    assert sorted(claims["scp"]) == ["api:role.docs-getter", "mcp-accessor"]


def test_a_grant_is_audited_with_its_jti_and_the_roles_held(world: PdpLab) -> None:
    world.role("api", "docs-poster", [LEARNER])
    response = _grant(world, scope="api:role.docs-getter api:role.docs-poster")
    assert response.status_code == 200, response.text
    record = world.audit()[-1]
    assert record["jti"] == unverified_claims(response.json()["access_token"])["jti"]
    assert record["reason"] == "principal holds api:role.docs-getter, api:role.docs-poster"
    assert record["subject"] == LEARNER
    assert record["resource"] == "api:role.docs-getter api:role.docs-poster"


def test_a_resource_registered_with_a_trailing_slash_matches_the_audience_without(
    world: PdpLab,
) -> None:
    tool = "http://127.0.0.1:1/tool/"
    world.register_service("ai.tool", provider_endpoint=tool)
    response = _grant(world, scope="api:role.docs-getter", resource=tool, audience=tool.rstrip("/"))
    assert response.status_code == 200, response.text
