"""ZMS management: authentication by signed assertion, admin rules, Athenz shapes, names."""

from __future__ import annotations

from lab.config import ADMIN_PRINCIPAL
from lab.oauth.admin import make_admin_assertion
from lab.oauth.jose import SigningKey, make_client_assertion, public_pem, ybase64_encode
from tests.pdp.conftest import AGENT, LEARNER, MCP, PdpLab


def test_unauthenticated_write_is_401(pdp_lab: PdpLab) -> None:
    response = pdp_lab.http.post(pdp_lab.zms + "/domain", json={"name": "api"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_assertion_signed_by_another_key_is_401(pdp_lab: PdpLab) -> None:
    impostor = SigningKey.load_or_create(pdp_lab.settings.keys_dir / "impostor.pem")
    token = make_admin_assertion(ADMIN_PRINCIPAL, impostor, pdp_lab.zms)
    response = pdp_lab.http.post(
        pdp_lab.zms + "/domain", json={"name": "api"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"


def test_assertion_for_another_audience_is_401(pdp_lab: PdpLab) -> None:
    token = make_admin_assertion(ADMIN_PRINCIPAL, pdp_lab.key(ADMIN_PRINCIPAL), "http://elsewhere")
    response = pdp_lab.http.get(
        pdp_lab.zms + "/domain", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 401


def test_domain_create_get_delete(pdp_lab: PdpLab) -> None:
    created = pdp_lab.ok(
        "POST", "/domain", {"name": "API", "description": "docs", "adminUsers": [ADMIN_PRINCIPAL]}
    ).json()
    assert created["name"] == "api"  # lower-cased on write
    admin_role = pdp_lab.ok("GET", "/domain/api/role/admin").json()
    assert admin_role["name"] == "api:role.admin"
    assert admin_role["roleMembers"] == [{"memberName": ADMIN_PRINCIPAL}]
    assert pdp_lab.zms_call("POST", "/domain", {"name": "api"}).status_code == 409
    assert pdp_lab.ok("DELETE", "/domain/api").status_code == 204
    missing = pdp_lab.zms_call("GET", "/domain/api")
    assert missing.status_code == 404 and missing.json()["message"] == "No such domain: api"


def test_only_the_system_admin_creates_top_level_domains(world: PdpLab) -> None:
    response = world.zms_call("POST", "/domain", {"name": "mine"}, principal=MCP)
    assert response.status_code == 403
    assert response.json()["error"] == "access_denied"


def test_only_domain_admins_change_a_domain(world: PdpLab) -> None:
    refused = world.zms_call(
        "PUT",
        "/domain/api/role/docs-getter/member/human.mallory",
        {"memberName": "human.mallory"},
        principal=MCP,
    )
    assert refused.status_code == 403
    world.ok("PUT", f"/domain/api/role/admin/member/{MCP}", {"memberName": MCP})
    allowed = world.zms_call(
        "PUT",
        "/domain/api/role/docs-getter/member/human.mallory",
        {"memberName": "human.mallory"},
        principal=MCP,
    )
    assert allowed.status_code == 204
    assert world.zms_call("DELETE", "/domain/ai/service/agent", principal=MCP).status_code == 403


def test_role_members_and_athenz_return_object(world: PdpLab) -> None:
    headers = {
        "Authorization": "Bearer "
        + make_admin_assertion(ADMIN_PRINCIPAL, world.key(ADMIN_PRINCIPAL), world.zms),
        "Athenz-Return-Object": "true",
    }
    response = world.http.put(
        world.zms + "/domain/api/role/readers",
        headers=headers,
        json={"name": "api:role.readers", "roleMembers": [{"memberName": "user.alice"}]},
    )
    assert response.status_code == 200 and response.json()["name"] == "api:role.readers"
    world.ok(
        "PUT",
        "/domain/api/role/readers/member/human.bob",
        {"memberName": "human.bob", "roleName": "readers", "expiration": "2099-01-01T00:00:00Z"},
    )
    members = world.ok("GET", "/domain/api/role/readers").json()["roleMembers"]
    assert {"memberName": "human.bob", "expiration": "2099-01-01T00:00:00.000Z"} in members
    world.ok("DELETE", "/domain/api/role/readers/member/user.alice")
    assert [
        m["memberName"] for m in world.ok("GET", "/domain/api/role/readers").json()["roleMembers"]
    ] == ["human.bob"]
    gone = world.zms_call("DELETE", "/domain/api/role/readers/member/user.alice")
    assert gone.status_code == 404
    assert "readers" in world.ok("GET", "/domain/api/role").json()["names"]
    missing = world.zms_call("GET", "/domain/api/role/nosuch")
    assert (
        missing.status_code == 404
        and missing.json()["message"] == "getRole: Role not found: 'api:role.nosuch'"
    )


def test_policies_and_assertions(world: PdpLab) -> None:
    added = world.ok(
        "PUT",
        "/domain/api/policy/docs-getter/assertion",
        {
            "role": "api:role.docs-getter",
            "resource": "api:docs",
            "action": "list",
            "effect": "DENY",
        },
    ).json()
    assert added["effect"] == "DENY" and isinstance(added["id"], int)
    policy = world.ok("GET", "/domain/api/policy/docs-getter").json()
    assert [a["action"] for a in policy["assertions"]] == ["get", "list"]
    bad = world.zms_call(
        "PUT",
        "/domain/api/policy/x",
        {
            "assertions": [
                {"role": "api:role.r", "resource": "api:docs", "action": "get", "effect": "MAYBE"}
            ]
        },
    )
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_request"


def test_access_check_reports_the_reason(world: PdpLab) -> None:
    granted = world.ok("GET", f"/access/get/api:docs?principal={LEARNER}").json()
    assert granted["granted"] is True and "api:policy.docs-getter" in granted["reason"]
    refused = world.ok("GET", f"/access/delete/api:docs?principal={LEARNER}").json()
    assert refused["granted"] is False and refused["effect"] == "NO_MATCH"


def test_names_are_validated(world: PdpLab) -> None:
    for path, body in [
        ("/domain/api/role/bad name", {"name": "bad name"}),
        ("/domain/api/role/docs-getter/member/not a principal", {"memberName": "not a principal"}),
        (
            "/domain/api/policy/p",
            {"assertions": [{"role": "api:role.r", "resource": "no-domain", "action": "get"}]},
        ),
        ("/domain/api/service/svc", {"publicKeys": [{"id": "v1", "key": "not-a-key"}]}),
        ("/domain/api/role/docs-getter", {"name": "other:role.docs-getter"}),
    ]:
        response = world.zms_call("PUT", path, body)
        assert response.status_code == 400, (path, response.text)
        assert response.json()["error"] == "invalid_request"
    assert world.zms_call("POST", "/domain", {"name": "has.dot"}).status_code == 400


def test_services_keys_and_provider_endpoint(world: PdpLab) -> None:
    service = world.ok("GET", "/domain/mcp/service/api-mcp").json()
    assert service["name"] == MCP
    assert service["providerEndpoint"] == world.settings.endpoints.mcp
    assert service["publicKeys"][0]["id"] == world.key(MCP).kid
    world.ok("DELETE", "/domain/ai/service/agent")
    assert world.zms_call("GET", "/domain/ai/service/agent").status_code == 404
    # A deleted service can no longer authenticate with its key.
    response = world.client_credentials(AGENT, "api:role.docs-getter-jag-exchanger")
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"


def test_lab_state_round_trip_is_admin_only(world: PdpLab) -> None:
    state = world.ok("GET", "/lab/state").json()
    assert [d["name"] for d in state["domains"]] == ["ai", "api", "human", "mcp"]
    assert world.zms_call("GET", "/lab/state", principal=MCP).status_code == 403
    world.ok("PUT", "/lab/state", {"version": 1, "domains": []})
    assert world.ok("GET", "/domain").json()["names"] == []
    world.ok("PUT", "/lab/state", state)
    assert world.ok("GET", "/lab/state").json() == state
    assert world.client_credentials(LEARNER, "api:role.docs-getter").status_code == 200
    bad = world.zms_call("PUT", "/lab/state", {"domains": "nope"})
    assert bad.status_code == 400


def test_json_body_required(world: PdpLab) -> None:
    headers = {
        "Authorization": "Bearer "
        + make_admin_assertion(ADMIN_PRINCIPAL, world.key(ADMIN_PRINCIPAL), world.zms),
        "Content-Type": "application/json",
    }
    response = world.http.put(
        world.zms + "/domain/api/role/x", headers=headers, content=b"{not json"
    )
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"


def test_long_lived_assertion_is_refused(pdp_lab: PdpLab) -> None:
    token = make_client_assertion(
        ADMIN_PRINCIPAL, pdp_lab.key(ADMIN_PRINCIPAL), pdp_lab.zms, lifetime_s=86400
    )
    response = pdp_lab.http.get(
        pdp_lab.zms + "/domain", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 401
    assert "lifetime" in response.json()["error_description"]


def test_another_service_cannot_register_the_mcp_servers_endpoint(world: PdpLab) -> None:
    """The first registration of a providerEndpoint owns it: no other domain's service can
    make tokens for the MCP server's URL belong to it."""
    key = world.key("ai.rogue")
    body = {
        "name": "ai.rogue",
        "publicKeys": [{"id": key.kid, "key": ybase64_encode(public_pem(key.key))}],
        "providerEndpoint": world.settings.endpoints.mcp,
    }
    response = world.zms_call("PUT", "/domain/ai/service/rogue", body)
    assert response.status_code == 409
    assert response.json()["error"] == "conflict"
    assert MCP in response.json()["message"]
    # The owner re-registers its own URL freely (step 5 run twice).
    world.register_service(MCP, provider_endpoint=world.settings.endpoints.mcp)
