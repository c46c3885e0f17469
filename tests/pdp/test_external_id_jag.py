"""The PDP redeems ID-JAGs issued by a trusted external IdP (ID-JAG draft -04 §4.4.1, §9.3),
and refuses every malformed, misaddressed, replayed or untrusted one with 400 invalid_grant."""

from __future__ import annotations

from typing import Any

import jwt
import pytest

from lab.oauth.jose import SigningKey, new_jti, now
from lab.oauth.tokens import TYP_ID_JAG
from tests.pdp.conftest import AGENT, LEARNER, MCP, PdpLab

SCOPE = "api:role.docs-getter mcp:role.mcp-accessor"


@pytest.fixture
def ext(world: PdpLab) -> PdpLab:
    """The world, with the IdP trusted to issue ID-JAGs as well as ID tokens."""
    world.write_providers(
        [
            {
                "issuerUri": world.issuer_idp,
                "jwksUri": world.settings.endpoints.idp_jwks,
                "principalTemplate": "human.{preferred_username}",
                "idJagIssuer": True,
            }
        ]
    )
    assert world.reload_providers().status_code == 200
    return world


def idp_jag(
    lab: PdpLab, key: SigningKey | None = None, typ: str = TYP_ID_JAG, **claims: Any
) -> str:
    """An ID-JAG as the enterprise IdP (lab/idp/id_jag.py, Keycloak) issues it."""
    issued = now()
    body: dict[str, Any] = {
        "jti": new_jti(),
        "iss": lab.issuer_idp,
        "sub": "5f0c9a52-3c1e-4d8b-9a57-0b1d6e4a7c21",
        "aud": lab.zts,
        "client_id": AGENT,
        "iat": issued,
        "exp": issued + 300,
        "resource": lab.settings.endpoints.mcp,
        "scope": SCOPE,
        "email": "idjag-learner@example.com",
        "preferred_username": "idjag-learner",
    }
    body.update(claims)
    return (key or lab.idp_key).sign({k: v for k, v in body.items() if v is not None}, typ=typ)


def refused(lab: PdpLab, assertion: str, client: str = AGENT) -> str:
    response = lab.redeem(assertion, client=client)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_grant"
    assert "access_token" not in response.json()
    return str(response.json()["message"])


def test_external_id_jag_is_redeemed_for_the_mapped_user(ext: PdpLab) -> None:
    response = ext.redeem(idp_jag(ext))
    assert response.status_code == 200, response.text
    claims = jwt.decode(response.json()["access_token"], options={"verify_signature": False})
    assert claims["iss"] == ext.zts  # the PDP issues the access token, in its own domain
    assert claims["sub"] == LEARNER  # principalTemplate human.{preferred_username}
    assert claims["client_id"] == AGENT
    assert claims["aud"] == ext.settings.endpoints.mcp
    assert claims["scp"] == ["api:role.docs-getter", "mcp-accessor"]  # domain mcp's token


def test_one_element_audience_array_is_accepted(ext: PdpLab) -> None:
    assert ext.redeem(idp_jag(ext, aud=[ext.zts])).status_code == 200


def test_issuer_missing_from_the_providers_config_is_refused(ext: PdpLab) -> None:
    message = refused(ext, idp_jag(ext, iss="http://127.0.0.1:1/realms/elsewhere"))
    assert message == (
        "Invalid assertion token: issuer http://127.0.0.1:1/realms/elsewhere "
        "is not a trusted identity provider"
    )


def test_issuer_trusted_only_for_id_tokens_is_refused(world: PdpLab) -> None:
    # The world's providers file trusts the IdP's ID tokens (step 10) but not its ID-JAGs.
    assert "not to issue ID-JAGs (idJagIssuer)" in refused(world, idp_jag(world))


def test_wrong_audience_is_refused(ext: PdpLab) -> None:
    message = refused(ext, idp_jag(ext, aud="http://127.0.0.1:1/zts/v1"))
    assert message == "Unknown jag assertion audience"


def test_audience_array_of_two_is_refused(ext: PdpLab) -> None:
    message = refused(ext, idp_jag(ext, aud=[ext.zts, "http://127.0.0.1:1/other-as"]))
    assert message == "Unknown jag assertion audience"


def test_client_id_of_another_client_is_refused(ext: PdpLab) -> None:
    ext.role("api", "docs-getter-jag-exchanger", [AGENT, MCP])
    ext.role("mcp", "mcp-accessor-jag-exchanger", [AGENT, MCP])
    assert refused(ext, idp_jag(ext), client=MCP) == "Invalid jag assertion client_id"


def test_replay_is_refused(ext: PdpLab) -> None:
    assertion = idp_jag(ext)
    assert ext.redeem(assertion).status_code == 200
    assert refused(ext, assertion) == "Invalid assertion token: assertion has already been used"


def test_long_lived_id_jag_is_refused(ext: PdpLab) -> None:
    issued = now()
    message = refused(ext, idp_jag(ext, iat=issued, exp=issued + 86_400))
    assert "lifetime exceeds 600 s" in message


def test_string_exp_is_refused(ext: PdpLab) -> None:
    message = refused(ext, idp_jag(ext, exp=str(now() + 300)))
    assert message.startswith("Invalid assertion token")


def test_wrong_typ_is_refused(ext: PdpLab) -> None:
    message = refused(ext, idp_jag(ext, typ="JWT"))
    assert message == "Invalid assertion token: token type 'JWT' is not oauth-id-jag+jwt"


def test_bad_signature_is_refused(ext: PdpLab) -> None:
    stranger = SigningKey.load_or_create(ext.settings.keys_dir / "stranger.pem", "RS256")
    forged = idp_jag(ext, key=stranger)
    assert "unknown signing key id" in refused(ext, forged)
    # Same kid, other key: the signature itself fails.
    header, payload, signature = idp_jag(ext).split(".")
    tampered = f"{header}.{payload}.{signature[:-4]}AAAA"
    assert refused(ext, tampered).startswith("Invalid assertion token")


def test_expired_id_jag_is_refused(ext: PdpLab) -> None:
    assert "expired" in refused(ext, idp_jag(ext, iat=now() - 900, exp=now() - 600))


def test_user_not_in_the_role_gets_nothing(ext: PdpLab) -> None:
    response = ext.redeem(idp_jag(ext, preferred_username="idjag-other"))
    assert response.status_code == 403
    assert response.json()["message"] == (
        "postaccesstokenrequest: principal human.idjag-other is not included in the "
        "requested role(s) in domain api"
    )


def test_client_without_jag_exchange_is_refused(ext: PdpLab) -> None:
    ext.ok("DELETE", "/domain/api/policy/jag")
    response = ext.redeem(idp_jag(ext))
    assert response.status_code == 403
    assert response.json()["error"] == "unauthorized_client"


def test_pdp_still_redeems_its_own_id_jag_in_the_tutorial_topology(ext: PdpLab) -> None:
    """Draft -04 §9.3 forbids this in one trust domain; the lab keeps the tutorial's path
    (steps 11-13) and says so in steps 18-19 instead of changing what the tutorial shows."""
    own = ext.request_id_jag(ext.id_token()).json()["access_token"]
    assert jwt.decode(own, options={"verify_signature": False})["iss"] == ext.zts
    assert ext.redeem(own).status_code == 200
