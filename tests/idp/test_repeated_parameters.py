"""A parameter sent twice, at every IdP endpoint that reads parameters, by one shared rule
(``lab.oauth.starlette.Repeats``), the line Keycloak 26 draws: the OAuth endpoints
(authorize, token, introspect, userinfo) refuse it as ``invalid_request`` (RFC 6749 §3.1; the
authorization endpoint by a redirect to the first redirect URI, userinfo by an RFC 6750
challenge - both recorded from Keycloak in ``tests/idp/hostile_requests.py``);
RP-initiated logout and the login form take its first value (Keycloak reads them with JAX-RS
``@QueryParam`` / ``MultivaluedMap.getFirst``), never the last."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from lab.oauth.errors import InvalidRequest
from lab.oauth.starlette import REPEATABLE_FORM_PARAMETERS, Repeats, one_value_each
from tests.idp.helpers import (
    CLIENT_ID,
    CLIENT_SECRET,
    Idp,
    Pkce,
    auth_params,
    browser_client,
    code_from,
    form_action,
)

ROOT = Path(__file__).resolve().parents[2]
REGISTERED = "http://127.0.0.1:5000/bye"
UNREGISTERED = "https://evil.example/bye"


def logout_url(idp: Idp) -> str:
    return f"{idp.issuer}/protocol/openid-connect/logout"


def refresh_fails(idp: Idp, refresh_token: str) -> bool:
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    response = httpx.post(idp.token_url, data=form, auth=(CLIENT_ID, CLIENT_SECRET))
    return response.status_code == 400 and response.json()["error"] == "invalid_grant"


# -- the rule itself ---------------------------------------------------------------------------


def test_refuse_names_the_repeated_parameter() -> None:
    with pytest.raises(InvalidRequest, match="parameter 'state' is repeated"):
        one_value_each([("state", "a"), ("scope", "openid"), ("state", "b")])


def test_first_keeps_the_first_value_of_each() -> None:
    pairs = [("state", "a"), ("scope", "openid"), ("state", "b")]
    assert one_value_each(pairs, Repeats.FIRST) == {"state": "a", "scope": "openid"}


def test_rfc8693_repeatable_parameters_keep_their_first_value_under_refuse() -> None:
    pairs = [("audience", "a"), ("audience", "b"), ("resource", "r1"), ("resource", "r2")]
    assert one_value_each(pairs, Repeats.REFUSE, REPEATABLE_FORM_PARAMETERS) == {
        "audience": "a",
        "resource": "r1",
    }


def test_every_idp_endpoint_reads_its_parameters_through_the_shared_rule() -> None:
    """No IdP route reads ``request.query_params`` or ``request.form()`` itself: Starlette's
    ``.get`` keeps the last of a repeated parameter, which neither rule does."""
    for path in sorted((ROOT / "lab" / "idp").glob("*.py")):
        text = path.read_text()
        assert not re.search(r"request\.query_params|request\.form\(", text), path.name


# -- logout: the first value counts, as in Keycloak --------------------------------------------


def test_logout_redirects_to_the_first_of_two_post_logout_redirect_uris(idp: Idp) -> None:
    tokens = idp.password_grant().json()
    params = [
        ("id_token_hint", tokens["id_token"]),
        ("post_logout_redirect_uri", REGISTERED),
        ("post_logout_redirect_uri", UNREGISTERED),
        ("state", "first"),
        ("state", "second"),
    ]
    response = httpx.get(logout_url(idp), params=params)
    assert response.status_code == 302, response.text
    assert response.headers["location"] == f"{REGISTERED}?state=first"
    assert refresh_fails(idp, tokens["refresh_token"])


def test_logout_checks_the_first_post_logout_redirect_uri_not_a_later_one(idp: Idp) -> None:
    tokens = idp.password_grant().json()
    params = [
        ("id_token_hint", tokens["id_token"]),
        ("post_logout_redirect_uri", UNREGISTERED),
        ("post_logout_redirect_uri", REGISTERED),
    ]
    response = httpx.get(logout_url(idp), params=params)
    assert response.status_code == 400
    assert "Invalid redirect uri" in response.text
    assert "location" not in response.headers


def test_logout_verifies_the_first_id_token_hint(idp: Idp) -> None:
    tokens = idp.password_grant().json()
    valid_first = [("id_token_hint", tokens["id_token"]), ("id_token_hint", "not.a.token")]
    response = httpx.get(logout_url(idp), params=valid_first)
    assert response.status_code == 200, response.text
    assert refresh_fails(idp, tokens["refresh_token"])  # the first hint's session ended

    other = idp.password_grant().json()
    garbage_first = [("id_token_hint", "not.a.token"), ("id_token_hint", other["id_token"])]
    response = httpx.get(logout_url(idp), params=garbage_first)
    assert response.status_code == 400
    assert "Invalid parameter: id_token_hint" in response.text
    assert not refresh_fails(idp, other["refresh_token"])  # nothing ended


def test_a_logout_form_post_takes_the_first_value_and_ignores_the_query(idp: Idp) -> None:
    tokens = idp.password_grant().json()
    body = httpx.QueryParams(
        [
            ("id_token_hint", tokens["id_token"]),
            ("post_logout_redirect_uri", REGISTERED),
            ("post_logout_redirect_uri", UNREGISTERED),
            ("state", "first"),
            ("state", "second"),
        ]
    )
    response = httpx.post(
        logout_url(idp),
        params={"state": "from-the-query"},  # Keycloak's POST logout reads the form alone
        content=str(body).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 302, response.text
    assert response.headers["location"] == f"{REGISTERED}?state=first"


# -- the login form: the first value counts ----------------------------------------------------


def test_the_login_form_takes_the_first_tab_id_and_credentials(idp: Idp) -> None:
    pkce = Pkce.new()
    with browser_client() as browser:
        page = browser.get(idp.auth_url, params=auth_params(pkce))
        action = httpx.URL(form_action(page))
        tab_id = action.params["tab_id"]
        twice = action.copy_with(params=[*action.params.multi_items(), ("tab_id", "made-up")])
        credentials = httpx.QueryParams(
            [
                ("username", "idjag-learner"),
                ("username", "idjag-other"),
                ("password", "password"),
                ("password", "wrong"),
            ]
        )
        answer = browser.post(
            twice,
            content=str(credentials).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    assert tab_id and twice.params.get_list("tab_id") == [tab_id, "made-up"]
    assert code_from(answer)


# -- the OAuth endpoints: refused ----------------------------------------------------------------


def test_a_repeated_token_parameter_is_invalid_request(idp: Idp) -> None:
    body = "grant_type=password&username=idjag-learner&password=password&scope=openid&scope=email"
    response = httpx.post(
        idp.token_url,
        content=body.encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        auth=(CLIENT_ID, CLIENT_SECRET),
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert "'scope' is repeated" in response.json()["error_description"]


def test_a_repeated_introspection_parameter_is_invalid_request(idp: Idp) -> None:
    access = idp.password_grant().json()["access_token"]
    response = httpx.post(
        f"{idp.issuer}/protocol/openid-connect/token/introspect",
        content=f"token={access}&token=garbage".encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        auth=(CLIENT_ID, CLIENT_SECRET),
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
