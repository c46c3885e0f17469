"""Every credential's lifetime is bounded, and admin assertions are single use and exact.

Findings (issue #16): client assertions with a 10-year ``exp`` were accepted; a 30-day ID-JAG
was redeemed; an exchanged token could outlive its subject token; ``expires_in`` was not
honoured everywhere; admin assertions could be replayed, were not checked for ``typ``, and a
ZTS-addressed one was accepted where only ZMS-addressed ones belong.
"""

from __future__ import annotations

from typing import Any

import pytest

from lab.config import ADMIN_PRINCIPAL
from lab.oauth.jose import SigningKey, new_jti, now, unverified_claims
from lab.oauth.tokens import CLIENT_ASSERTION_TYPE_JWT_BEARER, TYP_ACCESS_TOKEN, TYP_ID_JAG
from tests.pdp.conftest import AGENT, LEARNER, MCP, PdpLab

YEAR = 365 * 24 * 3600


def pdp_key(lab: PdpLab) -> SigningKey:
    return SigningKey.load_or_create(lab.settings.key_file("pdp-signing"))


def error(response: Any) -> tuple[int, str]:
    return response.status_code, response.json().get("error")


def assertion(lab: PdpLab, principal: str, audience: str, **changes: Any) -> str:
    issued = now()
    claims = {
        "iss": principal,
        "sub": principal,
        "aud": audience,
        "jti": new_jti(),
        "iat": issued,
        "exp": issued + 60,
        **changes,
    }
    typ = claims.pop("typ", "JWT")
    return lab.key(principal).sign(claims, typ=typ)


@pytest.mark.parametrize(
    "changes",
    [
        {"exp": now() + 10 * YEAR},
        {"iat": now() - 200, "exp": now() + 200},  # exp - iat = 400 s > 300 s
        {"exp": now() + 3600, "iat": now()},
    ],
)
def test_long_lived_client_assertion_is_invalid_client(world: PdpLab, changes: Any) -> None:
    token = assertion(world, AGENT, world.zts, **changes)
    response = world.token(
        {
            "grant_type": "client_credentials",
            "scope": "api:role.token-exchangable-ai-agents",
            "client_assertion_type": CLIENT_ASSERTION_TYPE_JWT_BEARER,
            "client_assertion": token,
        }
    )
    assert error(response) == (401, "invalid_client"), response.text


def test_a_30_day_id_jag_is_not_redeemed(world: PdpLab) -> None:
    issued = world.request_id_jag(world.id_token())
    claims = unverified_claims(issued.json()["access_token"])
    claims.update(jti=new_jti(), exp=now() + 30 * 24 * 3600)
    forged = pdp_key(world).sign(claims, typ=TYP_ID_JAG)
    response = world.redeem(forged)
    assert error(response) == (400, "invalid_grant"), response.text
    assert "lifetime" in response.json()["error_description"]


def test_id_jag_honours_a_shorter_expires_in(world: PdpLab) -> None:
    response = world.request_id_jag(world.id_token(), expires_in="60")
    assert response.status_code == 200, response.text
    claims = unverified_claims(response.json()["access_token"])
    assert claims["exp"] - claims["iat"] == 60
    assert response.json()["expires_in"] == 60
    longer = world.request_id_jag(world.id_token(), expires_in="86400")
    claims = unverified_claims(longer.json()["access_token"])
    assert claims["exp"] - claims["iat"] == 300


@pytest.mark.parametrize(("asked", "granted"), [("60", 60), ("99999999", 7200)])
def test_expires_in_is_honoured_and_capped(world: PdpLab, asked: str, granted: int) -> None:
    response = world.token(
        {"grant_type": "client_credentials", "scope": "api:role.docs-getter", "expires_in": asked},
        client=LEARNER,
    )
    assert response.status_code == 200, response.text
    claims = unverified_claims(response.json()["access_token"])
    assert claims["exp"] - claims["iat"] == granted == response.json()["expires_in"]


@pytest.mark.parametrize("asked", ["\u0661\u0662", "1e3", "-5", "0", " 60", "9" * 40])
def test_malformed_expires_in_is_invalid_request(world: PdpLab, asked: str) -> None:
    response = world.token(
        {"grant_type": "client_credentials", "scope": "api:role.docs-getter", "expires_in": asked},
        client=LEARNER,
    )
    assert error(response) == (400, "invalid_request"), response.text


