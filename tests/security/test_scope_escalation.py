"""``<domain>:domain`` must never carry a role past a check a named role would fail.

The finding: at jwt-bearer redemption ``scope=api:domain`` passed "requested ⊆ ID-JAG scope"
(its listed-role set is empty) and the token got every role the user holds; at ID-JAG issuance
``api:role.docs-getter api:domain`` was checked for ``zts.jag_exchange`` on the named role only.
Here the learner also holds ``docs-poster``, for which the agent has no ``zts.jag_exchange``.
"""

from __future__ import annotations

from typing import Any

import pytest

from lab.oauth.jose import SigningKey, new_jti, unverified_claims
from lab.oauth.tokens import TYP_ID_JAG
from tests.pdp.conftest import AGENT, LEARNER, MCP, PdpLab


@pytest.fixture
def poster_world(world: PdpLab) -> PdpLab:
    world.role("api", "docs-poster", [LEARNER, AGENT])
    world.allow("api", "docs-poster", "docs-poster", "post", "api:docs")
    return world


def body(response: Any) -> dict[str, Any]:
    return dict(response.json())


def id_jag(lab: PdpLab, scope: str) -> str:
    response = lab.request_id_jag(lab.id_token(), scope=scope)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


@pytest.mark.parametrize(
    "scope",
    [
        "api:role.docs-getter api:domain",
        "api:domain api:role.docs-getter",
        "api:domain",
        "API:DOMAIN api:role.mcp-accessor",
    ],
)
def test_id_jag_domain_scope_checks_jag_exchange_on_every_role(
    poster_world: PdpLab, scope: str
) -> None:
    response = poster_world.request_id_jag(poster_world.id_token(), scope=scope)
    assert response.status_code == 403, response.text
    assert body(response)["error"] == "unauthorized_client"
    assert "docs-poster" in body(response)["error_description"]


def test_id_jag_domain_scope_allowed_when_every_held_role_is_granted(world: PdpLab) -> None:
    response = world.request_id_jag(world.id_token(), scope="api:domain mcp:domain")
    assert response.status_code == 200, response.text
    scope = unverified_claims(response.json()["access_token"])["scope"].split()
    assert sorted(scope) == ["api:role.docs-getter", "mcp:role.mcp-accessor"]


@pytest.mark.parametrize("requested", ["api:domain", "api:role.docs-getter api:domain"])
def test_redeeming_with_a_domain_scope_is_invalid_scope(
    poster_world: PdpLab, requested: str
) -> None:
    jag = id_jag(poster_world, "api:role.docs-getter")
    response = poster_world.redeem(jag, scope=requested)
    assert response.status_code == 400, response.text
    assert body(response)["error"] == "invalid_scope"


def test_a_domain_scope_inside_an_id_jag_grants_nothing(poster_world: PdpLab) -> None:
    claims = unverified_claims(id_jag(poster_world, "api:role.docs-getter"))
    claims.update(jti=new_jti(), scope="api:domain")
    pdp = SigningKey.load_or_create(poster_world.settings.key_file("pdp-signing"))
    response = poster_world.redeem(pdp.sign(claims, typ=TYP_ID_JAG))
    assert response.status_code == 400, response.text
    assert body(response)["error"] == "invalid_grant"
    claims.update(jti=new_jti(), scope="api:role.docs-getter api:domain")
    response = poster_world.redeem(pdp.sign(claims, typ=TYP_ID_JAG))
    assert response.status_code == 200, response.text
    granted = unverified_claims(response.json()["access_token"])["scp"]
    assert "docs-poster" not in str(granted) and "api:role.docs-getter" in str(
        response.json()["scope"]
    )


def test_redeeming_a_role_the_id_jag_does_not_name_is_invalid_scope(poster_world: PdpLab) -> None:
    jag = id_jag(poster_world, "api:role.docs-getter")
    response = poster_world.redeem(jag, scope="api:role.docs-poster")
    assert response.status_code == 400, response.text
    assert body(response)["error"] == "invalid_scope"


def test_client_credentials_domain_scope_is_the_roles_held(poster_world: PdpLab) -> None:
    response = poster_world.client_credentials(AGENT, "api:domain")
    assert response.status_code == 200, response.text
    roles = set(unverified_claims(response.json()["access_token"])["scp"])
    assert roles == {"docs-poster", "docs-getter-jag-exchanger"}


