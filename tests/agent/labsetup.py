"""Start and provision the whole lab for the agent's end-to-end tests (STEPS.md steps 2–11)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import httpx

from lab.config import (
    ADMIN_PRINCIPAL,
    AGENT_PRINCIPAL,
    LEARNER_PRINCIPAL,
    MCP_PRINCIPAL,
    Endpoints,
    Settings,
)
from lab.oauth.admin import make_admin_assertion
from lab.oauth.jose import SigningKey, public_pem, ybase64_encode

PARTS = ("lab.idp.app", "lab.pdp.app", "lab.docapi.app", "lab.mcpserver.app")


@dataclasses.dataclass
class RunningLab:
    settings: Settings
    endpoints: Endpoints
    admin: Admin


class Admin:
    """ZMS and /lab/* calls as the system admin, each with a fresh signed assertion."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.endpoints = settings.endpoints
        self.key = SigningKey.load_or_create(settings.key_file(ADMIN_PRINCIPAL))
        self.http = httpx.Client(timeout=30)

    def call(self, method: str, url: str, audience: str, body: Any = None) -> httpx.Response:
        token = make_admin_assertion(ADMIN_PRINCIPAL, self.key, audience)
        response = self.http.request(
            method, url, json=body, headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code < 300, (
            f"{method} {url} -> {response.status_code} {response.text}"
        )
        return response

    def zms(self, method: str, path: str, body: Any = None) -> httpx.Response:
        return self.call(method, f"{self.endpoints.zms}{path}", self.endpoints.zms, body)

    # Athenz-shaped writes (reference/athenz.md §1)
    def domain(self, name: str) -> None:
        self.zms(
            "POST",
            "/domain",
            {"name": name, "description": f"{name} (lab)", "adminUsers": [ADMIN_PRINCIPAL]},
        )

    def role(self, domain: str, role: str, members: tuple[str, ...] = ()) -> None:
        body: dict[str, Any] = {"name": f"{domain}:role.{role}"}
        if members:
            body["roleMembers"] = [{"memberName": m} for m in members]
        self.zms("PUT", f"/domain/{domain}/role/{role}", body)

    def member(self, domain: str, role: str, member: str) -> None:
        self.zms(
            "PUT",
            f"/domain/{domain}/role/{role}/member/{member}",
            {"memberName": member, "roleName": role},
        )

    def remove_member(self, domain: str, role: str, member: str) -> None:
        self.zms("DELETE", f"/domain/{domain}/role/{role}/member/{member}")

    def policy(self, domain: str, name: str, assertions: list[tuple[str, str, str]]) -> None:
        body = {
            "name": f"{domain}:policy.{name}",
            "assertions": [
                {
                    "role": f"{domain}:role.{role}",
                    "resource": resource,
                    "action": action,
                    "effect": "ALLOW",
                }
                for role, action, resource in assertions
            ],
        }
        self.zms("PUT", f"/domain/{domain}/policy/{name}", body)

    def service(self, principal: str, extra: dict[str, Any] | None = None) -> None:
        domain, _, service = principal.rpartition(".")
        key = SigningKey.load_or_create(self.settings.key_file(principal))
        body = {
            "name": principal,
            "publicKeys": [{"id": key.kid, "key": ybase64_encode(public_pem(key.key))}],
            **(extra or {}),
        }
        self.zms("PUT", f"/domain/{domain}/service/{service}", body)


def provision(admin: Admin, settings: Settings) -> None:
    """STEPS.md steps 2–11 as configuration: the state in which step 12 (get docs) succeeds."""
    endpoints = settings.endpoints
    for domain in ("api", "mcp", "human", "ai"):
        admin.domain(domain)
    # 2-4: docs-getter may get api:docs; the learner holds it
    admin.role("api", "docs-getter")
    admin.policy("api", "docs-getter", [("docs-getter", "get", "api:docs")])
    admin.service(LEARNER_PRINCIPAL)
    admin.member("api", "docs-getter", LEARNER_PRINCIPAL)
    # 5, 7: the MCP server, and its right to exchange the user's token for docs-getter
    admin.service(MCP_PRINCIPAL, {"providerEndpoint": endpoints.mcp})
    # (the exchange crosses mcp -> api: each domain grants its half, the tutorial's names)
    admin.role("mcp", "to-api-exchanger", (MCP_PRINCIPAL,))
    admin.policy(
        "mcp", "to-api-exchanger", [("to-api-exchanger", "zts.token_source_exchange", "mcp:api")]
    )
    admin.role("api", "docs-getter-exchanger", (MCP_PRINCIPAL,))
    admin.policy(
        "api",
        "docs-getter-exchanger",
        [("docs-getter-exchanger", "zts.token_target_exchange", "api:mcp:role.docs-getter")],
    )
    # 8: the MCP server requires access on mcp:mcp; the learner holds mcp-accessor
    admin.role("mcp", "mcp-accessor", (LEARNER_PRINCIPAL,))
    admin.policy("mcp", "mcp-accessor", [("mcp-accessor", "access", "mcp:mcp")])
    admin.call(
        "PUT",
        f"{endpoints.mcp_origin}/lab/settings",
        endpoints.mcp_origin,
        {"require_access": True},
    )
    # 10: trust the IdP
    providers = [
        {
            "issuerUri": endpoints.idp_issuer,
            "jwksUri": endpoints.idp_jwks,
            "principalTemplate": "human.{preferred_username}",
        }
    ]
    settings.providers_file.write_text(json.dumps(providers))
    admin.call("POST", f"{endpoints.zts}/lab/reload", endpoints.zts)
    # 11: the agent may ask for ID-JAGs for both roles
    admin.service(AGENT_PRINCIPAL)
    admin.role("api", "docs-getter-jag-exchanger", (AGENT_PRINCIPAL,))
    admin.policy(
        "api",
        "docs-getter-jag-exchanger",
        [("docs-getter-jag-exchanger", "zts.jag_exchange", "api:role.docs-getter")],
    )
    admin.role("mcp", "mcp-accessor-jag-exchanger", (AGENT_PRINCIPAL,))
    admin.policy(
        "mcp",
        "mcp-accessor-jag-exchanger",
        [("mcp-accessor-jag-exchanger", "zts.jag_exchange", "mcp:role.mcp-accessor")],
    )
