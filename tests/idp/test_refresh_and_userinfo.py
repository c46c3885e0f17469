"""Refresh tokens, userinfo, introspection and logout."""

from __future__ import annotations

import httpx
import jwt

from tests.idp.helpers import CLIENT_ID, CLIENT_SECRET, LEARNER_ID, OTHER_ID, Idp


def refresh(idp: Idp, refresh_token: str, **extra: str) -> httpx.Response:
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token, **extra}
    return httpx.post(idp.token_url, data=form, auth=(CLIENT_ID, CLIENT_SECRET))


def test_refresh_token_gives_new_tokens_for_the_same_session(idp: Idp) -> None:
    first = idp.password_grant().json()
    response = refresh(idp, first["refresh_token"])
    assert response.status_code == 200
    second = response.json()
    assert second["access_token"] != first["access_token"]
    assert second["session_state"] == first["session_state"]
    claims = jwt.decode(second["id_token"], options={"verify_signature": False})
    assert claims["sub"] == LEARNER_ID
    assert claims["typ"] == "ID"


def test_refresh_with_a_garbage_token_is_invalid_grant(idp: Idp) -> None:
    response = refresh(idp, "not.a.token")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_an_access_token_is_not_a_refresh_token(idp: Idp) -> None:
    access_token = idp.password_grant().json()["access_token"]
    response = refresh(idp, access_token)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_refresh_may_not_widen_the_scope(idp: Idp) -> None:
    tokens = idp.password_grant(scope="openid").json()
    response = refresh(idp, tokens["refresh_token"], scope="openid phone")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"


