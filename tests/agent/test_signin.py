"""Signing the user in: PKCE, the login form driven headlessly, password grant, --browser.

The flows run against the lab's real IdP over HTTP (its realm file is the one Keycloak imports).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from lab.agent import Agent, Recorder
from lab.agent.recorder import REDACTED
from lab.agent.signin import (
    DEFAULT_REALM_FILE,
    IdpClient,
    Pkce,
    SignIn,
    browser_cookie_jar,
    browser_cookies,
    browser_like,
    is_loopback_url,
    parse_login_form,
    sign_in_with_code,
)
from lab.config import Settings
from lab.oauth.jose import JwksCache, verify_jwt


def test_pkce_s256_matches_rfc7636_appendix_b() -> None:
    pkce = Pkce.from_verifier("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")
    assert pkce.challenge == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_new_pkce_verifier_has_rfc_length_and_alphabet() -> None:
    verifier = Pkce.new().verifier
    assert 43 <= len(verifier) <= 128
    assert set(verifier) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
    )


def test_login_form_is_the_form_with_a_password_field() -> None:
    html = """<html><body>
      <form action="/search"><input name="q"></form>
      <form id="kc-form-login" method="post"
            action="/realms/idjag/login-actions/authenticate?session_code=a&amp;tab_id=b">
        <input name="username" type="text"><input name="password" type="password">
        <input type="hidden" name="credentialId" value="">
        <input type="hidden" name="csrf" value="xyz">
      </form></body></html>"""
    form = parse_login_form(
        html, "http://127.0.0.1:9090/realms/idjag/protocol/openid-connect/auth?x=1"
    )
    assert (
        form.action
        == "http://127.0.0.1:9090/realms/idjag/login-actions/authenticate?session_code=a&tab_id=b"
    )
    assert form.method == "POST"
    assert form.fields == {"username": "", "password": "", "credentialId": "", "csrf": "xyz"}


# -- against the real IdP ----------------------------------------------------------------------


@pytest.fixture
def idp_issuer(
    lab_settings: Settings, reserved_sockets: dict[str, socket.socket], serve: Callable[..., str]
) -> str:
    idp_app = pytest.importorskip(
        "lab.idp.app", reason="lab.idp.app (the IdP, issue 4) is not written yet"
    )
    serve(idp_app.create_app(lab_settings, DEFAULT_REALM_FILE), reserved_sockets["idp"])
    return lab_settings.endpoints.idp_issuer


def _verified_id_token(token: str, issuer: str) -> dict:
    jwks = JwksCache(f"{issuer}/protocol/openid-connect/certs")
    return verify_jwt(token, jwks.resolve, issuer=issuer, audience="ai.agent")


def test_code_flow_with_pkce_yields_an_id_token_for_the_agent(
    lab_settings: Settings, idp_issuer: str
) -> None:
    with Agent(lab_settings.endpoints, lab_settings, Recorder()) as agent:
        result = agent.sign_in("idjag-learner", "password", method="code")
        exchanges = list(agent.recorder.exchanges)
    assert result.ok, result
    assert result.method == "code"
    claims = _verified_id_token(result.id_token, idp_issuer)
    assert claims["preferred_username"] == "idjag-learner"
    auth, login, token = exchanges[0], exchanges[-2], exchanges[-1]
    assert auth.method == "GET" and "code_challenge_method=S256" in auth.url
    assert login.method == "POST" and login.status in (302, 303)
    assert dict(parse_qsl(login.request_body))["password"] == REDACTED
    token_form = dict(parse_qsl(token.request_body))
    assert token_form["grant_type"] == "authorization_code"
    assert token_form["code_verifier"] == REDACTED and token_form["client_secret"] == REDACTED
    redirect = IdpClient.from_realm_file().redirect_uri
    assert not any(e.url.startswith(redirect) for e in exchanges), (
        "the redirect is read, never followed"
    )


def test_code_flow_with_wrong_password_returns_login_failed(
    lab_settings: Settings, idp_issuer: str
) -> None:
    with Agent(lab_settings.endpoints, lab_settings, Recorder()) as agent:
        result = agent.sign_in("idjag-learner", "wrong", method="code")
        token_calls = [
            e for e in agent.recorder.exchanges if e.url.endswith("/openid-connect/token")
        ]
    assert not result.ok and result.id_token is None
    assert result.error == "login_failed"
    assert token_calls == [], "a refused login never falls back to the password grant"


def test_password_grant_yields_an_id_token(lab_settings: Settings, idp_issuer: str) -> None:
    with Agent(lab_settings.endpoints, lab_settings, Recorder()) as agent:
        result = agent.sign_in("idjag-learner", "password", method="password")
    assert result.ok and result.method == "password"
    assert _verified_id_token(result.id_token, idp_issuer)["preferred_username"] == "idjag-learner"


def test_password_grant_with_wrong_password_is_400_invalid_grant_as_keycloak_26(
    lab_settings: Settings, idp_issuer: str
) -> None:
    with Agent(lab_settings.endpoints, lab_settings, Recorder()) as agent:
        result = agent.sign_in("idjag-learner", "wrong", method="password")
    assert (result.status, result.error) == (400, "invalid_grant")
    assert result.id_token is None


def test_browser_sign_in_catches_the_redirect_on_a_loopback_listener(
    lab_settings: Settings, idp_issuer: str
) -> None:
    opened: list[str] = []

    def fake_browser(url: str) -> None:
        """A person's browser, reduced to HTTP: show the page, submit the form, follow redirects."""
        opened.append(url)
        with browser_like(httpx.Client(follow_redirects=True)) as browser:
            page = browser.get(url)
            form = parse_login_form(page.text, str(page.url))
            landed = browser.post(
                form.action,
                data={**form.fields, "username": "idjag-learner", "password": "password"},
            )
        assert landed.status_code == 200 and "Signed in" in landed.text

    with Agent(lab_settings.endpoints, lab_settings, Recorder()) as agent:
        result = agent.sign_in_browser(opener=fake_browser, timeout_s=10)
    assert result.ok, result
    assert result.method == "browser"
    assert urlsplit(opened[0]).path.endswith("/protocol/openid-connect/auth")
    assert _verified_id_token(result.id_token, idp_issuer)["preferred_username"] == "idjag-learner"


