"""python-keycloak and the lab's agent against real Keycloak: the realm file works as imported,
and the browser-like sign-in survives Keycloak 26's Secure cookies on loopback http."""

from __future__ import annotations

import httpx
import pytest
from keycloak.exceptions import KeycloakPostError

from keycloak import KeycloakAdmin, KeycloakOpenID
from lab.agent import Agent, Recorder
from lab.agent.signin import IdpClient, sign_in_with_code
from lab.backends import keycloak_process as kc
from lab.backends import versions
from tests.keycloak.conftest import KeycloakLab

pytestmark = pytest.mark.slow


@pytest.fixture
def openid(keycloak_lab: KeycloakLab) -> KeycloakOpenID:
    client = IdpClient.from_realm_file()
    return KeycloakOpenID(
        server_url=keycloak_lab.endpoints.idp_base + "/",
        realm_name="idjag",
        client_id=client.client_id,
        client_secret_key=client.client_secret,
    )


def test_python_keycloak_password_grant_userinfo_and_refresh(openid: KeycloakOpenID) -> None:
    token = openid.token("idjag-learner", "password", scope="openid profile email")
    assert openid.userinfo(token["access_token"])["preferred_username"] == "idjag-learner"
    claims = openid.decode_token(token["id_token"], validate=True)
    assert (claims["aud"], claims["preferred_username"]) == ("ai.agent", "idjag-learner")
    refreshed = openid.refresh_token(token["refresh_token"])
    assert refreshed["access_token"] != token["access_token"]


def test_python_keycloak_wrong_password_is_400_invalid_grant(openid: KeycloakOpenID) -> None:
    with pytest.raises(KeycloakPostError) as error:
        openid.token("idjag-learner", "wrong")
    assert error.value.response_code == 400
    assert b"invalid_grant" in error.value.response_body


def test_python_keycloak_admin_reads_the_server_version(keycloak_lab: KeycloakLab) -> None:
    admin = KeycloakAdmin(
        server_url=keycloak_lab.endpoints.idp_base + "/",
        username=kc.BOOTSTRAP_ADMIN[0],
        password=kc.BOOTSTRAP_ADMIN[1],
        realm_name="master",
        user_realm_name="master",
    )
    assert admin.get_server_info()["systemInfo"]["version"] == versions.KEYCLOAK_VERSION
    admin.change_current_realm("idjag")
    assert [u["username"] for u in admin.get_users({"username": "idjag-learner", "exact": True})]


def test_agent_code_flow_signs_in_at_real_keycloak(keycloak_lab: KeycloakLab) -> None:
    endpoints = keycloak_lab.endpoints
    with Agent(endpoints, keycloak_lab.stack.settings, Recorder()) as agent:
        result = agent.sign_in("idjag-learner", "password", method="code")
    assert result.ok, (result.error, result.error_description)
    assert result.method == "code" and result.fallback_from is None


def test_a_plain_cookie_jar_meets_keycloaks_cookie_not_found(keycloak_lab: KeycloakLab) -> None:
    """The bug the embedded IdP now reproduces: real Keycloak refuses the cookieless POST."""
    with httpx.Client() as plain:
        result = sign_in_with_code(
            plain,
            keycloak_lab.endpoints.idp_issuer,
            IdpClient.from_realm_file(),
            "idjag-learner",
            "password",
        )
    assert (result.status, result.error) == (400, "cookie_not_found")
