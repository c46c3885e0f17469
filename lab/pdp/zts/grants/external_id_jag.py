"""ID-JAGs issued by an external identity provider: the checks before the PDP redeems one.

ID-JAG draft -04 §9.3's canonical topology: the enterprise IdP issues the ID-JAG and a resource
authorization server in another trust domain (here the PDP) redeems it with the RFC 7523
jwt-bearer grant (§4.4.1: RFC 7521 §5.2 processing plus ``typ``). What is checked here is what
only an external ID-JAG needs; :mod:`lab.pdp.zts.grants.jwt_bearer` checks ``aud``, ``client_id``,
scope, resource, single use and roles for both kinds.

- ``iss`` names a provider of the providers config (the same file step 10 edits) marked
  ``"idJagIssuer": true``; its ``jwksUri`` verifies the signature. A provider trusted only for
  ID tokens may sign users in, not grant access.
- ``exp`` and ``iat`` are numbers and the ID-JAG lives minutes: a long-lived grant is refused
  (Keycloak's ``jwtAuthorizationGrantMaxAllowedAssertionExpiration`` plays the same part).
- the subject is the provider's ``principalTemplate`` applied to the ID-JAG's claims, as for
  that provider's ID tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lab.oauth.errors import InvalidGrant
from lab.oauth.jose import JwtValidationError, now, verify_jwt
from lab.oauth.tokens import TYP_ID_JAG
from lab.pdp.core import Pdp

#: Ten minutes: twice what -04's example and Keycloak issue (300 s), far below a session.
MAX_EXTERNAL_ID_JAG_LIFETIME_S = 600

REQUIRED_CLAIMS = ("iss", "sub", "aud", "client_id", "jti", "exp", "iat")


@dataclass
class ExternalIdJag:
    claims: dict[str, Any]
    subject: str
    issuer: str


def refused(reason: str) -> InvalidGrant:
    return InvalidGrant(
        f"invalid assertion: {reason}", athenz_message=f"Invalid assertion token: {reason}"
    )


def verify_external_id_jag(pdp: Pdp, assertion: str, issuer: Any) -> ExternalIdJag:
    """The verified claims and mapped principal of an ID-JAG from a trusted provider, or an
    ``invalid_grant`` naming the check that failed."""
    provider = pdp.providers.get(issuer) if isinstance(issuer, str) else None
    if provider is None:
        raise refused(f"issuer {issuer} is not a trusted identity provider")
    if not provider.id_jag_issuer:
        raise refused(
            f"issuer {issuer} is trusted for ID tokens but not to issue ID-JAGs (idJagIssuer)"
        )
    try:
        claims = verify_jwt(
            assertion,
            provider.jwks,
            typ=TYP_ID_JAG,
            issuer=provider.issuer,
            required=REQUIRED_CLAIMS,
        )
    except JwtValidationError as exc:
        raise refused(exc.reason) from None
    for name in ("exp", "iat"):
        # RFC 7519 §2 NumericDate: a number, never a string a lenient parser would convert.
        if isinstance(claims[name], bool) or not isinstance(claims[name], int | float):
            raise refused(f"{name} must be a number")
    current = now()
    if (
        claims["exp"] - claims["iat"] > MAX_EXTERNAL_ID_JAG_LIFETIME_S
        or claims["exp"] - current > MAX_EXTERNAL_ID_JAG_LIFETIME_S
    ):
        raise refused(
            f"lifetime exceeds {MAX_EXTERNAL_ID_JAG_LIFETIME_S} s; an ID-JAG is short-lived"
        )
    subject = provider.principal_for(claims)
    if subject is None:
        raise refused(f"no principal for template {provider.principal_template}")
    return ExternalIdJag(claims=claims, subject=subject, issuer=provider.issuer)
