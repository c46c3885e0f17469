"""RFC 8693 exchange of a trusted IdP's ID token for an ID-JAG (draft -04), and each refusal."""

from __future__ import annotations

import json
import time

import jwt

from lab.oauth.jose import SigningKey
from lab.oauth.tokens import TOKEN_TYPE_ID_JAG
from tests.pdp.conftest import AGENT, LEARNER, MCP, PdpLab


def test_id_jag_is_issued_in_the_drafts_shape(world: PdpLab) -> None:
    response = world.request_id_jag(world.id_token())
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["issued_token_type"] == TOKEN_TYPE_ID_JAG
    assert body["token_type"] == "N_A"
    assert body["expires_in"] > 0
    assert body["scope"] == "api:role.docs-getter mcp:role.mcp-accessor"
    header = jwt.get_unverified_header(body["access_token"])
    assert header["typ"] == "oauth-id-jag+jwt"
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["iss"] == world.zts and claims["aud"] == world.zts
    assert claims["sub"] == LEARNER
    assert claims["client_id"] == AGENT
    assert claims["resource"] == world.settings.endpoints.mcp
    assert claims["scope"] == body["scope"]
    assert {"jti", "iat", "exp"} <= claims.keys()


def test_untrusted_issuer_is_refused(world: PdpLab) -> None:
    world.write_providers([])
    assert world.reload_providers().status_code == 200
    response = world.request_id_jag(world.id_token())
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert (
        response.json()["message"]
        == f"Invalid subject token: issuer {world.issuer_idp} is not a trusted identity provider"
    )


def test_id_token_signed_by_an_unknown_key_is_refused(world: PdpLab) -> None:
    stranger = SigningKey.load_or_create(world.settings.keys_dir / "stranger.pem", "RS256")
    token = stranger.sign(
        jwt.decode(world.id_token(), options={"verify_signature": False}), typ="JWT"
    )
    response = world.request_id_jag(token)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert "unknown signing key id" in response.json()["message"]


def test_expired_id_token_is_refused(world: PdpLab) -> None:
    response = world.request_id_jag(world.id_token(exp=1_000_000, iat=999_000))
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert "expired" in response.json()["message"]


def test_id_token_for_another_client_is_refused(world: PdpLab) -> None:
    response = world.request_id_jag(world.id_token(aud="someone-else"))
    assert response.status_code == 400
    assert response.json()["message"] == "Invalid subject token audience"


def test_client_without_jag_exchange_is_refused(world: PdpLab) -> None:
    world.ok("DELETE", "/domain/api/policy/jag")
    response = world.request_id_jag(world.id_token())
    assert response.status_code == 403
    assert response.json()["error"] == "unauthorized_client"
    assert (
        response.json()["message"]
        == "Principal not authorized for token exchange for the requested role"
    )


def test_jag_exchange_is_needed_for_every_requested_role(world: PdpLab) -> None:
    # Domain mcp withdraws zts.jag_exchange on mcp:role.mcp-accessor; api's grant remains.
    world.ok("DELETE", "/domain/mcp/policy/jag")
    response = world.request_id_jag(world.id_token())
    assert response.status_code == 403
    assert response.json()["error"] == "unauthorized_client"


def test_user_in_no_requested_role_is_refused(world: PdpLab) -> None:
    response = world.request_id_jag(world.id_token(username="idjag-other"))
    assert response.status_code == 403
    assert (
        response.json()["message"]
        == "postaccesstokenrequest: principal human.idjag-other is not included in the "
        "requested role(s) in domain api"
    )


def test_unknown_kid_triggers_a_jwks_refresh(world: PdpLab) -> None:
    # The IdP rotates its key; the PDP refetches the JWKS when it sees the new kid.
    assert world.request_id_jag(world.id_token()).status_code == 200
    new_key = SigningKey.load_or_create(world.settings.keys_dir / "idp-rotated.pem", "RS256")
    object.__setattr__(world.idp_key, "key", new_key.key)
    object.__setattr__(world.idp_key, "kid", new_key.kid)
    time.sleep(1.1)  # the cache refetches at most once a second (amplification guard)
    response = world.request_id_jag(world.id_token())
    assert response.status_code == 200, response.text


def test_providers_reload_needs_the_admin(world: PdpLab) -> None:
    response = world.http.post(world.zts + "/lab/reload")
    assert response.status_code == 401
    world.settings.providers_file.write_text("not json")
    bad = world.reload_providers()
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_request"
    world.write_providers()
    assert world.reload_providers().json()["providers"][0]["issuerUri"] == world.issuer_idp
    assert json.loads(world.settings.providers_file.read_text())
    assert MCP  # keeps the import list honest


def test_audience_is_required_at_issuance(world: PdpLab) -> None:
    """Draft -04 §4.3: audience is REQUIRED; Athenz: 'Invalid request: no audience provided'."""
    response = world.request_id_jag(world.id_token(), audience="")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert response.json()["message"] == "Invalid request: no audience provided"


def test_unregistered_resource_is_invalid_target_at_issuance(world: PdpLab) -> None:
    for resource in ("http://127.0.0.1:1/not-registered", "api", world.settings.endpoints.zts):
        response = world.request_id_jag(world.id_token(), resource=resource)
        assert response.status_code == 400, (resource, response.text)
        assert response.json()["error"] == "invalid_target"
        assert "access_token" not in response.json()
