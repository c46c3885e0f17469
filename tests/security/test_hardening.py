"""Hostile bodies, hostile numbers and hostile Host headers against every part: 4xx, never 5xx.

Reproduced findings (issue #16): 10,000-level JSON crashed ZMS before authentication and both
document API ports; integer claims >= 2^63 overflowed SQLite when the jti was stored; a string
``exp`` was coerced; JSON ``NaN`` was accepted; the unprotected document API port answered any
``Host`` (DNS rebinding); no ``X-Content-Type-Options: nosniff``.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route
from starlette.testclient import TestClient

from lab.config import AGENT_PRINCIPAL, MCP_PRINCIPAL
from lab.oauth.jose import b64url
from lab.oauth.starlette import exception_handlers
from tests.security.test_token_battery import Attempt, Kit, client_claims, kit

__all__ = ["kit"]

NESTED = "[" * 10_000 + "]" * 10_000
NESTED_OBJECT = '{"a":' * 5_000 + "1" + "}" * 5_000


def unsigned_with_payload(payload: str, typ: str = "JWT") -> str:
    """A JWS whose payload is raw text (pyjwt cannot produce a nested or NaN payload)."""
    header = b64url(json.dumps({"alg": "ES256", "typ": typ, "kid": "x"}).encode())
    signature = b64url(b"\0" * 64)
    return f"{header}.{b64url(payload.encode())}.{signature}"


def post_json(url: str, body: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(
        url, content=body, headers={"Content-Type": "application/json", **(headers or {})}
    )


@pytest.mark.parametrize("body", [NESTED, NESTED_OBJECT])
def test_deeply_nested_json_is_400_at_zms_before_authentication(kit: Kit, body: str) -> None:
    response = post_json(f"{kit.lab.endpoints.zms}/domain", body)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_request"


@pytest.mark.parametrize("body", [NESTED, NESTED_OBJECT])
def test_deeply_nested_json_is_400_at_the_unprotected_document_api(kit: Kit, body: str) -> None:
    response = post_json(f"{kit.lab.endpoints.docapi_unprotected}/api/docs", body)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_request"


def test_deeply_nested_json_never_crashes_the_protected_parts(kit: Kit) -> None:
    endpoints = kit.lab.endpoints
    token = {"Authorization": f"Bearer {kit.api_at()}"}
    for url, headers in [
        (f"{endpoints.docapi_protected}/api/docs", token),
        (f"{endpoints.docapi_protected}/lab/state", {}),
        (f"{endpoints.mcp_origin}/lab/settings", {}),
        (endpoints.mcp, {"Authorization": f"Bearer {kit.mcp_access_raw}"}),
    ]:
        response = post_json(url, NESTED, headers)
        assert 400 <= response.status_code < 500, (url, response.status_code, response.text)


@pytest.mark.parametrize(
    "body",
    ['{"name": "x", "content": NaN}', '{"name": "x", "content": Infinity}', '{"name": -Infinity}'],
)
def test_json_nan_and_infinity_are_400(kit: Kit, body: str) -> None:
    response = post_json(f"{kit.lab.endpoints.docapi_unprotected}/api/docs", body)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_request"
    zms = post_json(f"{kit.lab.endpoints.zms}/domain", body.replace("content", "description"))
    assert zms.status_code == 400, zms.text


@pytest.mark.parametrize("payload", [NESTED, '{"exp": NaN}', '{"exp": 1e400}'])
def test_hostile_jwt_payloads_are_refused_everywhere(kit: Kit, payload: str) -> None:
    token = unsigned_with_payload(payload)
    assertion = kit.send("redeem", Attempt(kit.genuine_jag(), client_assertion=token))
    assert (assertion.status_code, assertion.json()["error"]) == (401, "invalid_client")
    for target, status, error in [
        ("redeem", 400, "invalid_grant"),
        ("exchange", 400, "invalid_grant"),
        ("id-jag", 400, "invalid_grant"),
        ("docapi", 401, None),
        ("mcp", 401, None),
    ]:
        client = MCP_PRINCIPAL if target == "exchange" else AGENT_PRINCIPAL
        response = kit.send(target, Attempt(token, client=client))
        assert response.status_code == status, (target, response.text)
        if error is not None:
            assert response.json()["error"] == error, (target, response.text)


HUGE_TIMES: list[Any] = [2**63, 2**64 + 5, 10**30, "9999999999", True, -1, 1.5e300]


@pytest.mark.parametrize("exp", HUGE_TIMES)
def test_client_assertion_exp_must_be_a_bounded_number(kit: Kit, exp: Any) -> None:
    assertion = kit.key(AGENT_PRINCIPAL).sign(client_claims(kit, exp=exp), typ="JWT")
    response = kit.send("redeem", Attempt(kit.genuine_jag(), client_assertion=assertion))
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_client"


@pytest.mark.parametrize("claim", ["exp", "iat", "nbf"])
@pytest.mark.parametrize("value", [2**63, "1700000000", False])
def test_id_jag_time_claims_must_be_bounded_numbers(kit: Kit, claim: str, value: Any) -> None:
    response = kit.send("redeem", Attempt(kit.jag(**{claim: value})))
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_grant"


def test_refused_huge_exp_is_audited(kit: Kit) -> None:
    before = kit.lab.admin.zms("GET", "/lab/audit").json()["records"]
    response = kit.send("redeem", Attempt(kit.jag(exp=2**63)))
    assert response.json()["error"] == "invalid_grant"
    after = kit.lab.admin.zms("GET", "/lab/audit").json()["records"]
    assert len(after) == len(before) + 1
    assert after[-1]["decision"] == "deny"
    assert "NumericDate" in after[-1]["reason"]


# ------------------------------------------------------------------------------ Host, nosniff

PARTS = ["idp", "zms", "zts", "docapi_protected", "docapi_unprotected", "mcp"]


def part_url(kit: Kit, part: str) -> str:
    endpoints = kit.lab.endpoints
    return {
        "idp": f"{endpoints.idp_issuer}/.well-known/openid-configuration",
        "zms": f"{endpoints.zms}/domain",
        "zts": f"{endpoints.zts}/oauth2/keys",
        "docapi_protected": f"{endpoints.docapi_protected}/api/docs",
        "docapi_unprotected": f"{endpoints.docapi_unprotected}/api/docs",
        "mcp": f"{endpoints.mcp_origin}/.well-known/oauth-protected-resource/mcp",
    }[part]


@pytest.mark.parametrize("part", PARTS)
@pytest.mark.parametrize("host", ["evil.example", "evil.example:80", "127.0.0.1.evil.example"])
def test_foreign_host_header_is_refused_by_every_part(kit: Kit, part: str, host: str) -> None:
    response = httpx.get(part_url(kit, part), headers={"Host": host})
    assert response.status_code == 421, (part, response.status_code, response.text[:200])
    assert response.json()["error"] == "invalid_request"


@pytest.mark.parametrize("part", PARTS)
def test_loopback_host_is_served_and_every_answer_is_nosniff(kit: Kit, part: str) -> None:
    url = part_url(kit, part)
    port = httpx.URL(url).port
    for host in (f"127.0.0.1:{port}", f"localhost:{port}"):
        response = httpx.get(url, headers={"Host": host})
        assert response.status_code < 500, (part, response.status_code)
        assert response.status_code != 421, (part, host)
        assert response.headers["x-content-type-options"] == "nosniff"
    refused = httpx.get(url, headers={"Host": "evil.example"})
    assert refused.headers["x-content-type-options"] == "nosniff"


def test_unprotected_document_api_refuses_a_rebound_write(kit: Kit) -> None:
    url = f"{kit.lab.endpoints.docapi_unprotected}/api/docs"
    before = httpx.get(url).json()["docs"]
    response = httpx.post(
        url, json={"name": "rebound", "content": "x"}, headers={"Host": "attacker.example:1"}
    )
    assert response.status_code == 421
    assert httpx.get(url).json()["docs"] == before


# ------------------------------------------------------------------------------ catch-all


def test_unexpected_error_is_an_oauth_shaped_500_with_a_correlation_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(request: Request) -> Any:
        raise RuntimeError("secret internal detail")

    app = Starlette(routes=[Route("/x", broken)], exception_handlers=exception_handlers())
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/x")
    assert response.status_code == 500
    body = response.json()
    assert body["error"] == "server_error"
    assert body["correlation_id"] in body["error_description"]
    assert "secret internal detail" not in response.text
    assert "Traceback" not in response.text
    assert body["correlation_id"] in caplog.text


def test_base64_of_nothing_is_still_a_400(kit: Kit) -> None:
    basic = base64.b64encode(b"\xff\xfe:\xff").decode()
    response = httpx.post(
        kit.lab.endpoints.zts_token,
        data={"grant_type": "client_credentials", "scope": "api:domain"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
