"""Tests written for mutants of ``lab/pdp/zts/grants/external_id_jag.py`` that ``make mutate``
could leave alive (docs/dev/mutation.md): the lifetime bound (its value, both of its halves, its
boundary), the NumericDate type checks, and the exact refusal texts.
"""

from __future__ import annotations

import json

import jwt
import pytest

from lab.oauth.jose import now, unverified_claims
from lab.oauth.tokens import TYP_ID_JAG
from lab.pdp.core import Pdp
from tests.pdp.conftest import PdpLab
from tests.pdp.test_external_id_jag import idp_jag


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


def _refusal(lab: PdpLab, assertion: str) -> tuple[str, str]:
    response = lab.redeem(assertion)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == "invalid_grant"
    assert "access_token" not in body
    return str(body["error_description"]), str(body["message"])


LIFETIME_REFUSAL = (
    "invalid assertion: lifetime exceeds 600 s; an ID-JAG is short-lived",
    "Invalid assertion token: lifetime exceeds 600 s; an ID-JAG is short-lived",
)


def test_an_external_id_jag_may_live_600_s_but_not_601(ext: PdpLab) -> None:
    issued = now()
    accepted = ext.redeem(idp_jag(ext, iat=issued, exp=issued + 600))
    assert accepted.status_code == 200, accepted.text
    assert _refusal(ext, idp_jag(ext, iat=issued, exp=issued + 601)) == LIFETIME_REFUSAL


def test_an_id_jag_issued_long_ago_is_refused_even_when_it_expires_soon(ext: PdpLab) -> None:
    # exp - iat is over the bound although exp - now is not: the first half of the check alone.
    issued = now() - 3600
    assert _refusal(ext, idp_jag(ext, iat=issued, exp=now() + 60)) == LIFETIME_REFUSAL


def test_an_id_jag_dated_in_the_leeway_may_not_run_past_600_s_from_now(ext: PdpLab) -> None:
    # iat 25 s ahead (inside the 30 s clock-skew leeway), exp - iat = 600 exactly, but
    # exp - now = 625: the second half of the check alone refuses it.
    current = now()
    assertion = idp_jag(ext, iat=current + 25, exp=current + 625)
    assert _refusal(ext, assertion) == LIFETIME_REFUSAL


@pytest.mark.parametrize(("name", "value"), [("exp", "str"), ("iat", "str"), ("iat", True)])
def test_a_numeric_date_that_is_no_json_number_is_refused_by_name(
    ext: PdpLab, name: str, value: object
) -> None:
    # pyjwt's own check int()s the value, so "1764270000" or true would pass it. jose's
    # check_numeric_dates refuses it first, so external_id_jag's own type check (kept as a
    # guard) is never reached: its mutants are equivalent (docs/dev/mutation.md).
    current = now()
    dates: dict[str, object] = {"iat": current, "exp": current + 300}
    dates[name] = str(dates[name]) if value == "str" else value
    assert _refusal(ext, idp_jag(ext, **dates)) == (
        f"invalid assertion: {name} must be a NumericDate (seconds since the epoch)",
        f"Invalid assertion token: {name} must be a NumericDate (seconds since the epoch)",
    )


def test_a_fractional_numeric_date_is_accepted(ext: PdpLab) -> None:
    current = now()
    response = ext.redeem(idp_jag(ext, iat=current + 0.5, exp=current + 300.5))
    assert response.status_code == 200, response.text


def test_an_id_jag_whose_user_maps_to_no_principal_is_refused_by_name(ext: PdpLab) -> None:
    # The Kelvin sign: NFKC would turn it into another user's name, so it maps to nobody.
    assertion = idp_jag(ext, preferred_username="\u212aelvin")
    assert _refusal(ext, assertion) == (
        "invalid assertion: no principal for template human.{preferred_username}",
        "Invalid assertion token: no principal for template human.{preferred_username}",
    )


def test_an_untrusted_or_id_token_only_issuer_is_refused_in_both_dialects(
    ext: PdpLab, world: PdpLab
) -> None:
    stranger = "http://127.0.0.1:1/realms/elsewhere"
    assert _refusal(ext, idp_jag(ext, iss=stranger)) == (
        f"invalid assertion: issuer {stranger} is not a trusted identity provider",
        f"Invalid assertion token: issuer {stranger} is not a trusted identity provider",
    )
    world.write_providers()  # the same IdP, trusted for ID tokens only
    assert world.reload_providers().status_code == 200
    issuer = world.issuer_idp
    assert _refusal(world, idp_jag(world)) == (
        f"invalid assertion: issuer {issuer} is trusted for ID tokens but not to issue "
        "ID-JAGs (idJagIssuer)",
        f"Invalid assertion token: issuer {issuer} is trusted for ID tokens but not to issue "
        "ID-JAGs (idJagIssuer)",
    )


def test_a_replayed_external_id_jag_is_refused_under_its_issuers_name(ext: PdpLab) -> None:
    assertion = idp_jag(ext)
    assert ext.redeem(assertion).status_code == 200
    assert _refusal(ext, assertion)[1] == (
        "Invalid assertion token: assertion has already been used"
    )


def test_a_non_text_issuer_is_refused_not_looked_up(ext: PdpLab) -> None:
    # A list is unhashable: looking it up in the providers would be a 500. pyjwt refuses to
    # encode such an iss, so the claims are signed as raw JWS bytes.
    claims = {**unverified_claims(idp_jag(ext)), "iss": ["http://127.0.0.1:1/a"]}
    assertion = jwt.api_jws.PyJWS().encode(
        json.dumps(claims).encode(),
        ext.idp_key.key,
        algorithm="RS256",
        headers={"typ": TYP_ID_JAG, "kid": ext.idp_key.kid},
    )
    assert _refusal(ext, assertion) == (
        "invalid assertion: issuer ['http://127.0.0.1:1/a'] is not a trusted identity provider",
        "Invalid assertion token: issuer ['http://127.0.0.1:1/a'] is not a trusted identity "
        "provider",
    )


@pytest.mark.parametrize("claim", ["jti", "client_id", "sub"])
def test_an_external_id_jag_missing_a_required_claim_is_refused_by_name(
    ext: PdpLab, claim: str
) -> None:
    assert _refusal(ext, idp_jag(ext, **{claim: None})) == (
        f"invalid assertion: token is missing the {claim!r} claim",
        f"Invalid assertion token: token is missing the {claim!r} claim",
    )


def test_an_external_id_jag_is_marked_used_under_its_issuers_name(ext: PdpLab) -> None:
    # RFC 7519 §4.1.7: a jti is unique per issuer, so the single-use key names the issuer.
    assertion = idp_jag(ext)
    assert ext.redeem(assertion).status_code == 200
    store = Pdp.open(ext.settings).store
    jti = unverified_claims(assertion)["jti"]
    assert store.jti_seen(f"jag:{ext.issuer_idp}#{jti}")
    assert not store.jti_seen(f"jag:None#{jti}")