def test_client_credentials_domain_scope_without_roles_is_refused(pdp_lab: PdpLab) -> None:
    pdp_lab.create_domain("api")
    pdp_lab.register_service(AGENT.replace("ai.", "api."))
    response = pdp_lab.client_credentials(AGENT.replace("ai.", "api."), "api:domain")
    assert response.status_code == 403, response.text
    assert body(response)["error"] == "invalid_scope"


def test_token_exchange_with_domain_scope_is_invalid_scope(poster_world: PdpLab) -> None:
    access = poster_world.token(
        {
            "grant_type": "client_credentials",
            "scope": "mcp:role.mcp-accessor api:role.docs-getter",
            "resource": poster_world.settings.endpoints.mcp,
        },
        client=LEARNER,
    ).json()["access_token"]
    for scope in ("api:domain", "api:role.docs-getter api:domain"):
        response = poster_world.exchange(access, client=MCP, scope=scope)
        assert response.status_code == 400, response.text
        assert body(response)["error"] == "invalid_scope"
    # The named role alone is exchanged (the control: the refusals above are the scope's doing).
    response = poster_world.exchange(access, client=MCP, scope="api:role.docs-getter")
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("scope", ["api:role.docs-getter " * 40, "api:role." + "a" * 3000])
def test_oversized_scope_is_invalid_scope(world: PdpLab, scope: str) -> None:
    response = world.client_credentials(AGENT, scope)
    assert response.status_code == 400, response.text
    assert body(response)["error"] == "invalid_scope"


def test_a_domain_admins_default_scope_leaves_the_admin_role_out(world: PdpLab) -> None:
    # The domain's admin policy (ALLOW * on mcp:*) made role.admin part of every default scope
    # of the domain's resources: a domain admin asking for the MCP server without a scope got
    # a token carrying mcp:role.admin. The default is what the resource needs, never admin.
    from lab.config import ADMIN_PRINCIPAL
    from lab.oauth.tokens import GRANT_CLIENT_CREDENTIALS

    world.role("mcp", "admin", [ADMIN_PRINCIPAL, AGENT])
    world.role("mcp", "mcp-accessor", [LEARNER, AGENT])
    form = {"grant_type": GRANT_CLIENT_CREDENTIALS, "resource": world.settings.endpoints.mcp}
    response = world.token(form, client=AGENT)
    assert response.status_code == 200, response.text
    claims = unverified_claims(response.json()["access_token"])
    assert claims["scp"] == ["mcp-accessor"]
    assert "mcp:role.admin" not in claims["scope"].split()
    # Named, the admin role is checked like any other role and granted to its member.
    named = world.token({**form, "scope": "mcp:role.admin"}, client=AGENT)
    assert named.status_code == 200, named.text
    assert unverified_claims(named.json()["access_token"])["scp"] == ["admin"]


def test_a_resource_whose_domain_has_only_the_admin_policy_has_no_default_scope(
    world: PdpLab,
) -> None:
    from lab.oauth.tokens import GRANT_CLIENT_CREDENTIALS

    world.create_domain("bare")
    endpoint = "http://127.0.0.1:1/bare"
    world.register_service("bare.tool", provider_endpoint=endpoint)
    world.role("bare", "admin", [AGENT.replace("ai.", "bare.")])
    world.register_service(AGENT.replace("ai.", "bare."))
    form = {"grant_type": GRANT_CLIENT_CREDENTIALS, "resource": endpoint}
    response = world.token(form, client=AGENT.replace("ai.", "bare."))
    assert response.status_code == 403, response.text
    assert body(response)["error"] == "invalid_scope"


def test_an_id_jag_for_a_resource_needing_no_role_names_none_found(world: PdpLab) -> None:
    # With role.admin never a default, a resource whose domain has only its admin policy needs
    # no role: the refusal says so instead of listing nothing.
    from lab.oauth.tokens import GRANT_TOKEN_EXCHANGE, TOKEN_TYPE_ID_JAG, TOKEN_TYPE_ID_TOKEN

    world.create_domain("bare")
    endpoint = "http://127.0.0.1:1/bare"
    world.register_service("bare.tool", provider_endpoint=endpoint)
    form = {
        "grant_type": GRANT_TOKEN_EXCHANGE,
        "requested_token_type": TOKEN_TYPE_ID_JAG,
        "subject_token": world.id_token(),
        "subject_token_type": TOKEN_TYPE_ID_TOKEN,
        "audience": world.zts,
        "resource": endpoint,
    }
    response = world.token(form, client=AGENT)
    assert response.status_code == 403, response.text
    assert body(response)["error"] == "unauthorized_client"
    assert "(none found in policy)" in body(response)["error_description"]
