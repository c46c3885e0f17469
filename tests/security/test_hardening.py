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


# ------------------------------------------------------------------------------ header sets


def raw_get(url: str, header_lines: list[bytes]) -> tuple[int, dict[str, Any]]:
    """A GET with header lines exactly as given (httpx refuses to send control characters or
    repeat a header it builds itself): the status and the JSON body (empty if none)."""
    import socket

    parsed = httpx.URL(url)
    target = parsed.raw_path.decode()
    lines = [f"GET {target} HTTP/1.1".encode(), f"Host: {parsed.host}:{parsed.port}".encode()]
    request = b"\r\n".join([*lines, *header_lines, b"Connection: close", b"", b""])
    with socket.create_connection((parsed.host, parsed.port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    try:
        parsed_body = json.loads(body) if body else {}
    except ValueError:
        parsed_body = {}
    return status, parsed_body if isinstance(parsed_body, dict) else {}


#: (what, header lines, words of the refusal).
MALFORMED_HEADER_SETS: list[tuple[str, list[bytes], str]] = [
    (
        "Authorization twice",
        [b"Authorization: Bearer a.b.c", b"Authorization: Bearer x.y.z"],
        "header authorization is sent more than once",
    ),
    (
        "Content-Type twice",
        [b"Content-Type: application/json", b"Content-Type: text/plain"],
        "header content-type is sent more than once",
    ),
    (
        "X-Correlation-Id twice",
        [b"X-Correlation-Id: one", b"X-Correlation-Id: two"],
        "header x-correlation-id is sent more than once",
    ),
    ("ESC in a header", [b"X-Correlation-Id: a\x1b[31mb"], "contains the control character U+001B"),
    ("SOH in User-Agent", [b"User-Agent: lab\x01"], "contains the control character U+0001"),
    ("DEL in Authorization", [b"Authorization: Bearer a\x7fb"], "U+007F"),
]


@pytest.mark.parametrize("part", PARTS)
@pytest.mark.parametrize(
    ("what", "lines", "words"),
    MALFORMED_HEADER_SETS,
    ids=[row[0] for row in MALFORMED_HEADER_SETS],
)
def test_a_malformed_header_set_is_400_at_every_part(
    kit: Kit, part: str, what: str, lines: list[bytes], words: str
) -> None:
    """A single-valued header sent twice (which one counts differs between a proxy and the
    lab) or a control character in a value (RFC 9110 §5.5; it reaches logs and the audit
    trail): 400 ``invalid_request`` saying which - before authentication or routing."""
    status, body = raw_get(part_url(kit, part), lines)
    assert status == 400, (part, status, body)
    assert body.get("error") == "invalid_request", body
    assert words in body.get("error_description", ""), body


@pytest.mark.parametrize("part", PARTS)
def test_tabs_obs_text_and_repeatable_headers_are_still_served(kit: Kit, part: str) -> None:
    """The guard: HTAB and obs-text are legal in a value, and headers that may repeat do."""
    lines = [b"Accept: application/json", b"Accept: */*", b"X-Note: a\tb\xe9"]
    status, _ = raw_get(part_url(kit, part), lines)
    assert status < 400 or status in (401, 405), (part, status)


def test_json_with_a_member_twice_is_400_everywhere_json_is_read(kit: Kit) -> None:
    """RFC 8259 §4: which of two values counts differs between parsers - refused, not the last
    one silently taken (the document API stored ``"b"`` for ``{"name":"a","name":"b"}``)."""
    endpoints = kit.lab.endpoints
    twice = '{"name": "a", "name": "b", "content": "c"}'
    for url in (f"{endpoints.docapi_unprotected}/api/docs", f"{endpoints.zms}/domain"):
        response = post_json(url, twice)
        assert response.status_code == 400, (url, response.text)
        assert response.json()["error"] == "invalid_request"
        assert "'name' appears twice" in response.json()["error_description"], response.text


def zms_get(kit: Kit, path: str) -> httpx.Response:
    from lab.config import ADMIN_PRINCIPAL
    from lab.oauth.admin import make_admin_assertion
    from lab.oauth.jose import SigningKey

    key = SigningKey.load_or_create(kit.lab.settings.key_file(ADMIN_PRINCIPAL))
    token = make_admin_assertion(ADMIN_PRINCIPAL, key, kit.lab.endpoints.zms)
    return httpx.get(f"{kit.lab.endpoints.zms}{path}", headers={"Authorization": f"Bearer {token}"})


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("/access/get/api:docs?principal=ai.agent&principal=human.idjag-learner", "repeated"),
        ("/lab/audit?since=1&since=2", "repeated"),
        ("/lab/audit?since=" + "9" * 30, "at most 18 digits"),
        ("/lab/audit?since=%201", "at most 18 digits"),
        ("/lab/audit?since=1_0", "at most 18 digits"),
        ("/lab/audit?since=%D9%A1", "at most 18 digits"),  # Arabic-Indic one
        ("/lab/audit?limit=1&limit=5", "repeated"),
    ],
)
def test_zms_query_parameters_are_single_and_plain(kit: Kit, path: str, words: str) -> None:
    """A repeated query parameter is ambiguous (the access check answered for one of two
    principals); a number is ASCII digits that fit the store (30 digits overflowed SQLite)."""
    response = zms_get(kit, path)
    assert response.status_code == 400, (path, response.status_code, response.text[:200])
    assert response.json()["error"] == "invalid_request"
    assert words in response.json()["error_description"], response.text


