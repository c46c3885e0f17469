"""RFC 6749 §4.4 client credentials: a principal's own access token for roles it holds.

Without ``resource`` the token is Athenz's: one domain per scope, ``aud`` = that domain. With an
RFC 8707 ``resource`` (a registered resource such as the MCP server's URL) the token's ``aud`` is
that URL and the scope may name roles of several domains - how a principal fetches a token for
the MCP server, whose domain ``mcp`` differs from the document API's ``api`` (step 6).
"""

from __future__ import annotations

from dataclasses import dataclass

from lab.oauth.errors import InvalidTarget
from lab.oauth.tokens import GRANT_CLIENT_CREDENTIALS
from lab.pdp.zts.grants.base import (
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


@dataclass
class ClientCredentials:
    scope: Scope
    roles: list[str]
    audience: str
    domain: str


class ClientCredentialsGrant(Grant):
    grant_type = GRANT_CLIENT_CREDENTIALS

    def validate(self, request: TokenRequest) -> ClientCredentials:
        resource = request.param("resource")
        scope_text = request.param("scope")
        request.subject = request.client
        if resource is not None:
            domain, audience = registered_resource(self.pdp, resource)
            if scope_text is None:
                # RFC 6749 §4.4.2: scope is optional. Default: the roles the resource needs
                # (lab.pdp.zts.grants.resource_scope); the principal gets those it holds.
                needed = roles_for_resource(self.pdp, resource)
                if not needed:
                    raise not_included(request.client, domain)
                scope = Scope(roles=tuple(needed))
            else:
                scope = parse_scope(scope_text, multi_domain=True)
        else:
            scope = parse_scope(scope_text)
            domain = audience = scope.domain  # Athenz: aud is the scope's domain
        request.resource = scope.text()
        # D:domain becomes the roles held now (404 No such domain first), each checked alike.
        scope = explicit_scope(self.pdp, request.client, scope)
        sent_audience = request.param("audience")
        if sent_audience is not None and sent_audience.rstrip("/") != audience.rstrip("/"):
            # Client credentials take no RFC 8693 audience; the token's audience comes from the
            # scope's domain or the RFC 8707 resource, and nothing else may choose it.
            raise InvalidTarget(
                f"audience {sent_audience} is not this token's audience ({audience}); "
                "name a registered resource with resource= instead",
                athenz_message=f"Invalid audience: {sent_audience}",
            )
        roles = granted_roles(self.pdp, request.client, scope)  # 404 No such domain first
        if not roles:
            raise not_included(request.client, scope.domain)
        return ClientCredentials(scope=scope, roles=roles, audience=audience, domain=domain)

    def issue(self, request: TokenRequest, validated: ClientCredentials) -> GrantResult:
        token, claims = mint_access_token(
            self.pdp,
            subject=request.client,
            client=request.client,
            audience=validated.audience,
            domain=validated.domain,
            roles=validated.roles,
            lifetime_s=lifetime(request),
        )
        request.jti = claims["jti"]
        request.reason = f"principal holds {', '.join(validated.roles)}"
        return GrantResult(bearer_response(token, claims, validated.roles))
