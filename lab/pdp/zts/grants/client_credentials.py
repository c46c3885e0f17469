"""RFC 6749 §4.4 client credentials: a principal's own access token for roles it holds."""

from __future__ import annotations

from lab.oauth.tokens import GRANT_CLIENT_CREDENTIALS
from lab.pdp.zts.grants.base import (
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
)


class ClientCredentialsGrant(Grant):
    grant_type = GRANT_CLIENT_CREDENTIALS

    def validate(self, request: TokenRequest) -> tuple[Scope, list[str]]:
        scope = parse_scope(request.param("scope"))
        request.subject = request.client
        request.resource = " ".join(scope.full(r) for r in scope.roles) or f"{scope.domain}:domain"
        roles = granted_roles(self.pdp, request.client, scope)  # 404 No such domain first
        if not roles:
            raise not_included(request.client, scope.domain)
        return scope, roles

    def issue(self, request: TokenRequest, validated: tuple[Scope, list[str]]) -> GrantResult:
        scope, roles = validated
        token, claims = mint_access_token(
            self.pdp,
            subject=request.client,
            client=request.client,
            audience=scope.domain,  # Athenz: aud is the scope's domain
            roles=roles,
            lifetime_s=lifetime(request),
        )
        request.jti = claims["jti"]
        request.reason = f"principal holds {', '.join(scope.full(r) for r in roles)}"
        return GrantResult(bearer_response(token, claims, scope.domain))
