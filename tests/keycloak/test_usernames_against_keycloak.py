"""The facts in ``tests/idp/username_cases.py``, shown on real Keycloak.

Each row signs in once by the login form (a fresh cookie jar: Keycloak's SSO cookie would sign a
second attempt in without reading the form at all) and once by the password grant; an accepted
sign-in's ID token names the stored user, whatever was typed.
"""

from __future__ import annotations

import jwt
import pytest

from lab.agent import Agent, Recorder
from tests.idp.username_cases import CANONICAL, USERNAME_CASES, case_id
from tests.keycloak.conftest import KeycloakLab

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("typed", "by_form", "by_password"), USERNAME_CASES, ids=[case_id(c[0]) for c in USERNAME_CASES]
)
def test_keycloak_signs_a_typed_username_in_as_recorded(
    keycloak_lab: KeycloakLab, typed: str, by_form: bool, by_password: bool
) -> None:
    for method, accepted in (("code", by_form), ("password", by_password)):
        with Agent(keycloak_lab.endpoints, keycloak_lab.stack.settings, Recorder()) as agent:
            result = agent.sign_in(typed, "password", method=method)
        assert bool(result.id_token) == accepted, (method, result.error, result.error_description)
        if accepted:
            claims = jwt.decode(result.id_token, options={"verify_signature": False})
            assert claims["preferred_username"] == CANONICAL, (method, claims)
        elif method == "password":
            assert (result.status, result.error) == (400, "invalid_grant")
        else:
            assert result.error == "login_failed", result.error
