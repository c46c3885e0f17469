"""Client input never causes a 5xx: malformed requests get Keycloak-shaped 4xx answers."""

from __future__ import annotations

import base64

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lab.config import Settings
from lab.idp.app import create_app
from lab.oauth.jose import ensure_private_key
from tests.idp.helpers import CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, Idp, Pkce, auth_params

_FIELDS = st.sampled_from(
    [
        "grant_type",
        "code",
        "redirect_uri",
        "code_verifier",
        "refresh_token",
        "username",
        "password",
        "scope",
        "client_id",
        "client_secret",
    ]
)
_VALUES = st.one_of(
    st.text(max_size=60),
    st.sampled_from(
        [
            "password",
            "authorization_code",
            "refresh_token",
            "client_credentials",
            CLIENT_ID,
            CLIENT_SECRET,
            "openid",
            "a.b.c",
        ]
    ),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(form=st.dictionaries(_FIELDS, _VALUES, max_size=6))
def test_token_endpoint_answers_any_form_with_4xx_or_200(idp: Idp, form: dict[str, str]) -> None:
    response = httpx.post(idp.token_url, data=form)
    assert response.status_code < 500
    if response.status_code >= 400:
        assert set(response.json()) == {"error", "error_description"}


@pytest.mark.parametrize(
    "header",
    [
        "Basic !!!",
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Basic " + base64.b64encode(b"\xff\xfe:x").decode(),
    ],
)
def test_malformed_basic_header_is_invalid_request(idp: Idp, header: str) -> None:
    response = httpx.post(
        idp.token_url, data={"grant_type": "password"}, headers={"Authorization": header}
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_oversized_body_is_413(idp: Idp) -> None:
    response = httpx.post(idp.token_url, data={"grant_type": "password", "password": "x" * 100_000})
    assert response.status_code == 413


def test_repeated_authorization_parameter_is_refused_at_the_first_redirect_uri_only(
    idp: Idp,
) -> None:
    """As Keycloak 26: the first ``redirect_uri`` is checked and gets ``invalid_request``;
    the second one, unregistered, is never redirected to (tests/idp/hostile_requests.py)."""
    params = list(auth_params(Pkce.new()).items()) + [("redirect_uri", "https://evil.example/cb")]
    response = httpx.get(idp.auth_url, params=params)
    assert response.status_code == 302
    location = httpx.URL(response.headers["location"])
    assert str(location.copy_with(query=None)) == REDIRECT_URI
    assert location.params["error"] == "invalid_request"
    assert location.params["error_description"] == "duplicated parameter"


def test_a_repeated_client_id_is_the_error_page(idp: Idp) -> None:
    params = list(auth_params(Pkce.new()).items()) + [("client_id", "ai.agent")]
    response = httpx.get(idp.auth_url, params=params)
    assert response.status_code == 400
    assert "location" not in response.headers


def test_oauth_authorization_server_metadata_is_served_too(idp: Idp) -> None:
    response = httpx.get(f"{idp.issuer}/.well-known/oauth-authorization-server")
    assert response.json()["issuer"] == idp.issuer


def test_an_ec_key_in_place_of_the_idp_key_is_a_clear_error(lab_settings: Settings) -> None:
    ensure_private_key(lab_settings.key_file("idp-signing"), "ES256")
    with pytest.raises(ValueError, match="needs RS256"):
        create_app(lab_settings)


def _posted(idp: Idp, pairs: list[tuple[str, str]]) -> httpx.Response:
    """The authorization request as a form post (OIDC Core §3.1.2.1), repeats as given."""
    return httpx.post(
        idp.auth_url,
        content=str(httpx.QueryParams(pairs)).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )


def test_a_repeated_parameter_in_a_posted_authorization_request_is_answered_as_in_the_query(
    idp: Idp,
) -> None:
    """One rule for the query and the form: invalid_request at the first redirect URI (a form
    post once got a JSON 400 from the form reader instead)."""
    params = list(auth_params(Pkce.new()).items()) + [("redirect_uri", "https://evil.example/cb")]
    for response in (httpx.get(idp.auth_url, params=params), _posted(idp, params)):
        assert response.status_code == 302, response.text
        location = httpx.URL(response.headers["location"])
        assert str(location.copy_with(query=None)) == REDIRECT_URI
        assert location.params["error"] == "invalid_request"
        assert location.params["error_description"] == "duplicated parameter"


def test_a_repeated_client_id_in_a_posted_authorization_request_is_the_error_page(
    idp: Idp,
) -> None:
    params = list(auth_params(Pkce.new()).items()) + [("client_id", "ai.agent")]
    for response in (httpx.get(idp.auth_url, params=params), _posted(idp, params)):
        assert response.status_code == 400
        assert "location" not in response.headers
        assert "Invalid Request" in response.text
