"""client_credentials: a principal's own token, refused when it holds none of the roles."""

from __future__ import annotations

import jwt

from tests.pdp.conftest import LEARNER, PdpLab


def test_member_gets_access_token_with_athenz_claims(world: PdpLab) -> None:
    response = world.client_credentials(LEARNER, "api:role.docs-getter")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer"
    token = body["access_token"]
    header = jwt.get_unverified_header(token)
    assert header["typ"] == "at+jwt" and header["kid"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["aud"] == "api"
    assert claims["sub"] == claims["client_id"] == LEARNER
    assert claims["scp"] == ["docs-getter"] and claims["scope"] == "docs-getter"
    assert claims["iss"] == world.zts
    assert {"jti", "iat", "exp"} <= claims.keys()


def test_partial_grant_lists_only_held_roles(world: PdpLab) -> None:
    world.role("api", "docs-poster", [])
    response = world.client_credentials(LEARNER, "api:role.docs-getter api:role.docs-poster")
    assert response.status_code == 200
    assert response.json()["scope"] == "api:role.docs-getter"


def test_non_member_gets_403_with_athenz_message(world: PdpLab) -> None:
    world.ok("DELETE", f"/domain/api/role/docs-getter/member/{LEARNER}")
    response = world.client_credentials(LEARNER, "api:role.docs-getter")
    assert response.status_code == 403
    body = response.json()
    assert body["error"] == "invalid_scope"
    assert (
        body["message"]
        == "postaccesstokenrequest: principal human.idjag-learner is not included in the "
        "requested role(s) in domain api"
    )


def test_unknown_domain_is_404(world: PdpLab) -> None:
    response = world.client_credentials(LEARNER, "nosuch:role.docs-getter")
    assert response.status_code == 404
    assert response.json()["error"] == "invalid_scope"
    assert response.json()["message"] == "No such domain: nosuch"


def test_unauthenticated_request_is_401(world: PdpLab) -> None:
    response = world.token({"grant_type": "client_credentials", "scope": "api:role.docs-getter"})
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response.headers["www-authenticate"].startswith("Basic")


def test_client_assertion_is_single_use(world: PdpLab) -> None:
    form = {
        "grant_type": "client_credentials",
        "scope": "api:role.docs-getter",
        **world.client_assertion(LEARNER),
    }
    assert world.token(form).status_code == 200
    replay = world.token(form)
    assert replay.status_code == 401
    assert replay.json()["error"] == "invalid_client"
    assert "already been used" in replay.json()["error_description"]


def test_client_secret_basic_and_post(world: PdpLab) -> None:
    secret = world.ok("POST", "/domain/human/service/idjag-learner/secret").json()
    assert secret["clientId"] == LEARNER
    form = {"grant_type": "client_credentials", "scope": "api:role.docs-getter"}
    basic = world.token(form, auth=(LEARNER, secret["clientSecret"]))
    assert basic.status_code == 200, basic.text
    posted = world.token({**form, "client_id": LEARNER, "client_secret": secret["clientSecret"]})
    assert posted.status_code == 200
    wrong = world.token({**form, "client_id": LEARNER, "client_secret": "nope"})
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"


def test_expired_membership_is_ignored(world: PdpLab) -> None:
    world.ok(
        "PUT",
        f"/domain/api/role/docs-getter/member/{LEARNER}",
        {"memberName": LEARNER, "expiration": "2000-01-01T00:00:00.000Z"},
    )
    response = world.client_credentials(LEARNER, "api:role.docs-getter")
    assert response.status_code == 403
    assert response.json()["error"] == "invalid_scope"
