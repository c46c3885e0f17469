"""RFC 7523 §2.1 jwt-bearer grant with an ID-JAG as the assertion (ID-JAG draft -04 §4.4).

Two issuers, two topologies (ARCHITECTURE.md "Two topologies"):

- the PDP's own ID-JAG (``iss`` = this PDP): the public tutorial's path, where ZTS issues the
  ID-JAG and redeems it. Draft -04 §9.3 says an IdP MUST NOT issue access tokens for an ID-JAG it
  issued itself in the same trust domain; the lab keeps this path because Athenz does it and
  learners hold the lab beside the tutorial, and steps 11, 18 and 19 say so;
- an external ID-JAG from a provider marked ``idJagIssuer`` (the draft's path, -04 §4.4.1):
  checked by :mod:`lab.pdp.zts.grants.external_id_jag`, then, because no PDP policy was
  consulted when it was issued, the client must hold ``zts.jag_exchange`` on each role here.

Both then get the same checks: ``aud`` is this PDP as a string or a one-element array,
``client_id`` is the authenticated client, ``jti`` single use (the MCP extension requires
replay detection), and roles are granted by membership *now*: a user removed from a role since
the ID-JAG was issued does not get it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lab.oauth.errors import InvalidGrant, InvalidScope, InvalidTarget
from lab.oauth.jose import JwtValidationError, unverified_claims, unverified_header, verify_jwt
from lab.oauth.tokens import GRANT_JWT_BEARER, TYP_ID_JAG
from lab.pdp.zts.grants.base import (
    MAX_ID_JAG_LIFETIME_S,
    Grant,
    GrantResult,
    Scope,
    TokenRequest,
    bearer_response,
    granted_roles,
    lifetime,
    mint_access_token,
    not_included,
    parse_scope,
    registered_resource,
)
from lab.pdp.zts.grants.external_id_jag import verify_external_id_jag
from lab.pdp.zts.grants.token_exchange import require_jag_exchange

REPLAYED_ASSERTION = "assertion has already been used"


def invalid_assertion(reason: str) -> InvalidGrant:
    return InvalidGrant(
        f"invalid assertion: {reason}", athenz_message=f"Invalid assertion token: {reason}"
    )


def addressed_to(audience: Any, issuer: str) -> bool:
    """-04 §4.4.1: ``aud`` is the RAS issuer, as a string or a one-element array."""
    if isinstance(audience, list):
        return len(audience) == 1 and audience[0] == issuer
    return audience == issuer


@dataclass
class IdJagRedemption:
    scope: Scope
    roles: list[str]
    claims: dict[str, Any]
    audience: str
    domain: str
    subject: str = ""


class JwtBearerGrant(Grant):
    grant_type = GRANT_JWT_BEARER

    def validate(self, request: TokenRequest) -> IdJagRedemption:
        assertion = request.require("assertion", "Invalid request: no assertion provided")
        try:
            typ = unverified_header(assertion).get("typ")
            unverified = unverified_claims(assertion)
        except JwtValidationError as exc:
            raise invalid_assertion(exc.reason) from None
        audience = unverified.get("aud")
        issuer = unverified.get("iss")
        # ID-JAG draft -04 §3.1 / §4.4.1: the assertion is explicitly typed oauth-id-jag+jwt.
        if str(typ).lower() != TYP_ID_JAG:
            raise invalid_assertion(f"token type {typ!r} is not {TYP_ID_JAG}")
        # ID-JAG draft -04 §4.4.1: aud MUST identify this authorization server.
        if not addressed_to(audience, self.pdp.issuer):
            raise InvalidGrant(
                f"ID-JAG audience {audience!r} is not this authorization server",
                athenz_message="Unknown jag assertion audience",
            )
        external = issuer != self.pdp.issuer
        if external:
            verified = verify_external_id_jag(self.pdp, assertion, issuer)
            claims, subject = verified.claims, verified.subject
            # jti is unique per issuer (RFC 7519 §4.1.7).
            jti_key = f"jag:{verified.issuer}#{claims['jti']}"
        else:
            try:
                claims = verify_jwt(
                    assertion,
                    self.pdp.key_resolver_self(),
                    typ=TYP_ID_JAG,
                    issuer=self.pdp.issuer,
                    audience=self.pdp.issuer,
                    required=("exp", "iat", "iss", "sub", "aud", "jti", "client_id"),
                    max_lifetime=MAX_ID_JAG_LIFETIME_S,
                )
            except JwtValidationError as exc:
                raise invalid_assertion(exc.reason) from None
            subject = str(claims["sub"])
            jti_key = f"jag:{claims['jti']}"
        request.subject = subject
        request.jti = str(claims["jti"])
        # ID-JAG draft -04 §4.4.1: client_id MUST match the authenticated client.
        if str(claims["client_id"]).lower() != request.client:
            raise InvalidGrant(
                f"ID-JAG client_id {claims['client_id']!r} is not the authenticated client",
                athenz_message="Invalid jag assertion client_id",
            )
        jag_scope_text = claims.get("scope")
        if not isinstance(jag_scope_text, str) or not jag_scope_text.strip():
            raise InvalidGrant(
                "ID-JAG has no scope", athenz_message="Invalid jag assertion - missing scope"
            )
        jag_scope = parse_scope(jag_scope_text, multi_domain=True)
        scope = self._requested_scope(request, jag_scope)
        request.resource = scope.text()
        audience_out, domain = self._token_audience(request, claims)
        # RFC 7523 §3 item 7 / MCP enterprise-managed authorization: jti replay detection.
        # Recorded with the audit record of this request (one transaction, whose insert refuses
        # a used jti); a replay is answered before any other refusal (TokenEndpoint).
        request.single_use.append((jti_key, int(claims["exp"])))
        roles = granted_roles(self.pdp, subject, scope)
        if not roles:
            raise not_included(subject, scope.domain)
        if external:
            # The PDP's own ID-JAG passed this check at issuance (step 11); an external one was
            # issued under the IdP's policy only, so the resource's owners decide here which
            # clients may carry their roles for a user.
            require_jag_exchange(self.pdp, request, scope)
        return IdJagRedemption(
            scope=scope,
            roles=roles,
            claims=claims,
            audience=audience_out,
            domain=domain,
            subject=subject,
        )

    def _requested_scope(self, request: TokenRequest, jag_scope: Scope) -> Scope:
        if not jag_scope.roles:
            raise InvalidGrant(
                "the ID-JAG names no roles (a D:domain scope in an ID-JAG grants nothing)",
                athenz_message="Invalid jag assertion - scope names no roles",
            )
        requested_text = request.param("scope")
        if requested_text is None:
            # Only roles the ID-JAG names count: a D:domain in it adds nothing (issue #16).
            return Scope(roles=jag_scope.roles)
        requested = parse_scope(requested_text, default_domain=jag_scope.domain, multi_domain=True)
        if requested.all_domains or not set(requested.roles) <= set(jag_scope.roles):
            raise InvalidScope(
                "requested scope is not a subset of the ID-JAG scope",
                athenz_message=(
                    "Invalid request: requested scope is not a subset of assertion scope"
                ),
            )
        return requested

    def _token_audience(self, request: TokenRequest, claims: dict[str, Any]) -> tuple[str, str]:
        """The access token is for the ID-JAG's ``resource`` and nothing else (RFC 8707; MCP
        enterprise-managed authorization: audience-restricted to the MCP server), so no ID-JAG
        redeems to a token the document API (``aud`` ``api``) would accept. A missing,
        unregistered or mismatched resource is ``invalid_grant`` (the MCP extension's code for
        an ``aud``/``resource`` mismatch at redemption). Returns the audience and its domain."""
        resource = claims.get("resource")
        sent = request.param("resource")
        if not isinstance(resource, str) or not resource:
            raise InvalidGrant(
                "the ID-JAG names no resource; tokens from an ID-JAG are issued only for a "
                "registered resource (ask for the ID-JAG with resource=<the MCP server's URL>)",
                athenz_message="Invalid jag assertion - missing resource",
            )
        if sent is not None and sent.rstrip("/") != resource.rstrip("/"):
            raise InvalidGrant(
                f"resource {sent} differs from the ID-JAG's resource {resource}",
                athenz_message=f"Invalid resource: {sent}",
            )
        try:
            domain, registered = registered_resource(self.pdp, resource)
        except InvalidTarget as exc:
            raise InvalidGrant(exc.description, athenz_message=exc.athenz_message) from None
        return registered, domain

    def issue(self, request: TokenRequest, validated: IdJagRedemption) -> GrantResult:
        remaining = max(1, lifetime(request))
        token, claims = mint_access_token(
            self.pdp,
            subject=validated.subject,
            client=request.client,
            audience=validated.audience,
            domain=validated.domain,
            roles=validated.roles,
            lifetime_s=remaining,
        )
        request.jti = claims["jti"]
        request.reason = (
            f"ID-JAG {validated.claims['jti']} redeemed; {claims['sub']} holds "
            f"{', '.join(validated.roles)} now"
        )
        return GrantResult(bearer_response(token, claims, validated.roles))
