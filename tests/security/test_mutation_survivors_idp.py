"""Tests written for mutants of ``lab/idp/grants.py`` that ``make mutate`` found alive
(docs/dev/mutation.md): the exact refusals of each grant, and the request parameters each one
reads. Unit level, on the realm of ``test_idp_grants.py`` (a public client, a second client,
a disabled user, brute-force protection on).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from lab.idp.grants import Grants
from lab.idp.realm import Client, load_realm
from lab.idp.store import IdpStore
from lab.idp.tokens import TokenIssuer
from lab.oauth.errors import InvalidScope, OAuthError, UnauthorizedClient
from lab.oauth.jose import SigningKey
from tests.idp.helpers import CLIENT_ID
from tests.security.test_idp_grants import OTHER_CLIENT, PUBLIC_CLIENT, _code_for, _form, edit_realm


@pytest.fixture
def grants(tmp_path: Path, write_realm: Callable[..., Path]) -> Grants:
    realm = load_realm(write_realm(edit_realm))
    key = SigningKey.load_or_create(tmp_path / "idp.pem", "RS256")
    issuer = TokenIssuer(realm, "http://127.0.0.1:1/realms/idjag", key)
    store = IdpStore(code_lifespan_s=60, session_idle_s=1800, session_max_s=36000)
    return Grants(issuer, store)


def client(grants: Grants, client_id: str) -> Client:
    found = grants.realm.client(client_id)
    assert found is not None
    return found


def refusal(call: Callable[[], object]) -> OAuthError:
    with pytest.raises(OAuthError) as refused:
        call()
    return refused.value


# -------------------------------------------------------------------- client_credentials


def test_a_public_client_is_refused_client_credentials_in_keycloaks_words(grants: Grants) -> None:
    error = refusal(lambda: grants.client_credentials(client(grants, PUBLIC_CLIENT), {}))
    assert isinstance(error, UnauthorizedClient)
    assert error.description == "Public client not allowed to retrieve service account"


def test_client_credentials_reads_the_scope_parameter(grants: Grants) -> None:
    agent = dataclasses.replace(client(grants, CLIENT_ID), service_accounts=True)
    error = refusal(lambda: grants.client_credentials(agent, {"scope": "no-such-scope"}))
    assert isinstance(error, InvalidScope)
    assert error.description == "Invalid scopes: no-such-scope"
    body = grants.client_credentials(agent, {"scope": ""})  # "" is absent, as Keycloak reads it
    assert "refresh_token" not in body and body["refresh_expires_in"] == 0


def test_client_credentials_needs_service_accounts_enabled(grants: Grants) -> None:
    error = refusal(lambda: grants.client_credentials(client(grants, CLIENT_ID), {}))
    assert isinstance(error, UnauthorizedClient)
    assert error.description == "Client not enabled to retrieve service account"


def test_an_unknown_grant_type_is_unsupported(grants: Grants) -> None:
    error = refusal(lambda: grants.run("urn:x", client(grants, CLIENT_ID), {}))
    assert (error.error, error.description) == ("unsupported_grant_type", "Unsupported grant_type")


# -------------------------------------------------------------------- authorization_code


def test_authorization_code_refusals_in_keycloaks_words(grants: Grants) -> None:
    agent = client(grants, CLIENT_ID)
    no_flow = dataclasses.replace(agent, standard_flow=False)
    error = refusal(lambda: grants.authorization_code(no_flow, {}))
    assert (error.error, error.description) == (
        "unauthorized_client",
        "Client not allowed to exchange code",
    )
    error = refusal(lambda: grants.authorization_code(agent, {"code": ""}))
    assert (error.error, error.description) == ("invalid_request", "Missing parameter: code")
    error = refusal(lambda: grants.authorization_code(agent, {"code": "nope"}))
    assert (error.error, error.description) == ("invalid_grant", "Code not valid")
    code, verifier = _code_for(grants, "idjag-learner")
    other = client(grants, OTHER_CLIENT)
    error = refusal(lambda: grants.authorization_code(other, _form(code, verifier)))
    assert (error.error, error.description) == ("invalid_grant", "Auth error")
    code, verifier = _code_for(grants, "idjag-learner")
    wrong_uri = {**_form(code, verifier), "redirect_uri": "http://127.0.0.1/other"}
    error = refusal(lambda: grants.authorization_code(agent, wrong_uri))
    assert (error.error, error.description) == ("invalid_grant", "Incorrect redirect_uri")
    code, verifier = _code_for(grants, "idjag-learner")
    for sid in list(grants.store._sessions.items):  # noqa: SLF001 - end every session
        grants.store.end_session(sid)
    error = refusal(lambda: grants.authorization_code(agent, _form(code, verifier)))
    assert (error.error, error.description) == ("invalid_grant", "Session not active")


# -------------------------------------------------------------------- password, refresh_token


def _password(grants: Grants, username: str, secret: str = "password") -> dict[str, object]:
    form = {"username": username, "password": secret, "scope": "openid"}
    return grants.password(client(grants, CLIENT_ID), form)


def test_password_refusals_in_keycloaks_words(grants: Grants) -> None:
    agent = client(grants, CLIENT_ID)
    no_direct = dataclasses.replace(agent, direct_access_grants=False)
    error = refusal(lambda: grants.password(no_direct, {}))
    assert (error.error, error.description) == (
        "unauthorized_client",
        "Client not allowed for direct access grants",
    )
    error = refusal(lambda: _password(grants, "idjag-learner", "wrong"))
    assert (error.error, error.description) == ("invalid_grant", "Invalid user credentials")
    error = refusal(lambda: _password(grants, "idjag-disabled"))
    assert (error.error, error.description) == ("invalid_grant", "Account disabled")


def test_refresh_token_refusals_in_keycloaks_words(grants: Grants) -> None:
    agent = client(grants, CLIENT_ID)
    error = refusal(lambda: grants.refresh_token(agent, {"refresh_token": ""}))
    assert (error.error, error.description) == (
        "invalid_request",
        "Missing parameter: refresh_token",
    )
    error = refusal(lambda: grants.refresh_token(agent, {"refresh_token": "a.b"}))
    assert (error.error, error.description) == (
        "invalid_grant",
        "Invalid refresh token: malformed token: Not enough segments",
    )
    refresh = str(_password(grants, "idjag-learner")["refresh_token"])
    other = client(grants, OTHER_CLIENT)
    error = refusal(lambda: grants.refresh_token(other, {"refresh_token": refresh}))
    assert (error.error, error.description) == (
        "invalid_grant",
        "Invalid refresh token. Token client and authorized client don't match",
    )
    error = refusal(lambda: grants.refresh_token(agent, {"refresh_token": refresh, "scope": "x"}))
    assert (error.error, error.description) == ("invalid_scope", "Invalid scopes: x")
    renewed = grants.refresh_token(agent, {"refresh_token": refresh, "scope": "openid"})
    assert renewed["scope"] == "openid" or "openid" in str(renewed["scope"]).split()


def test_refresh_for_a_user_disabled_since_is_invalid_grant(grants: Grants) -> None:
    refresh = str(_password(grants, "idjag-learner")["refresh_token"])
    users = tuple(
        dataclasses.replace(u, enabled=False) if u.username == "idjag-learner" else u
        for u in grants.realm.users
    )
    grants.realm = dataclasses.replace(grants.realm, users=users)
    error = refusal(
        lambda: grants.refresh_token(client(grants, CLIENT_ID), {"refresh_token": refresh})
    )
    assert (error.error, error.description) == ("invalid_grant", "Session not active")


def test_refresh_may_not_add_a_scope_the_first_grant_lacked(grants: Grants) -> None:
    agent = client(grants, CLIENT_ID)
    first = grants.password(agent, {"username": "idjag-learner", "password": "password"})
    form = {"refresh_token": str(first["refresh_token"]), "scope": "openid"}
    error = refusal(lambda: grants.refresh_token(agent, form))
    assert (error.error, error.description) == ("invalid_scope", "Invalid scopes: openid")


def test_a_password_grant_opens_a_session_of_that_user(grants: Grants) -> None:
    from lab.oauth.jose import unverified_claims

    body = _password(grants, "idjag-learner")
    sid = unverified_claims(str(body["refresh_token"]))["sid"]
    session = grants.store.active_session(sid)
    learner = grants.realm.user_by_username("idjag-learner")
    assert session is not None and learner is not None
    assert (session.user_id, session.client_id) == (learner.id, CLIENT_ID)


def test_refused_password_grants_are_logged_without_the_password(
    grants: Grants, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("INFO", logger="lab.idp"):
        for _ in range(4):  # the realm locks after 3 failures (failureFactor)
            refusal(lambda: _password(grants, "idjag-learner", "wrong-secret"))
    assert caplog.messages == [f"password grant refused for client {CLIENT_ID}"] * 3 + [
        f"password grant refused for client {CLIENT_ID}: user locked"
    ]
    assert "wrong-secret" not in caplog.text


def test_check_password_refuses_missing_passwords_on_either_side(grants: Grants) -> None:
    from lab.idp.grants import check_password

    learner = grants.realm.user_by_username("idjag-learner")
    assert learner is not None
    assert check_password(learner, "password") is learner
    assert check_password(learner, None) is None
    assert check_password(dataclasses.replace(learner, password=None), "password") is None
    assert check_password(None, "password") is None


def test_tokens_live_as_long_as_the_session_and_at_least_a_second(
    grants: Grants, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lab.oauth.jose import unverified_claims

    with caplog.at_level("INFO", logger="lab.idp"):
        body = _password(grants, "idjag-learner")
    sid = str(unverified_claims(str(body["refresh_token"]))["sid"])
    assert caplog.messages == [f"issued tokens to {CLIENT_ID} for idjag-learner (sid {sid[:8]})"]
    session = grants.store.active_session(sid)
    assert session is not None
    left = grants.store.session_expiry(session) - time.time()
    assert left - 2 <= int(body["refresh_expires_in"]) <= left
    monkeypatch.setattr(grants.store, "session_expiry", lambda s: time.time() - 10)
    assert _password(grants, "idjag-learner")["refresh_expires_in"] == 1
