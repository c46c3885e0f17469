"""End to end over real HTTP with the real PDP: learner token → MCP → RFC 8693 exchange → API.

The PDP (lab.pdp) is provisioned through its ZMS API with admin assertions, exactly as the
steps do; the MCP server and the protected document API validate its tokens and policy.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from lab.config import ADMIN_PRINCIPAL, LEARNER_PRINCIPAL, MCP_PRINCIPAL, Settings
from lab.docapi.app import create_app as create_docapi
from lab.mcpserver import HOPS_META_KEY
from lab.mcpserver.app import create_app as create_mcp
from lab.oauth.admin import make_admin_assertion
from lab.oauth.jose import (
    SigningKey,
    make_client_assertion,
    public_pem,
    token_fingerprint,
    unverified_claims,
    ybase64_encode,
)
from lab.oauth.tokens import CLIENT_ASSERTION_TYPE_JWT_BEARER, GRANT_CLIENT_CREDENTIALS
from tests.mcpserver.conftest import call_tool, tool_text
from tests.mcpserver.test_mcp_auth import INITIALIZE, MCP_HEADERS

pdp_app = pytest.importorskip("lab.pdp.app", reason="the PDP (lab.pdp.app) is not available")

IMPERSONATION_REFUSED = "Principal not authorized for token impersonation from source domain"


@dataclass
class Lab:
    settings: Settings
    mcp_origin: str
    docapi: str
    admin: SigningKey
    learner: SigningKey

    @property
    def mcp_url(self) -> str:
        return f"{self.mcp_origin}/mcp"

    def zms(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        zms = self.settings.endpoints.zms
        assertion = make_admin_assertion(ADMIN_PRINCIPAL, self.admin, zms)
        response = httpx.request(
            method, f"{zms}{path}", json=body, headers={"Authorization": f"Bearer {assertion}"}
        )
        assert response.status_code < 300, (
            f"{method} {path}: {response.status_code} {response.text}"
        )
        return response

    def add_role(self, domain: str, role: str, members: list[str]) -> None:
        self.zms(
            "PUT",
            f"/domain/{domain}/role/{role}",
            {"name": f"{domain}:role.{role}", "roleMembers": [{"memberName": m} for m in members]},
        )

    def add_policy(self, domain: str, name: str, assertions: list[dict[str, str]]) -> None:
        self.zms(
            "PUT",
            f"/domain/{domain}/policy/{name}",
            {"name": f"{domain}:policy.{name}", "assertions": assertions},
        )

    def add_service(self, domain: str, service: str, key: SigningKey, **extra: Any) -> None:
        body = {
            "name": f"{domain}.{service}",
            "publicKeys": [{"id": key.kid, "key": ybase64_encode(public_pem(key.key))}],
            **extra,
        }
        self.zms("PUT", f"/domain/{domain}/service/{service}", body)

    def learner_token(self, scope: str, resource: str | None = "mcp") -> str:
        """The learner's client-credentials token: for the MCP server (RFC 8707 resource = its
        URL, as steps 6-8 ask) unless ``resource`` is None (then Athenz's ``aud`` = domain)."""
        endpoints = self.settings.endpoints
        form = {
            "grant_type": GRANT_CLIENT_CREDENTIALS,
            "scope": scope,
            **({"resource": endpoints.mcp} if resource else {}),
            "client_assertion_type": CLIENT_ASSERTION_TYPE_JWT_BEARER,
            "client_assertion": make_client_assertion(
                LEARNER_PRINCIPAL, self.learner, endpoints.zts
            ),
        }
        response = httpx.post(endpoints.zts_token, data=form)
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    def require_access(self) -> None:
        assertion = make_admin_assertion(ADMIN_PRINCIPAL, self.admin, self.mcp_origin)
        response = httpx.put(
            f"{self.mcp_origin}/lab/settings",
            json={"require_access": True},
            headers={"Authorization": f"Bearer {assertion}"},
        )
        assert response.status_code == 200

    def grant_token_exchange(self) -> None:
        """Step 7: the MCP server may take mcp tokens into api, for api:role.docs-getter."""
        self.add_role("mcp", "to-api-exchanger", [MCP_PRINCIPAL])
        self.add_policy(
            "mcp",
            "to-api-exchanger",
            [
                {
                    "role": "mcp:role.to-api-exchanger",
                    "action": "zts.token_source_exchange",
                    "resource": "mcp:api",
                }
            ],
        )
        self.add_role("api", "docs-getter-exchanger", [MCP_PRINCIPAL])
        self.add_policy(
            "api",
            "docs-getter-exchanger",
            [
                {
                    "role": "api:role.docs-getter-exchanger",
                    "action": "zts.token_target_exchange",
                    "resource": "api:mcp:role.docs-getter",
                }
            ],
        )


@pytest.fixture
def lab(
    lab_settings: Settings, reserved_sockets: dict[str, socket.socket], serve: Callable[..., str]
) -> Lab:
    admin = SigningKey.load_or_create(lab_settings.key_file(ADMIN_PRINCIPAL))
    app = pdp_app.create_app(lab_settings)
    serve(app, reserved_sockets["zms"])
    serve(app, reserved_sockets["zts"])
    docapi = serve(
        create_docapi(lab_settings, protected=True), reserved_sockets["docapi_protected"]
    )
    mcp_origin = serve(create_mcp(lab_settings), reserved_sockets["mcp"])
    learner = SigningKey.load_or_create(lab_settings.key_file(LEARNER_PRINCIPAL))
    mcp_key = SigningKey.load_or_create(lab_settings.key_file(MCP_PRINCIPAL))
    setup = Lab(
        settings=lab_settings, mcp_origin=mcp_origin, docapi=docapi, admin=admin, learner=learner
    )
    # Steps 2-5: domains, the docs-getter role and policy, the learner and MCP services.
    for domain in ("api", "mcp", "human"):
        setup.zms("POST", "/domain", {"name": domain, "adminUsers": [ADMIN_PRINCIPAL]})
    setup.add_role("api", "docs-getter", [LEARNER_PRINCIPAL])
    setup.add_policy(
        "api",
        "docs-getter",
        [{"role": "api:role.docs-getter", "action": "get", "resource": "api:docs"}],
    )
    setup.add_service("human", "idjag-learner", learner)
    setup.add_service("mcp", "api-mcp", mcp_key, providerEndpoint=lab_settings.endpoints.mcp)
    return setup


def test_learner_token_reads_the_protected_api_directly(lab: Lab) -> None:
    token = lab.learner_token("api:role.docs-getter", resource=None)
    response = httpx.get(f"{lab.docapi}/api/docs", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response.json()["caller"]["sub"] == LEARNER_PRINCIPAL


async def test_refused_exchange_surfaces_as_a_tool_error_with_athenz_message(lab: Lab) -> None:
    token = lab.learner_token("api:role.docs-getter")
    result = await call_tool(lab.mcp_url, token, "list_docs")
    assert result.is_error is True
    text = tool_text(result)
    assert IMPERSONATION_REFUSED in text
    assert "HTTP 403" in text
    assert "zts.token_source_exchange" in text


async def test_granted_exchange_reaches_the_api_with_a_new_token_for_the_learner(lab: Lab) -> None:
    lab.grant_token_exchange()
    token = lab.learner_token("api:role.docs-getter")
    result = await call_tool(lab.mcp_url, token, "list_docs")
    assert result.is_error is False, tool_text(result)
    data = result.structured_content
    assert data is not None
    assert [doc["id"] for doc in data["docs"]] == [1, 2]
    received_jti = unverified_claims(token)["jti"]
    assert data["received_token"]["jti"] == received_jti
    # The document API saw the exchanged token: same user, the MCP server as client, new jti.
    assert data["caller"]["jti"] == data["exchanged_token"]["jti"]
    assert data["caller"]["jti"] != received_jti
    assert data["caller"]["sub"] == LEARNER_PRINCIPAL
    assert data["caller"]["client_id"] == MCP_PRINCIPAL
    assert data["caller"]["aud"] == "api"


async def test_required_access_on_mcp_mcp_refuses_then_admits_with_mcp_accessor(lab: Lab) -> None:
    lab.grant_token_exchange()
    lab.require_access()
    old = lab.learner_token("api:role.docs-getter")
    refused = httpx.post(
        lab.mcp_url, json=INITIALIZE, headers={**MCP_HEADERS, "Authorization": f"Bearer {old}"}
    )
    assert refused.status_code == 403
    assert refused.json()["error"] == "insufficient_scope"
    assert "resource_metadata=" in refused.headers["www-authenticate"]

    lab.add_role("mcp", "mcp-accessor", [LEARNER_PRINCIPAL])
    lab.add_policy(
        "mcp",
        "mcp-accessor",
        [{"role": "mcp:role.mcp-accessor", "action": "access", "resource": "mcp:mcp"}],
    )
    both = lab.learner_token("api:role.docs-getter mcp:role.mcp-accessor")
    result = await call_tool(lab.mcp_url, both, "list_docs")
    assert result.is_error is False, tool_text(result)
    assert result.structured_content["caller"]["client_id"] == MCP_PRINCIPAL


async def test_removed_membership_fails_the_exchange_naming_the_missing_role(lab: Lab) -> None:
    lab.grant_token_exchange()
    token = lab.learner_token("api:role.docs-getter")
    assert (await call_tool(lab.mcp_url, token, "list_docs")).is_error is False
    lab.zms("DELETE", f"/domain/api/role/docs-getter/member/{LEARNER_PRINCIPAL}")
    result = await call_tool(lab.mcp_url, token, "list_docs")
    assert result.is_error is True
    text = tool_text(result)
    assert (
        "principal human.idjag-learner is not included in the requested role(s) in domain api"
        in text
    )
    assert "not a member of api:role.docs-getter" in text
    assert "HTTP 403" in text


def test_deleted_policy_stops_the_direct_call_on_the_next_request(lab: Lab) -> None:
    token = lab.learner_token("api:role.docs-getter", resource=None)
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{lab.docapi}/api/docs", headers=headers).status_code == 200
    lab.zms("DELETE", "/domain/api/policy/docs-getter")
    refused = httpx.get(f"{lab.docapi}/api/docs", headers=headers)
    assert refused.status_code == 403
    assert refused.json()["error"] == "insufficient_scope"
    assert refused.json()["error_description"].startswith(
        "Token does not have 'get' action on 'api:docs'"
    )


async def test_a_refused_exchange_reports_the_mcp_servers_own_call_in_meta(lab: Lab) -> None:
    token = lab.learner_token("api:role.docs-getter")
    result = await call_tool(lab.mcp_url, token, "list_docs")
    assert result.is_error is True
    hops = (result.meta or {})[HOPS_META_KEY]
    # One hop: the exchange at the PDP, refused in both dialects; no call to the document API.
    assert [(h["method"], h["status"]) for h in hops] == [("POST", 403)]
    assert hops[0]["url"] == lab.settings.endpoints.zts_token
    body = json.loads(hops[0]["response_body"])
    assert body["error"] == "unauthorized_client" and body["message"] == IMPERSONATION_REFUSED
    assert "subject_token=***" in hops[0]["request_body"]
    assert "client_assertion=***" in hops[0]["request_body"]
    assert token not in json.dumps(hops)


async def test_a_granted_exchange_reports_both_hops_and_keeps_the_api_token_on_the_server(
    lab: Lab,
) -> None:
    lab.grant_token_exchange()
    token = lab.learner_token("api:role.docs-getter")
    result = await call_tool(lab.mcp_url, token, "list_docs")
    assert result.is_error is False, tool_text(result)
    hops = (result.meta or {})[HOPS_META_KEY]
    assert [(h["method"], h["status"]) for h in hops] == [("POST", 200), ("GET", 200)]
    exchange, docs = hops
    assert json.loads(exchange["response_body"])["access_token"] == "***"
    assert docs["request_headers"]["authorization"] == "Bearer ***"
    [issued] = exchange["tokens"]
    assert issued["claims"]["aud"] == "api" and issued["claims"]["sub"] == LEARNER_PRINCIPAL
    assert issued["claims"]["jti"] == result.structured_content["exchanged_token"]["jti"]
    assert issued["signature"]["valid"] is True and issued["signature"]["kid"]
    # The exchange presented the caller's token: named by fingerprint, never shown.
    presented = {p["where"]: p["fingerprint"] for p in exchange["presented"]}
    assert presented["request.form.subject_token"] == token_fingerprint(token)
    assert "eyJ" not in json.dumps(hops)  # no JWT of any kind leaves the MCP server