def _short_subject_token(lab: PdpLab, seconds_left: int) -> str:
    """The learner's token for the MCP server (domain mcp), re-signed to expire soon."""
    real = lab.token(
        {
            "grant_type": "client_credentials",
            "scope": "mcp:role.mcp-accessor api:role.docs-getter",
            "resource": lab.settings.endpoints.mcp,
        },
        client=LEARNER,
    )
    assert real.status_code == 200, real.text
    claims = unverified_claims(real.json()["access_token"])
    claims.update(jti=new_jti(), iat=now() - 100, exp=now() + seconds_left)
    return pdp_key(lab).sign(claims, typ=TYP_ACCESS_TOKEN)


def test_exchanged_token_never_outlives_its_subject_token(world: PdpLab) -> None:
    subject = _short_subject_token(world, 40)
    response = world.exchange(subject, client=MCP)
    assert response.status_code == 200, response.text
    exchanged = unverified_claims(response.json()["access_token"])
    assert exchanged["exp"] <= unverified_claims(subject)["exp"]
    assert response.json()["expires_in"] <= 40


def test_subject_token_expired_within_the_leeway_gives_nothing(world: PdpLab) -> None:
    subject = _short_subject_token(world, -5)
    response = world.exchange(subject, client=MCP)
    assert error(response) == (400, "invalid_grant"), response.text


# ------------------------------------------------------------------------------ admin assertions


def zms_get(lab: PdpLab, token: str) -> Any:
    return lab.http.get(f"{lab.zms}/domain", headers={"Authorization": f"Bearer {token}"})


def test_admin_assertion_is_single_use_at_zms(world: PdpLab) -> None:
    token = assertion(world, ADMIN_PRINCIPAL, world.zms)
    assert zms_get(world, token).status_code == 200
    replay = zms_get(world, token)
    assert error(replay) == (401, "invalid_token"), replay.text


def test_admin_assertion_is_single_use_at_zts_reload(world: PdpLab) -> None:
    token = assertion(world, ADMIN_PRINCIPAL, world.zts)
    headers = {"Authorization": f"Bearer {token}"}
    assert world.http.post(world.zts + "/lab/reload", headers=headers).status_code == 200
    replay = world.http.post(world.zts + "/lab/reload", headers=headers)
    assert error(replay) == (401, "invalid_token"), replay.text


@pytest.mark.parametrize("typ", [TYP_ACCESS_TOKEN, TYP_ID_JAG, "oauth-id-jag+jwt"])
def test_admin_assertion_with_another_typ_is_refused(world: PdpLab, typ: str) -> None:
    response = zms_get(world, assertion(world, ADMIN_PRINCIPAL, world.zms, typ=typ))
    assert error(response) == (401, "invalid_token"), response.text


def test_zts_addressed_admin_assertion_is_refused_by_zms(world: PdpLab) -> None:
    for audience in (world.zts, world.zts + "/oauth2/token", [world.zms, world.zts]):
        response = zms_get(world, assertion(world, ADMIN_PRINCIPAL, world.zms, aud=audience))
        assert error(response) == (401, "invalid_token"), (audience, response.text)


def test_zms_addressed_admin_assertion_is_refused_by_zts_maintenance(world: PdpLab) -> None:
    token = assertion(world, ADMIN_PRINCIPAL, world.zms)
    response = world.http.post(
        world.zts + "/lab/reload", headers={"Authorization": f"Bearer {token}"}
    )
    assert error(response) == (401, "invalid_token"), response.text


@pytest.mark.parametrize("changes", [{"exp": now() + YEAR}, {"exp": "9999999999"}, {"jti": None}])
def test_admin_assertion_lifetime_and_jti_are_checked(world: PdpLab, changes: Any) -> None:
    claims = {k: v for k, v in changes.items() if v is not None}
    token = assertion(world, ADMIN_PRINCIPAL, world.zms, **claims)
    if changes.get("jti", "") is None:
        unsigned = unverified_claims(token)
        unsigned.pop("jti")
        token = world.key(ADMIN_PRINCIPAL).sign(unsigned, typ="JWT")
    response = zms_get(world, token)
    assert error(response) == (401, "invalid_token"), response.text
