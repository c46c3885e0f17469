"""The protected document API's local policy decisions (ZPE-style, from signed policy data)."""

from __future__ import annotations

import httpx

from tests.docapi.conftest import DocApi

LEARNER = "human.idjag-learner"
AGENT = "ai.agent"
MCP = "mcp.api-mcp"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_granted_role_reads_the_documents_and_sees_who_called(docapi: DocApi) -> None:
    docapi.zts.allow("api:role.docs-getter", "get")
    token = docapi.zts.token(LEARNER, ["docs-getter"])
    response = httpx.get(f"{docapi.protected}/api/docs", headers=bearer(token))
    assert response.status_code == 200
    body = response.json()
    assert [doc["id"] for doc in body["docs"]] == [1, 2]
    assert body["caller"]["sub"] == LEARNER
    assert body["caller"]["client_id"] == LEARNER
    assert body["caller"]["aud"] == "api"
    assert body["caller"]["scope"] == "docs-getter"
    assert token not in response.text  # the claims, never the token


def test_token_without_a_granting_role_is_403_insufficient_scope_naming_action_and_resource(
    docapi: DocApi,
) -> None:
    docapi.zts.allow("api:role.docs-getter", "get")
    token = docapi.zts.token(LEARNER, ["mcp-accessor"])
    response = httpx.get(f"{docapi.protected}/api/docs", headers=bearer(token))
    assert response.status_code == 403
    assert response.json()["error"] == "insufficient_scope"
    assert response.json()["error_description"].startswith(
        "Token does not have 'get' action on 'api:docs'"
    )
    assert response.headers["www-authenticate"].startswith('Bearer error="insufficient_scope"')


def test_each_method_needs_its_own_action(docapi: DocApi) -> None:
    docapi.zts.allow("api:role.docs-getter", "get")
    token = docapi.zts.token(LEARNER, ["docs-getter"])
    post = httpx.post(
        f"{docapi.protected}/api/docs", json={"name": "n", "content": "c"}, headers=bearer(token)
    )
    assert post.status_code == 403
    assert "'post' action on 'api:docs'" in post.json()["error_description"]
    delete = httpx.delete(f"{docapi.protected}/api/docs/1", headers=bearer(token))
    assert delete.status_code == 403
    assert "'delete' action on 'api:docs'" in delete.json()["error_description"]

    docapi.zts.allow("api:role.docs-poster", "post")
    poster = docapi.zts.token(LEARNER, ["docs-poster"])
    created = httpx.post(
        f"{docapi.protected}/api/docs", json={"name": "n", "content": "c"}, headers=bearer(poster)
    )
    assert created.status_code == 201
    assert created.json()["success"] is True
    assert created.json()["doc"] == {"id": 3, "name": "n", "content": "c"}
    assert created.json()["caller"]["scope"] == "docs-poster"


def test_revoked_grant_stops_working_on_the_next_request(docapi: DocApi) -> None:
    docapi.zts.allow("api:role.docs-getter", "get")
    token = docapi.zts.token(LEARNER, ["docs-getter"])
    assert httpx.get(f"{docapi.protected}/api/docs", headers=bearer(token)).status_code == 200
    docapi.zts.revoke_all()
    refused = httpx.get(f"{docapi.protected}/api/docs", headers=bearer(token))
    assert refused.status_code == 403
    assert refused.json()["error"] == "insufficient_scope"


def test_unchanged_policy_is_revalidated_with_etag(docapi: DocApi) -> None:
    docapi.zts.allow("api:role.docs-getter", "get")
    token = docapi.zts.token(LEARNER, ["docs-getter"])
    for _ in range(3):
        assert httpx.get(f"{docapi.protected}/api/docs/1", headers=bearer(token)).status_code == 200
    assert docapi.zts.policy_fetches >= 3  # refresh_s = 0 in tests: every request revalidates


def test_deny_for_an_acting_agent_beats_the_users_own_allow(docapi: DocApi) -> None:
    docapi.zts.allow("api:role.docs-deleter", "delete")
    docapi.zts.allow("api:role.agents", "delete", effect="DENY")
    docapi.zts.roles = {"api:role.agents": [AGENT], "api:role.docs-deleter": [LEARNER]}
    direct = docapi.zts.token(LEARNER, ["docs-deleter"])
    assert httpx.delete(f"{docapi.protected}/api/docs/1", headers=bearer(direct)).status_code == 200

    via_agent = docapi.zts.token(
        LEARNER, ["docs-deleter"], client_id=MCP, act={"sub": MCP, "act": {"sub": AGENT}}
    )
    refused = httpx.delete(f"{docapi.protected}/api/docs/2", headers=bearer(via_agent))
    assert refused.status_code == 403
    assert refused.json()["error"] == "insufficient_scope"
    assert "'delete' action on 'api:docs'" in refused.json()["error_description"]


def test_domain_without_policies_grants_nothing(docapi: DocApi) -> None:
    token = docapi.zts.token(LEARNER, ["docs-getter"])
    response = httpx.get(f"{docapi.protected}/api/docs", headers=bearer(token))
    assert response.status_code == 403
    assert response.json()["error"] == "insufficient_scope"