def test_missing_refresh_token_is_invalid_request(idp: Idp) -> None:
    response = httpx.post(
        idp.token_url, data={"grant_type": "refresh_token"}, auth=(CLIENT_ID, CLIENT_SECRET)
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_userinfo_returns_the_users_claims(idp: Idp) -> None:
    access_token = idp.password_grant().json()["access_token"]
    response = httpx.get(idp.userinfo_url, headers={"Authorization": f"Bearer {access_token}"})
    assert response.status_code == 200
    assert response.json() == {
        "sub": LEARNER_ID,
        "email_verified": True,
        "name": "ID-JAG Learner",
        "preferred_username": "idjag-learner",
        "given_name": "ID-JAG",
        "family_name": "Learner",
        "email": "idjag-learner@example.com",
    }


def test_userinfo_shows_another_user_only_their_own_claims(idp: Idp) -> None:
    access_token = idp.password_grant("idjag-other").json()["access_token"]
    body = httpx.get(idp.userinfo_url, headers={"Authorization": f"Bearer {access_token}"}).json()
    assert body["sub"] == OTHER_ID
    assert body["preferred_username"] == "idjag-other"


def test_userinfo_without_a_token_is_401_with_a_bearer_challenge(idp: Idp) -> None:
    response = httpx.get(idp.userinfo_url)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"
    assert response.headers["www-authenticate"].startswith("Bearer ")


def test_userinfo_refuses_an_id_token(idp: Idp) -> None:
    id_token = idp.password_grant().json()["id_token"]
    response = httpx.get(idp.userinfo_url, headers={"Authorization": f"Bearer {id_token}"})
    assert response.status_code == 401
    assert response.json() == {
        "error": "invalid_token",
        "error_description": "Token verification failed",
    }


def test_userinfo_refuses_a_tampered_token(idp: Idp) -> None:
    access_token = idp.password_grant().json()["access_token"]
    head, payload, signature = access_token.split(".")
    tampered = f"{head}.{payload}.{signature[:-4]}AAAA"
    response = httpx.get(idp.userinfo_url, headers={"Authorization": f"Bearer {tampered}"})
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"


def test_logout_ends_the_session_for_refresh_and_userinfo(idp: Idp) -> None:
    tokens = idp.password_grant().json()
    logout = httpx.post(
        f"{idp.issuer}/protocol/openid-connect/logout",
        data={"refresh_token": tokens["refresh_token"]},
        auth=(CLIENT_ID, CLIENT_SECRET),
    )
    assert logout.status_code == 204
    response = refresh(idp, tokens["refresh_token"])
    assert response.status_code == 400
    assert response.json() == {"error": "invalid_grant", "error_description": "Session not active"}
    userinfo = httpx.get(
        idp.userinfo_url, headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert userinfo.status_code == 401


def test_browser_logout_redirects_to_a_registered_loopback_uri(idp: Idp) -> None:
    tokens = idp.password_grant().json()
    response = httpx.get(
        f"{idp.issuer}/protocol/openid-connect/logout",
        params={
            "id_token_hint": tokens["id_token"],
            "post_logout_redirect_uri": "http://127.0.0.1:5000/bye",
            "state": "s1",
        },
    )
    assert response.status_code == 302
    assert response.headers["location"] == "http://127.0.0.1:5000/bye?state=s1"
    assert refresh(idp, tokens["refresh_token"]).json()["error"] == "invalid_grant"


def test_introspection_reports_active_and_inactive_tokens(idp: Idp) -> None:
    tokens = idp.password_grant().json()
    url = f"{idp.issuer}/protocol/openid-connect/token/introspect"
    active = httpx.post(
        url, data={"token": tokens["access_token"]}, auth=(CLIENT_ID, CLIENT_SECRET)
    ).json()
    assert active["active"] is True
    assert active["sub"] == LEARNER_ID
    inactive = httpx.post(url, data={"token": "garbage"}, auth=(CLIENT_ID, CLIENT_SECRET)).json()
    assert inactive == {"active": False}


def test_refresh_tokens_are_hs512_as_keycloak_signs_them(idp: Idp) -> None:
    tokens = idp.password_grant().json()
    header = jwt.get_unverified_header(tokens["refresh_token"])
    assert header["alg"] == "HS512" and header["typ"] == "JWT" and header["kid"]
    for other in ("access_token", "id_token"):  # what clients verify stays RS256
        assert jwt.get_unverified_header(tokens[other])["alg"] == "RS256"
    claims = jwt.decode(tokens["refresh_token"], options={"verify_signature": False})
    assert claims["typ"] == "Refresh"
    assert refresh(idp, tokens["refresh_token"]).status_code == 200


def test_a_refresh_token_signed_with_the_realm_rsa_key_is_refused(idp: Idp) -> None:
    """The RSA key signs access and ID tokens only: a Refresh-typed token it signed (what the
    IdP issued before refresh tokens were HMAC-signed) is no refresh token."""
    from lab.idp.app import signing_key

    claims = jwt.decode(
        idp.password_grant().json()["refresh_token"], options={"verify_signature": False}
    )
    forged = signing_key(idp.settings).sign(claims, typ="JWT")
    response = refresh(idp, forged)
    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_grant",
        "error_description": "Invalid refresh token: algorithm 'RS256' is not allowed",
    }


def test_a_refresh_token_is_checked_against_its_hmac_key(idp: Idp) -> None:
    token = idp.password_grant().json()["refresh_token"]
    header, payload, signature = token.split(".")
    claims = jwt.decode(token, options={"verify_signature": False})
    other_key = jwt.encode(
        claims, b"k" * 64, algorithm="HS512", headers=jwt.get_unverified_header(token)
    )
    flipped = f"{header}.{payload}.{signature[:-4]}{'AAAA' if signature[-4:] != 'AAAA' else 'BBBB'}"
    for bad in (other_key, flipped):
        response = refresh(idp, bad)
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_grant"
        assert "signature is invalid" in response.json()["error_description"]


def test_a_refresh_token_is_no_bearer_token_and_introspects_as_a_refresh_token(idp: Idp) -> None:
    token = idp.password_grant().json()["refresh_token"]
    response = httpx.get(idp.userinfo_url, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    url = f"{idp.issuer}/protocol/openid-connect/token/introspect"
    found = httpx.post(url, data={"token": token}, auth=(CLIENT_ID, CLIENT_SECRET)).json()
    assert found["active"] is True and found["typ"] == "Refresh"


def test_a_userinfo_form_that_cannot_be_read_is_invalid_request_not_a_challenge(idp: Idp) -> None:
    """Only a repeated parameter gets the RFC 6750 challenge (as Keycloak answers it); a form of
    the wrong type or not UTF-8 is an ordinary ``invalid_request``, without ``WWW-Authenticate``
    (a Content-Length that is not a number never reaches the app: uvicorn refuses it first)."""
    form = "application/x-www-form-urlencoded"
    for headers, body in [
        ({"Content-Type": "text/plain"}, b"access_token=x"),
        ({"Content-Type": form}, b"access_token=\xff"),
    ]:
        response = httpx.post(idp.userinfo_url, content=body, headers=headers)
        assert response.status_code == 400, (headers, response.text)
        assert response.json()["error"] == "invalid_request"
        assert "www-authenticate" not in response.headers, headers


def test_a_repeated_userinfo_parameter_gets_the_bearer_challenge(idp: Idp) -> None:
    response = httpx.post(
        idp.userinfo_url,
        content=b"access_token=a&access_token=b",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert 'error="invalid_request"' in response.headers["www-authenticate"]
