"""JWKS, RFC 8414 metadata, RFC 7662 introspection, signed policy data, OpenAPI documents."""

from __future__ import annotations

import time

import jwt

from lab.oauth.jose import JwksCache
from lab.oauth.tokens import GRANT_PROFILE_ID_JAG
from lab.pdp.store import timestamp
from lab.policy.signed import verify_signed_policy_data
from tests.pdp.conftest import AGENT, LEARNER, PdpLab


def test_jwks_verifies_issued_tokens(world: PdpLab) -> None:
    keys = world.http.get(world.zts + "/oauth2/keys").json()["keys"]
    assert keys[0]["alg"] == "ES256" and keys[0]["kid"]
    token = world.client_credentials(LEARNER, "api:role.docs-getter").json()["access_token"]
    jwk = jwt.PyJWK(keys[0])
    claims = jwt.decode(token, jwk.key, algorithms=["ES256"], audience="api", issuer=world.zts)
    assert claims["sub"] == LEARNER


def test_metadata_at_both_well_known_locations(world: PdpLab) -> None:
    origin = world.zts.rsplit("/zts/v1", 1)[0]
    first = world.http.get(origin + "/.well-known/oauth-authorization-server/zts/v1").json()
    second = world.http.get(world.zts + "/.well-known/oauth-authorization-server").json()
    assert first == second
    assert first["issuer"] == world.zts
    assert first["token_endpoint"] == world.zts + "/oauth2/token"
    assert first["jwks_uri"] == world.zts + "/oauth2/keys"
    assert first["introspection_endpoint"] == world.zts + "/oauth2/introspect"
    assert first["authorization_grant_profiles_supported"] == [GRANT_PROFILE_ID_JAG]
    assert set(first["grant_types_supported"]) == {
        "client_credentials",
        "urn:ietf:params:oauth:grant-type:token-exchange",
        "urn:ietf:params:oauth:grant-type:jwt-bearer",
    }
    assert {"private_key_jwt", "client_secret_basic", "client_secret_post"} <= set(
        first["token_endpoint_auth_methods_supported"]
    )
    assert first["response_types_supported"]
    page = world.http.get(first["authorization_endpoint"])
    assert page.status_code == 400 and "No interactive login" in page.text


def test_introspection(world: PdpLab) -> None:
    token = world.client_credentials(LEARNER, "api:role.docs-getter").json()["access_token"]
    form = {"token": token, **world.client_assertion(AGENT)}
    active = world.http.post(world.zts + "/oauth2/introspect", data=form).json()
    assert active["active"] is True and active["sub"] == LEARNER and active["aud"] == "api"
    bogus = world.http.post(
        world.zts + "/oauth2/introspect", data={"token": "garbage", **world.client_assertion(AGENT)}
    )
    assert bogus.json() == {"active": False}
    anonymous = world.http.post(world.zts + "/oauth2/introspect", data={"token": token})
    assert anonymous.status_code == 401 and anonymous.json()["error"] == "invalid_client"


def test_signed_policy_data_verifies_and_supports_etag(world: PdpLab) -> None:
    url = world.zts + "/domain/api/signed_policy_data"
    response = world.http.get(url)
    assert response.status_code == 200
    etag = response.headers["etag"]
    policy = verify_signed_policy_data(response.json(), JwksCache(world.zts + "/oauth2/keys"))
    assert any(a.action == "get" and a.resource == "api:docs" for a in policy.assertions)
    assert "api:role.docs-getter" in policy.roles_of(LEARNER)
    assert world.http.get(url, headers={"If-None-Match": etag}).status_code == 304
    world.ok("DELETE", f"/domain/api/role/docs-getter/member/{LEARNER}")
    changed = world.http.get(url, headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag
    missing = world.http.get(world.zts + "/domain/nosuch/signed_policy_data")
    assert missing.status_code == 404 and missing.json()["message"] == "No such domain: nosuch"


def test_expired_members_are_left_out_of_signed_policy_data(world: PdpLab) -> None:
    world.ok(
        "PUT",
        f"/domain/api/role/docs-getter/member/{LEARNER}",
        {"memberName": LEARNER, "expiration": "2001-01-01T00:00:00Z"},
    )
    document = world.http.get(world.zts + "/domain/api/signed_policy_data").json()
    roles = {r["name"]: r["members"] for r in document["signedPolicyData"]["policyData"]["roles"]}
    assert roles["api:role.docs-getter"] == []


def test_openapi_documents(world: PdpLab) -> None:
    zms = world.http.get(world.zms + "/openapi.json").json()
    zts = world.http.get(world.zts + "/openapi.json").json()
    assert zms["openapi"].startswith("3.") and "/domain/{domain}/role/{role}" in zms["paths"]
    assert "/oauth2/token" in zts["paths"] and zts["servers"][0]["url"] == world.zts


def test_healthz(world: PdpLab) -> None:
    assert world.http.get(world.zts.rsplit("/zts/v1", 1)[0] + "/healthz").json() == {
        "status": "ok",
        "part": "pdp",
    }


def test_signed_policy_data_is_cached_per_domain_version(world: PdpLab) -> None:
    url = world.zts + "/domain/api/signed_policy_data"
    first = world.http.get(url)
    again = world.http.get(url)
    # The same signed document (same signature, same expiry): built once, not per request.
    assert again.json() == first.json() and again.headers["etag"] == first.headers["etag"]
    # A write to another domain leaves it alone ...
    world.create_domain("elsewhere")
    assert world.http.get(url).json() == first.json()
    # ... a write to this one replaces it at once.
    world.ok("DELETE", f"/domain/api/role/docs-getter/member/{LEARNER}")
    changed = world.http.get(url)
    assert changed.headers["etag"] != first.headers["etag"]
    roles = {
        r["name"]: r["members"] for r in changed.json()["signedPolicyData"]["policyData"]["roles"]
    }
    assert LEARNER not in roles["api:role.docs-getter"]


def test_cached_signed_policy_data_drops_a_membership_when_it_expires(world: PdpLab) -> None:
    url = world.zts + "/domain/api/signed_policy_data"
    soon = timestamp(time.time() + 1.5)
    world.ok(
        "PUT",
        f"/domain/api/role/docs-getter/member/{LEARNER}",
        {"memberName": LEARNER, "expiration": soon},
    )
    before = world.http.get(url)
    roles = {
        r["name"]: r["members"] for r in before.json()["signedPolicyData"]["policyData"]["roles"]
    }
    assert LEARNER in roles["api:role.docs-getter"]
    time.sleep(2.0)  # no write happens: only the clock moves past the membership's end
    after = world.http.get(url, headers={"If-None-Match": before.headers["etag"]})
    assert after.status_code == 200
    roles = {
        r["name"]: r["members"] for r in after.json()["signedPolicyData"]["policyData"]["roles"]
    }
    assert LEARNER not in roles["api:role.docs-getter"]
