"""python-keycloak's KeycloakOpenID, unmodified, against the embedded IdP."""

from __future__ import annotations

import pytest
from keycloak.exceptions import KeycloakPostError

from keycloak import KeycloakOpenID
from tests.idp.helpers import CLIENT_ID, CLIENT_SECRET, LEARNER_ID, Idp


@pytest.fixture
def keycloak(idp: Idp) -> KeycloakOpenID:
    return KeycloakOpenID(
        server_url=f"{idp.url}/",
        realm_name="idjag",
        client_id=CLIENT_ID,
        client_secret_key=CLIENT_SECRET,
    )


def test_well_known(keycloak: KeycloakOpenID, idp: Idp) -> None:
    assert keycloak.well_known()["issuer"] == idp.issuer


def test_token_refresh_userinfo_and_decode(keycloak: KeycloakOpenID, idp: Idp) -> None:
    token = keycloak.token("idjag-learner", "password")
    assert token["token_type"] == "Bearer"
    refreshed = keycloak.refresh_token(token["refresh_token"])
    assert refreshed["session_state"] == token["session_state"]
    info = keycloak.userinfo(refreshed["access_token"])
    assert info["sub"] == LEARNER_ID
    assert info["preferred_username"] == "idjag-learner"
    id_claims = keycloak.decode_token(token["id_token"])
    assert id_claims["aud"] == CLIENT_ID
    assert id_claims["iss"] == idp.issuer
    access_claims = keycloak.decode_token(token["access_token"])
    assert access_claims["typ"] == "Bearer"


def test_certs_and_public_key(keycloak: KeycloakOpenID) -> None:
    keys = keycloak.certs()["keys"]
    assert keys[0]["alg"] == "RS256"
    assert keycloak.public_key().startswith("MII")


def test_wrong_password_raises_keycloaks_post_error_400(keycloak: KeycloakOpenID) -> None:
    # Keycloak 26 answers 400 invalid_grant (not 401), so python-keycloak raises its post error.
    with pytest.raises(KeycloakPostError) as error:
        keycloak.token("idjag-learner", "wrong")
    assert error.value.response_code == 400
    assert b"Invalid user credentials" in error.value.response_body


def test_logout_and_introspect(keycloak: KeycloakOpenID) -> None:
    token = keycloak.token("idjag-learner", "password")
    assert keycloak.introspect(token["access_token"])["active"] is True
    keycloak.logout(token["refresh_token"])
    assert keycloak.introspect(token["access_token"])["active"] is False
    with pytest.raises(KeycloakPostError) as error:
        keycloak.refresh_token(token["refresh_token"])
    assert b"Session not active" in error.value.response_body


def test_authorization_code_with_pkce_through_python_keycloak_auth_url(
    keycloak: KeycloakOpenID, idp: Idp
) -> None:

    from tests.idp.helpers import Pkce, browser_client, code_from, form_action

    pkce = Pkce.new()
    url = keycloak.auth_url(
        redirect_uri="http://127.0.0.1:8765/cb",
        scope="openid",
        state="s",
        code_challenge=pkce.challenge,
        code_challenge_method="S256",
    )
    with browser_client() as browser:
        page = browser.get(url)
        code = code_from(
            browser.post(
                form_action(page), data={"username": "idjag-learner", "password": "password"}
            )
        )
    token = keycloak.token(
        grant_type="authorization_code",
        code=code,
        redirect_uri="http://127.0.0.1:8765/cb",
        code_verifier=pkce.verifier,
    )
    assert keycloak.decode_token(token["id_token"])["sub"] == LEARNER_ID
