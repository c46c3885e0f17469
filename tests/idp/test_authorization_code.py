"""Authorization code + PKCE through the HTML login form, driven headlessly with httpx.

Nothing listens on the loopback redirect URI: the code is read from the ``Location`` header.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jwt

from lab.config import Settings
from tests.idp.helpers import (
    CLIENT_ID,
    CLIENT_SECRET,
    LEARNER_ID,
    OTHER_ID,
    REDIRECT_URI,
    Idp,
    Pkce,
    auth_params,
    browser_client,
    code_from,
    form_action,
    login,
    redeem,
    serve_idp,
)


def test_login_form_then_code_then_tokens(idp: Idp) -> None:
    pkce = Pkce.new()
    with browser_client() as browser:
        page = browser.get(idp.auth_url, params=auth_params(pkce))
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert 'type="password"' in page.text
        answer = browser.post(
            form_action(page), data={"username": "idjag-learner", "password": "password"}
        )
    assert answer.status_code == 302
    location = httpx.URL(answer.headers["location"])
    assert str(location).startswith(REDIRECT_URI + "?")
    assert location.params["state"] == "st-123"
    assert location.params["iss"] == idp.issuer  # RFC 9207
    tokens = redeem(idp, location.params["code"], pkce.verifier)
    assert tokens.status_code == 200, tokens.text
    claims = jwt.decode(tokens.json()["id_token"], options={"verify_signature": False})
    assert claims["sub"] == LEARNER_ID
    assert claims["aud"] == CLIENT_ID
    assert claims["nonce"] == "n-456"
    assert claims["sid"] == location.params["session_state"]


def test_any_loopback_port_is_accepted_for_the_redirect(idp: Idp) -> None:
    pkce = Pkce.new()
    with browser_client() as browser:
        answer = login(browser, idp, pkce, redirect_uri="http://localhost:60001/cb")
    assert answer.headers["location"].startswith("http://localhost:60001/cb?")


def test_wrong_password_shows_the_form_again_with_keycloaks_message(idp: Idp) -> None:
    with browser_client() as browser:
        answer = login(browser, idp, Pkce.new(), password="wrong")
        assert answer.status_code == 200
        assert "Invalid username or password." in answer.text
        # The same form still works: the learner can simply try again.
        retry = browser.post(
            form_action(answer), data={"username": "idjag-learner", "password": "password"}
        )
    assert retry.status_code == 302
    assert "code=" in retry.headers["location"]


def test_login_page_escapes_what_the_user_typed(idp: Idp) -> None:
    with browser_client() as browser:
        answer = login(
            browser, idp, Pkce.new(), username='"><script>alert(1)</script>', password="x"
        )
    assert answer.status_code == 200
    assert "<script>alert(1)</script>" not in answer.text
    assert "&lt;script&gt;" in answer.text


def test_form_post_without_the_browser_cookie_is_refused(idp: Idp) -> None:
    """Login CSRF: a form posted from another browser (no AUTH_SESSION_ID cookie) does nothing."""
    with browser_client() as browser:
        page = browser.get(idp.auth_url, params=auth_params(Pkce.new()))
    answer = httpx.post(
        form_action(page), data={"username": "idjag-learner", "password": "password"}
    )
    assert answer.status_code == 400
    assert "location" not in answer.headers
    assert "cookie not found" in answer.text.lower()


def test_form_post_with_an_unknown_tab_is_refused(idp: Idp) -> None:
    answer = httpx.post(
        f"{idp.issuer}/login-actions/authenticate?tab_id=made-up",
        data={"username": "idjag-learner", "password": "password"},
    )
    assert answer.status_code == 400
    assert "timed out" in answer.text


def test_pkce_is_required_for_this_client(idp: Idp) -> None:
    response = httpx.get(idp.auth_url, params=auth_params(None))
    assert response.status_code == 302
    params = httpx.URL(response.headers["location"]).params
    assert params["error"] == "invalid_request"
    assert params["state"] == "st-123"


def test_plain_pkce_is_refused_when_s256_is_configured(idp: Idp) -> None:
    params = auth_params(None, code_challenge="x" * 43, code_challenge_method="plain")
    response = httpx.get(idp.auth_url, params=params)
    assert httpx.URL(response.headers["location"]).params["error"] == "invalid_request"


def test_wrong_code_verifier_fails_pkce_verification(idp: Idp) -> None:
    with browser_client() as browser:
        code = code_from(login(browser, idp, Pkce.new()))
    response = redeem(idp, code, Pkce.new().verifier)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert response.json()["error_description"].startswith("PKCE verification failed")


def test_missing_code_verifier_is_refused(idp: Idp) -> None:
    with browser_client() as browser:
        code = code_from(login(browser, idp, Pkce.new()))
    response = redeem(idp, code, None)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert "PKCE" in response.json()["error_description"]


def test_malformed_code_verifier_is_refused(idp: Idp) -> None:
    with browser_client() as browser:
        code = code_from(login(browser, idp, Pkce.new()))
    response = redeem(idp, code, "short")
    assert response.status_code == 400
    assert response.json()["error_description"] == "PKCE verification failed: Invalid code verifier"


def test_a_code_works_once(idp: Idp) -> None:
    pkce = Pkce.new()
    with browser_client() as browser:
        code = code_from(login(browser, idp, pkce))
    assert redeem(idp, code, pkce.verifier).status_code == 200
    again = redeem(idp, code, pkce.verifier)
    assert again.status_code == 400
    assert again.json() == {"error": "invalid_grant", "error_description": "Code not valid"}


def test_made_up_code_is_not_valid(idp: Idp) -> None:
    response = redeem(idp, "not-a-code", Pkce.new().verifier)
    assert response.status_code == 400
    assert response.json()["error_description"] == "Code not valid"


def test_redirect_uri_must_match_the_authorization_request(idp: Idp) -> None:
    pkce = Pkce.new()
    with browser_client() as browser:
        code = code_from(login(browser, idp, pkce))
    response = redeem(idp, code, pkce.verifier, redirect_uri="http://127.0.0.1:49152/elsewhere")
    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_grant",
        "error_description": "Incorrect redirect_uri",
    }


def test_unregistered_redirect_uri_gets_an_error_page_not_a_redirect(idp: Idp) -> None:
    response = httpx.get(
        idp.auth_url, params=auth_params(Pkce.new(), redirect_uri="https://evil.example/cb")
    )
    assert response.status_code == 400
    assert "location" not in response.headers
    assert "Invalid parameter: redirect_uri" in response.text


def test_unknown_client_gets_an_error_page(idp: Idp) -> None:
    response = httpx.get(idp.auth_url, params=auth_params(Pkce.new(), client_id="nobody"))
    assert response.status_code == 400
    assert "Client not found." in response.text


def test_unsupported_response_type_goes_back_to_the_client(idp: Idp) -> None:
    response = httpx.get(idp.auth_url, params=auth_params(Pkce.new(), response_type="token"))
    assert response.status_code == 302
    assert httpx.URL(response.headers["location"]).params["error"] == "unsupported_response_type"


def test_each_user_gets_their_own_code_and_subject(idp: Idp) -> None:
    subjects = []
    for username in ("idjag-learner", "idjag-other"):
        pkce = Pkce.new()
        with browser_client() as browser:
            code = code_from(login(browser, idp, pkce, username=username))
        id_token = redeem(idp, code, pkce.verifier).json()["id_token"]
        subjects.append(jwt.decode(id_token, options={"verify_signature": False})["sub"])
    assert subjects == [LEARNER_ID, OTHER_ID]


def test_code_flow_refused_when_standard_flow_is_off(
    lab_settings: Settings,
    reserved_sockets: dict[str, socket.socket],
    serve: Callable[..., str],
    write_realm: Callable[[Callable[[dict[str, Any]], None]], Path],
) -> None:
    def disable(realm: dict[str, Any]) -> None:
        realm["clients"][0]["standardFlowEnabled"] = False

    idp = serve_idp(lab_settings, reserved_sockets["idp"], serve, write_realm(disable))
    response = httpx.get(idp.auth_url, params=auth_params(Pkce.new()))
    assert httpx.URL(response.headers["location"]).params["error"] == "unauthorized_client"
    token = redeem(idp, "any", Pkce.new().verifier)
    assert token.status_code == 400
    assert token.json()["error"] == "unauthorized_client"


def test_replaying_a_code_ends_the_session_it_started(idp: Idp) -> None:
    """RFC 6749 §4.1.2: on a second use, tokens already issued from the code are revoked."""
    pkce = Pkce.new()
    with browser_client() as browser:
        code = code_from(login(browser, idp, pkce))
    first = redeem(idp, code, pkce.verifier).json()
    assert redeem(idp, code, pkce.verifier).json()["error"] == "invalid_grant"
    refreshed = httpx.post(
        idp.token_url,
        data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
        auth=(CLIENT_ID, CLIENT_SECRET),
    )
    assert refreshed.status_code == 400
    assert refreshed.json()["error_description"] == "Session not active"