# -- fallback and failure paths (a stand-in IdP whose page cannot be driven) ------------------


def _undrivable_idp() -> Starlette:
    """An IdP whose login page has no form (e.g. a JavaScript-only page), password grant on."""

    async def auth(request: Request) -> HTMLResponse:
        return HTMLResponse("<html><body><div id='app'>Loading…</div></body></html>")

    async def token(request: Request) -> JSONResponse:
        form = await request.form()
        if form.get("grant_type") == "password" and form.get("password") == "password":
            return JSONResponse(
                {"access_token": "a.b.c", "id_token": "h.i.s", "token_type": "Bearer"}
            )
        return JSONResponse({"error": "invalid_grant", "error_description": "nope"}, 401)

    return Starlette(
        routes=[
            Route("/realms/idjag/protocol/openid-connect/auth", auth),
            Route("/realms/idjag/protocol/openid-connect/token", token, methods=["POST"]),
        ]
    )


CLIENT = IdpClient("ai.agent", "s3cret", "http://127.0.0.1/callback")


def test_code_flow_never_falls_back_to_the_password_grant_unasked(
    lab_settings: Settings, reserved_sockets: dict[str, socket.socket], serve: Callable[..., str]
) -> None:
    serve(_undrivable_idp(), reserved_sockets["idp"])
    with Agent(lab_settings.endpoints, lab_settings, Recorder(), idp_client=CLIENT) as agent:
        result = agent.sign_in("idjag-learner", "password", method="code")
        posts = [e for e in agent.recorder.exchanges if e.method == "POST"]
    assert not result.ok
    assert (result.method, result.error) == ("code", "login_form_missing")
    assert result.fallback_from is None
    assert posts == [], "no password grant was tried"


def test_code_flow_falls_back_when_asked_and_reports_it(
    lab_settings: Settings, reserved_sockets: dict[str, socket.socket], serve: Callable[..., str]
) -> None:
    serve(_undrivable_idp(), reserved_sockets["idp"])
    with Agent(lab_settings.endpoints, lab_settings, Recorder(), idp_client=CLIENT) as agent:
        result = agent.sign_in("idjag-learner", "password", method="code", fallback=True)
        grants = [
            dict(parse_qsl(e.request_body)).get("grant_type")
            for e in agent.recorder.exchanges
            if e.method == "POST"
        ]
    assert result.ok and result.id_token == "h.i.s"
    assert result.method == "password"
    assert result.fallback_from is not None
    assert result.fallback_from.startswith("login_form_missing")
    assert grants == ["password"]


def test_browser_sign_in_without_a_redirect_times_out_as_data(
    lab_settings: Settings, reserved_sockets: dict[str, socket.socket], serve: Callable[..., str]
) -> None:
    serve(_undrivable_idp(), reserved_sockets["idp"])
    with Agent(lab_settings.endpoints, lab_settings, Recorder(), idp_client=CLIENT) as agent:
        result = agent.sign_in_browser(opener=lambda url: None, timeout_s=0.2)
    assert not result.ok
    assert (result.method, result.error) == ("browser", "timeout")


# -- Secure cookies on loopback http (Keycloak 26 marks AUTH_SESSION_ID Secure there) ----------


