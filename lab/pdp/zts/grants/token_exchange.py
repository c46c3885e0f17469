"""RFC 8693 token exchange: access token → access token, and ID token → ID-JAG.

Two shapes share the grant type (reference/athenz.md §3):

- ``subject_token_type`` access_token: impersonation of the token's user by the authenticated
  service, allowed by ``zts.token_source_exchange`` on ``<source>:<target>`` and
  ``zts.token_target_exchange`` on ``<target>:<source>:role.<role>``. The issued token keeps the
  user as ``sub`` and, beyond Athenz, names the service in an RFC 8693 §4.1 ``act`` claim.
- ``subject_token_type`` id_token with ``requested_token_type`` id-jag: the Identity Assertion
  JWT Authorization Grant (draft-ietf-oauth-identity-assertion-authz-grant-04 §4.3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lab.oauth.errors import (
    InvalidGrant,
    InvalidRequest,
    InvalidScope,
    InvalidTarget,
    UnauthorizedClient,
)
from lab.oauth.jose import JwtValidationError, new_jti, now, unverified_claims, verify_jwt
from lab.oauth.tokens import (
    GRANT_TOKEN_EXCHANGE,
    TOKEN_TYPE_ACCESS_TOKEN,
    TOKEN_TYPE_ID_JAG,
    TOKEN_TYPE_ID_TOKEN,
    TYP_ACCESS_TOKEN,
    TYP_ID_JAG,
    TYP_JWT,
)
from lab.pdp.core import Pdp
from lab.pdp.names import DOMAIN_RE
from lab.pdp.zts.grants.base import (
    ID_JAG_LIFETIME_S,
    Grant,
    GrantResult,
    Scope,
    TokenRequest,
    bearer_response,
    explicit_scope,
    granted_roles,
    lifetime,
    mint_access_token,
    not_included,
    parse_scope,
    registered_resource,
)
from lab.pdp.zts.grants.resource_scope import roles_for_resource

SOURCE_EXCHANGE = "zts.token_source_exchange"
TARGET_EXCHANGE = "zts.token_target_exchange"
JAG_EXCHANGE = "zts.jag_exchange"

NOT_AUTHORIZED_SOURCE = "Principal not authorized for token impersonation from source domain"
NOT_AUTHORIZED_TARGET = "Principal not authorized for token exchange for the requested role"


def invalid_subject(reason: str) -> InvalidGrant:
    return InvalidGrant(
        f"invalid subject token: {reason}", athenz_message=f"Invalid subject token: {reason}"
    )


@dataclass
class AccessTokenExchange:
    scope: Scope
    source: str
    roles: list[str]
    subject_claims: dict[str, Any]


@dataclass
class IdJagIssue:
    scope: Scope
    subject: str
    roles: list[str]
    id_claims: dict[str, Any]
    resource: str | None
    lifetime_s: int = ID_JAG_LIFETIME_S


class TokenExchangeGrant(Grant):
    grant_type = GRANT_TOKEN_EXCHANGE

    def validate(self, request: TokenRequest) -> AccessTokenExchange | IdJagIssue:
        subject_token = request.require(
            "subject_token", "Invalid request: no subject token provided"
        )
        subject_type = request.require("subject_token_type", "Invalid subject token type: none")
        requested = request.param("requested_token_type")
        if requested == TOKEN_TYPE_ID_JAG:
            if subject_type != TOKEN_TYPE_ID_TOKEN:
                # ID-JAG draft -04 §4.3: the subject token is an ID token (or SAML assertion).
                raise InvalidRequest(
                    f"an ID-JAG is issued only for subject_token_type {TOKEN_TYPE_ID_TOKEN}",
                    athenz_message=f"Invalid subject token type: {subject_type}",
                )
            return self._validate_id_jag(request, subject_token)
        if requested not in (None, TOKEN_TYPE_ACCESS_TOKEN):
            raise InvalidRequest(
                f"unsupported requested_token_type {requested}",
                athenz_message=f"Invalid requested token type: {requested}",
            )
        if subject_type != TOKEN_TYPE_ACCESS_TOKEN:
            raise InvalidRequest(
                f"unsupported subject_token_type {subject_type}",
                athenz_message=f"Invalid subject token type: {subject_type}",
            )
        return self._validate_access_token(request, subject_token)

    def issue(
        self, request: TokenRequest, validated: AccessTokenExchange | IdJagIssue
    ) -> GrantResult:
        if isinstance(validated, IdJagIssue):
            return self._issue_id_jag(request, validated)
        return self._issue_access_token(request, validated)

    # ------------------------------------------------------------------ AT → AT
    def _validate_access_token(
        self, request: TokenRequest, subject_token: str
    ) -> AccessTokenExchange:
        try:
            claims = verify_jwt(
                subject_token,
                self.pdp.key_resolver_self(),
                typ=TYP_ACCESS_TOKEN,
                issuer=self.pdp.issuer,
                required=("exp", "iat", "sub", "aud"),
                # The MCP server exchanges the same user token on every tool call.
                cache=self.pdp.verified,
            )
        except JwtValidationError as exc:
            raise invalid_subject(exc.reason) from None
        subject = str(claims["sub"])
        request.subject = subject
        source = self._source_domain(claims["aud"])
        audience = request.param("audience")
        scope_text = request.param("scope")
        if scope_text is None and audience is not None:
            # RFC 8693 §2.1: scope is optional. Default: every role of the audience domain the
            # subject token carries - the widest token an exchange may give (it only narrows).
            in_target = tuple(
                role
                for role in self._carried_roles(claims, source)
                if role.startswith(f"{audience.lower()}:role.")
            )
            if not in_target:
                raise InvalidScope(
                    f"the subject token carries no role of domain {audience}",
                    athenz_message="Invalid scope for token exchange",
                )
            scope = Scope(roles=in_target)
        else:
            scope = parse_scope(scope_text, default_domain=audience)
        if audience is not None and audience.lower() != scope.domain:
            raise InvalidScope(
                "scope domain must equal audience",
                athenz_message="Invalid scope for token exchange",
            )
        target = scope.domain
        request.resource = scope.text()
        resource = request.param("resource")
        if resource is not None:
            # RFC 8707 §2, RFC 8693 §2.2.2: this exchange issues a token for a domain (Athenz's
            # audience) and cannot audience-restrict it to a URL, so a resource is a target it
            # cannot serve: refused, never silently dropped (the token would not be the
            # resource's).
            raise InvalidTarget(
                f"resource {resource[:200]} cannot be the target of an access-token exchange: "
                f"it issues tokens for a domain (here {target}); leave resource out",
                athenz_message=f"Invalid resource: {resource[:200]}",
            )
        self.pdp.view(source)  # Athenz: 404 for an unknown source domain
        roles = granted_roles(self.pdp, subject, scope)  # 404 for an unknown target domain
        self._check_narrowing(claims, source, scope)
        if not roles:
            raise not_included(subject, target)
        # Athenz (impersonation): the caller may take tokens out of the source domain into the
        # target domain (resource <source>:<target>, a policy of the source domain) ...
        source_resource = f"{source}:{target}"
        decision = self.pdp.check_access(request.client, SOURCE_EXCHANGE, source_resource)
        if not decision.allowed:
            request.resource, request.action = source_resource, SOURCE_EXCHANGE
            raise UnauthorizedClient(
                f"{request.client} lacks {SOURCE_EXCHANGE} on {source_resource}: {decision.reason}",
                status=403,
                athenz_message=NOT_AUTHORIZED_SOURCE,
            )
        # ... and into each granted role (resource <target>:<source>:role.<role>, a policy of
        # the target domain).
        for role in roles:
            target_resource = f"{target}:{source}:role.{role.partition(':role.')[2]}"
            decision = self.pdp.check_access(request.client, TARGET_EXCHANGE, target_resource)
            if not decision.allowed:
                request.resource, request.action = target_resource, TARGET_EXCHANGE
                raise UnauthorizedClient(
                    f"{request.client} lacks {TARGET_EXCHANGE} on {target_resource}: "
                    f"{decision.reason}",
                    status=403,
                    athenz_message=NOT_AUTHORIZED_TARGET,
                )
        return AccessTokenExchange(scope=scope, source=source, roles=roles, subject_claims=claims)

    @staticmethod
    def _check_narrowing(claims: dict[str, Any], source: str, scope: Scope) -> None:
        """Athenz: an exchange may only narrow - every requested role must already be in the
        subject token's scope (short names there belong to the source domain)."""
        held = set(TokenExchangeGrant._carried_roles(claims, source))
        requested = set(scope.roles)
        if scope.all_domains or not requested <= held:
            missing = ", ".join(sorted(requested - held)) or f"{scope.domain}:domain"
            raise InvalidScope(
                f"the subject token does not carry {missing}; an exchange may only narrow",
                athenz_message="Invalid scope for token exchange",
            )

    @staticmethod
    def _carried_roles(claims: dict[str, Any], source: str) -> list[str]:
        """Full names of the roles a subject token carries; short names belong to its own
        domain (``source``), other domains' roles are written in full."""
        carried: list[str] = []
        for role in claims.get("scp") or str(claims.get("scope", "")).split():
            role = str(role).lower()
            full = role if ":role." in role else f"{source}:role.{role}"
            if full not in carried:
                carried.append(full)
        return carried

    def _source_domain(self, aud: Any) -> str:
        """The subject token's domain: its ``aud``, or the domain whose service registered the
        ``aud`` URL as providerEndpoint (tokens audienced to the MCP server: domain ``mcp``)."""
        audiences = aud if isinstance(aud, list) else [aud]
        for value in audiences:
            if isinstance(value, str) and DOMAIN_RE.fullmatch(value):
                return value
            if isinstance(value, str):
                service = self.pdp.store.service_by_endpoint(value)
                if service is not None:
                    return str(service["name"]).rsplit(".", 1)[0]
        raise invalid_subject(f"audience {aud!r} is not a known domain or registered resource")

    def _issue_access_token(
        self, request: TokenRequest, validated: AccessTokenExchange
    ) -> GrantResult:
        subject_claims = validated.subject_claims
        act: dict[str, Any] = {"sub": request.client}
        if isinstance(subject_claims.get("act"), dict):
            act["act"] = subject_claims["act"]  # RFC 8693 §4.1: prior actors nest inside
        elif subject_claims.get("client_id") and subject_claims.get(
            "client_id"
        ) != subject_claims.get("sub"):
            act["act"] = {"sub": subject_claims["client_id"]}
        token, claims = mint_access_token(
            self.pdp,
            subject=str(subject_claims["sub"]),
            client=request.client,
            audience=validated.scope.domain,
            domain=validated.scope.domain,
            roles=validated.roles,
            lifetime_s=self._remaining(request, subject_claims),
            act=act,
            uid=request.client,
        )
        request.jti = claims["jti"]
        request.reason = (
            f"{request.client} holds {SOURCE_EXCHANGE} and {TARGET_EXCHANGE}; "
            f"{claims['sub']} holds {', '.join(validated.roles)}"
        )
        body = bearer_response(token, claims, validated.roles)
        # RFC 8693 §2.2.1: issued_token_type is REQUIRED in a token-exchange response.
        body["issued_token_type"] = TOKEN_TYPE_ACCESS_TOKEN
        return GrantResult(body)

    @staticmethod
    def _remaining(request: TokenRequest, subject_claims: dict[str, Any]) -> int:
        """RFC 8693 §2.1: the issued token never outlives its subject token, and never the
        client's ``expires_in``. A subject token already past its ``exp`` (accepted within the
        clock-skew leeway) gives nothing."""
        left = int(subject_claims["exp"]) - now()
        if left <= 0:
            raise invalid_subject("subject token has expired")
        return min(lifetime(request), left)

    # ------------------------------------------------------------------ ID token → ID-JAG
    def _validate_id_jag(self, request: TokenRequest, id_token: str) -> IdJagIssue:
        # ID-JAG draft -04 §4.3: audience is REQUIRED - the issuer of the resource
        # authorization server that will redeem the ID-JAG (Athenz words the refusal so).
        audience = request.require("audience", "Invalid request: no audience provided")
        try:
            issuer = unverified_claims(id_token).get("iss")
        except JwtValidationError as exc:
            raise invalid_subject(exc.reason) from None
        provider = self.pdp.providers.get(issuer) if isinstance(issuer, str) else None
        if provider is None:
            raise InvalidGrant(
                f"issuer {issuer} is not a trusted identity provider",
                athenz_message=(
                    f"Invalid subject token: issuer {issuer} is not a trusted identity provider"
                ),
            )
        try:
            claims = verify_jwt(
                id_token,
                provider.jwks,
                typ=(TYP_JWT, None),
                issuer=provider.issuer,
                required=("exp", "iat", "iss", "sub", "aud"),
                # An agent asks one ID-JAG per resource with the same ID token.
                cache=self.pdp.verified,
            )
        except JwtValidationError as exc:
            raise invalid_subject(exc.reason) from None
        # Athenz: the ID token must have been issued to the client asking for the ID-JAG.
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if request.client not in [str(a).lower() for a in audiences]:
            raise InvalidGrant(
                f"ID token audience {claims['aud']!r} is not the authenticated client "
                f"{request.client}",
                athenz_message="Invalid subject token audience",
            )
        if audience.rstrip("/") not in (self.pdp.issuer, self.pdp.token_endpoint):
            # ID-JAG draft -04 §4.3: audience is the issuer of the resource authorization server.
            raise InvalidTarget(
                f"audience must be this authorization server ({self.pdp.issuer})",
                athenz_message=f"Invalid audience: {audience}",
            )
        subject = provider.principal_for(claims)
        if subject is None:
            raise InvalidGrant(
                "ID token maps to no principal",
                athenz_message="Invalid subject token - missing subject",
            )
        request.subject = subject
        resource = request.param("resource")
        if resource is not None:
            # The MCP extension: resource, if sent, is the resource server's RFC 9728 resource;
            # the lab accepts only a registered one (RFC 8707 §2 invalid_target otherwise).
            resource = registered_resource(self.pdp, resource)[1]
        # One ID-JAG may carry roles of several domains (the tutorial asks for
        # api:role.docs-getter and mcp:role.mcp-accessor together).
        scope_text = request.param("scope")
        if scope_text is None and resource is not None:
            scope = self._default_id_jag_scope(request, resource)
        else:
            scope = parse_scope(scope_text, multi_domain=True)
        request.resource = scope.text()
        # D:domain is spelled out as the roles the user holds, so zts.jag_exchange is checked
        # on every role the ID-JAG will carry, exactly as for roles named one by one.
        scope = explicit_scope(self.pdp, subject, scope)
        if not scope.roles:
            raise InvalidScope(
                "scope names no roles", athenz_message="Scope value does not contain any roles"
            )
        request.resource = scope.text()
        roles = granted_roles(self.pdp, subject, scope)
        if not roles:
            raise not_included(subject, scope.domain)
        # Athenz checks zts.jag_exchange for every requested role, not only the granted ones.
        require_jag_exchange(self.pdp, request, scope)
        return IdJagIssue(
            scope=scope,
            subject=subject,
            roles=roles,
            id_claims=claims,
            resource=resource,
            # expires_in may shorten an ID-JAG, never lengthen it past the short default.
            lifetime_s=lifetime(request, cap=ID_JAG_LIFETIME_S),
        )

    def _default_id_jag_scope(self, request: TokenRequest, resource: str) -> Scope:
        """Draft -04 §4.3: scope is optional. Without one, the ID-JAG is for the roles the
        resource needs (:mod:`lab.pdp.zts.grants.resource_scope`) that this client may carry
        for users (``zts.jag_exchange``); the user's membership then decides as usual."""
        needed = roles_for_resource(self.pdp, resource)
        carried = tuple(
            role
            for role in needed
            if self.pdp.check_access(request.client, JAG_EXCHANGE, role).allowed
        )
        if not carried:
            request.resource, request.action = " ".join(needed) or resource, JAG_EXCHANGE
            raise UnauthorizedClient(
                f"{request.client} may carry none of the roles {resource} needs "
                f"({', '.join(needed) or 'none found in policy'})",
                status=403,
                athenz_message=NOT_AUTHORIZED_TARGET,
            )
        return Scope(roles=carried)

    def _issue_id_jag(self, request: TokenRequest, validated: IdJagIssue) -> GrantResult:
        issued = now()
        scope_text = " ".join(validated.roles)
        claims: dict[str, Any] = {
            "iss": self.pdp.issuer,
            "sub": validated.subject,
            "aud": self.pdp.issuer,
            "client_id": request.client,
            "jti": new_jti(),
            "iat": issued,
            "exp": issued + validated.lifetime_s,
            "auth_time": validated.id_claims.get("auth_time", validated.id_claims["iat"]),
            "scope": scope_text,
        }
        if validated.resource is not None:
            claims["resource"] = validated.resource
        token = self.pdp.signing_key.sign(claims, typ=TYP_ID_JAG)
        request.jti = claims["jti"]
        request.action = "id-jag"
        request.reason = (
            f"{request.client} holds {JAG_EXCHANGE}; {validated.subject} holds {scope_text}"
        )
        # ID-JAG draft -04 §4.3.4: the response shape of an ID-JAG issuance.
        return GrantResult(
            {
                "issued_token_type": TOKEN_TYPE_ID_JAG,
                "access_token": token,
                "token_type": "N_A",
                "expires_in": validated.lifetime_s,
                "scope": scope_text,
            }
        )


def require_jag_exchange(pdp: Pdp, request: TokenRequest, scope: Scope) -> None:
    """Refuse unless the authenticated client holds ``zts.jag_exchange`` on every role of
    ``scope``: the one check an ID-JAG's roles pass, at issuance and for external ID-JAGs."""
    for role in scope.roles:
        decision = pdp.check_access(request.client, JAG_EXCHANGE, role)
        if not decision.allowed:
            request.resource, request.action = role, JAG_EXCHANGE
            raise UnauthorizedClient(
                f"{request.client} lacks {JAG_EXCHANGE} on {role}: {decision.reason}",
                status=403,
                athenz_message=NOT_AUTHORIZED_TARGET,
            )