@pytest.mark.parametrize(
    ("sent", "kept"),
    [(b"gw-1234.abc:x_y", True), (b"a\x9b31mb", False), (b"caf\xe9", False), (b"a b", False)],
)
def test_a_correlation_id_is_kept_only_when_it_is_a_plain_label(
    kit: Kit, sent: bytes, kept: bool
) -> None:
    """The PDP writes a token request's ``X-Correlation-Id`` into the audit trail and echoes
    it: a value that is not a plain ASCII label (a latin-1 ``\\x9b`` is a terminal's CSI) is
    replaced by a fresh id, as the MCP server already dropped it."""
    from lab.oauth.jose import make_client_assertion
    from lab.oauth.tokens import CLIENT_ASSERTION_TYPE_JWT_BEARER

    endpoints = kit.lab.endpoints
    form = {
        **kit.base_form("id-jag", kit.id_token_raw),
        "client_assertion_type": CLIENT_ASSERTION_TYPE_JWT_BEARER,
        "client_assertion": make_client_assertion(
            AGENT_PRINCIPAL, kit.key(AGENT_PRINCIPAL), endpoints.zts
        ),
    }
    response = kit.http.post(endpoints.zts_token, data=form, headers={b"X-Correlation-Id": sent})
    assert response.status_code == 200, response.text
    echoed = response.headers["x-correlation-id"]
    if kept:
        assert echoed == sent.decode()
    else:
        assert echoed != sent.decode("latin-1") and echoed.isalnum() and echoed.isascii()


@pytest.mark.parametrize(("sent", "kept"), [(b"zms-1234.a:b_c", True), (b"a\x9b31mb", False)])
def test_a_zms_writes_correlation_id_reaches_the_audit_trail_only_as_a_plain_label(
    kit: Kit, sent: bytes, kept: bool
) -> None:
    """ZMS records every write in the audit trail with the caller's ``X-Correlation-Id``: the
    same rule as the ZTS above, so a latin-1 ``\\x9b`` (a terminal's CSI) is never stored."""
    from lab.config import ADMIN_PRINCIPAL
    from lab.oauth.admin import make_admin_assertion
    from lab.oauth.jose import SigningKey

    endpoints = kit.lab.endpoints
    key = SigningKey.load_or_create(kit.lab.settings.key_file(ADMIN_PRINCIPAL))
    token = make_admin_assertion(ADMIN_PRINCIPAL, key, endpoints.zms)
    name = "corr-kept" if kept else "corr-replaced"  # the lab lives for the whole module
    body = {"name": name, "description": name, "adminUsers": [ADMIN_PRINCIPAL]}
    written = httpx.post(
        f"{endpoints.zms}/domain",
        json=body,
        headers={"Authorization": f"Bearer {token}", b"X-Correlation-Id": sent},
    )
    assert written.status_code < 300, written.text
    newest = zms_get(kit, "/lab/audit?last=1").json()
    records = newest["records"] if isinstance(newest, dict) else newest
    stored = records[-1]["correlation_id"]
    if kept:
        assert stored == sent.decode()
    else:
        assert stored != sent.decode("latin-1") and stored.isascii() and stored.isalnum()