def test_embedded_idp_marks_its_login_cookie_secure_and_samesite_none_on_loopback(
    idp_issuer: str,
) -> None:
    params = {
        "response_type": "code",
        "client_id": "ai.agent",
        "redirect_uri": "http://127.0.0.1/callback",
        "scope": "openid",
        "code_challenge": Pkce.new().challenge,
        "code_challenge_method": "S256",
    }
    page = httpx.get(f"{idp_issuer}/protocol/openid-connect/auth", params=params)
    cookie = page.headers["set-cookie"].lower()
    assert cookie.startswith("auth_session_id=")
    assert "secure" in cookie and "samesite=none" in cookie


def test_a_plain_cookie_jar_meets_cookie_not_found_at_the_embedded_idp(
    idp_issuer: str,
) -> None:
    """The regression Keycloak showed: a jar that keeps Secure cookies for https only."""
    client = IdpClient.from_realm_file()
    with httpx.Client(follow_redirects=False) as plain:
        result = sign_in_with_code(plain, idp_issuer, client, "idjag-learner", "password")
    assert not result.ok
    assert (result.status, result.error) == (400, "cookie_not_found")
    assert "Secure" in (result.error_description or "")


def test_agent_sign_in_sends_the_secure_cookie_back_and_gets_a_code(
    lab_settings: Settings, idp_issuer: str
) -> None:
    with Agent(lab_settings.endpoints, lab_settings, Recorder()) as agent:
        result: SignIn = agent.sign_in("idjag-learner", "password", method="code")
        login_post = [e for e in agent.recorder.exchanges if "login-actions" in e.url]
    assert result.ok and result.method == "code" and result.fallback_from is None
    assert login_post and login_post[0].status == 302


@pytest.mark.parametrize(
    ("url", "loopback"),
    [
        ("http://127.0.0.1:9090/x", True),
        ("http://127.8.0.1/x", True),
        ("http://[::1]:9090/x", True),
        ("http://localhost:9090/x", True),
        ("http://idp.localhost/x", True),
        ("http://example.com/x", False),
        ("http://10.0.0.1/x", False),
    ],
)
def test_loopback_urls_count_as_secure_contexts(url: str, loopback: bool) -> None:
    assert is_loopback_url(url) is loopback


def test_secure_cookie_is_not_sent_to_a_non_loopback_http_url() -> None:
    jar = browser_cookie_jar()
    cookies = httpx.Cookies(jar)
    cookies.set("AUTH_SESSION_ID", "v", domain="example.com", path="/")
    for cookie in jar:
        cookie.secure = True
    request = httpx.Request("GET", "http://example.com/")
    cookies.set_cookie_header(request)
    assert "cookie" not in request.headers
    https_request = httpx.Request("GET", "https://example.com/")
    cookies.set_cookie_header(https_request)
    assert https_request.headers["cookie"] == "AUTH_SESSION_ID=v"


def test_a_browser_like_client_keeps_sends_and_forgets_cookies_as_a_browser_on_loopback(
    reserved_sockets: dict[str, socket.socket], serve: Callable[..., str]
) -> None:
    """The browser's jar is kept beside the client (httpx's own jar stores nothing, so httpx
    copies and sends nothing the hook would replace): a Secure cookie set over loopback http
    comes back on the next requests, to any path it covers, and is gone once the server
    expires it."""

    async def login(request: Request) -> JSONResponse:
        answer = JSONResponse({"sent": dict(request.cookies)})
        answer.set_cookie("AUTH_SESSION_ID", "s1", path="/", secure=True, samesite="none")
        return answer

    async def echo(request: Request) -> JSONResponse:
        return JSONResponse({"sent": dict(request.cookies)})

    async def logout(request: Request) -> JSONResponse:
        answer = JSONResponse({"sent": dict(request.cookies)})
        answer.delete_cookie("AUTH_SESSION_ID", path="/", secure=True, samesite="none")
        return answer

    app = Starlette(
        routes=[Route("/login", login), Route("/a/echo", echo), Route("/logout", logout)]
    )
    url = serve(app, reserved_sockets["idp"])
    recorder = Recorder()
    with browser_like(httpx.Client(event_hooks=recorder.sync_hooks())) as client:
        assert client.get(f"{url}/login").json()["sent"] == {}
        assert client.get(f"{url}/a/echo").json()["sent"] == {"AUTH_SESSION_ID": "s1"}
        assert not client.cookies  # httpx's own jar: nothing to copy into every request
        assert [cookie.name for cookie in browser_cookies(client)] == ["AUTH_SESSION_ID"]
        sent = client.get(f"{url}/a/echo", headers={"Cookie": "PASSED=by-hand"}).json()["sent"]
        assert sent == {"AUTH_SESSION_ID": "s1"}  # the jar's header, as before
        assert client.get(f"{url}/logout").json()["sent"] == {"AUTH_SESSION_ID": "s1"}
        assert client.get(f"{url}/a/echo").json()["sent"] == {}
        assert list(browser_cookies(client)) == []
    assert recorder.exchanges[1].request_headers["cookie"] == REDACTED
