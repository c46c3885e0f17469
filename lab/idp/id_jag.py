"""The IdP issues ID-JAGs: RFC 8693 token exchange of an ID token for an Identity Assertion JWT
Authorization Grant (draft-ietf-oauth-identity-assertion-authz-grant-04 §4.3), as Keycloak's
experimental ``identity-assertion-jwt`` feature does it.

This is the draft's canonical topology (-04 §9.3): the enterprise IdP, which authenticated the
user, issues the grant; a resource authorization server in another trust domain (the PDP)
redeems it. Keycloak's rules, which the lab follows:

- confidential clients only: a public client cannot delegate the user's identity;
- the client must have ``id.jag.issuance.enabled`` = ``true``;
- the ``subject_token`` is an ID token issued by this realm *to the requesting client* (§4.3:
  the IdP MUST check its ``aud``), still active (its session alive, the user enabled);
- ``audience`` is REQUIRED and must be in the client's ``id.jag.allowed.audiences`` (``##``
  separated; empty = deny all); it becomes ``aud``;
- ``resource``, if sent, must be a resource registered for that audience (MCP
  enterprise-managed authorization: the IdP MUST reject mismatched audience/resource pairs).
  Keycloak has no such attribute; the lab reads ``lab.id.jag.audience.resources``: ``##``
  separated ``<audience> <resource>`` pairs (Keycloak ignores it);
- ``scope`` within ``id.jag.allowed.scopes`` when that is set;
- 300 s lifetime, no refresh token; ``client_id`` is ``id.jag.client.id`` (the client's id *at
  the resource authorization server*) or the client's own id.

Attribute values may hold Keycloak import placeholders, ``${NAME}`` or ``${NAME:default}``
(Keycloak resolves them from the environment when it imports the realm; the embedded IdP from
the lab's endpoints, then the environment), so one realm file serves any port layout.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from lab.idp.realm import Client, Realm
from lab.idp.tokens import Subject, TokenIssuer
from lab.oauth.errors import (
    InvalidClient,
    InvalidRequest,
    InvalidScope,
    InvalidTarget,
    UnauthorizedClient,
)
from lab.oauth.jose import JwtValidationError, SigningKey, now
from lab.oauth.scopes import ScopeSyntaxError, keycloak_scope_values
from lab.oauth.tokens import (
    KEYCLOAK_TYP_ID,
    TOKEN_TYPE_ID_JAG,
    TOKEN_TYPE_ID_TOKEN,
    TYP_ID_JAG,
)

log = logging.getLogger("lab.idp")

#: -04 §4.3.4's example and Keycloak: ID-JAGs live 300 s.
ID_JAG_LIFETIME_S = 300

ATTR_ENABLED = "id.jag.issuance.enabled"
ATTR_AUDIENCES = "id.jag.allowed.audiences"
ATTR_CLIENT_ID = "id.jag.client.id"
ATTR_SCOPES = "id.jag.allowed.scopes"
#: Lab addition (Keycloak ignores unknown attributes): which resources belong to which audience.
ATTR_RESOURCES = "lab.id.jag.audience.resources"

_PLACEHOLDER = re.compile(r"\$\{([^}:]+)(?::([^}]*))?\}")

SubjectLookup = Callable[[dict[str, Any]], Subject | None]


def resolve_placeholders(value: str, known: Mapping[str, str]) -> str:
    """Keycloak's import placeholders: ``${NAME}`` or ``${NAME:default}`` (first ``:`` splits)."""

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        resolved = known.get(name) or os.environ.get(name)
        if resolved:
            return resolved
        return default if default is not None else match.group(0)

    return _PLACEHOLDER.sub(replace, value)


def _split(value: str | None) -> list[str]:
    """Keycloak's multi-valued client attributes are ``##`` separated."""
    return [item.strip() for item in (value or "").split("##") if item.strip()]


def _as_configured(value: str, configured: Iterable[str]) -> str | None:
    """The configured URL ``value`` names (compared as :func:`_same_url` does), or None."""
    return next((url for url in configured if _same_url(value, url)), None)


def _same_url(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


class IdJagIssuer:
    """Token exchange ``requested_token_type=…:id-jag`` at the IdP's token endpoint."""

    def __init__(
        self,
        realm: Realm,
        tokens: TokenIssuer,
        key: SigningKey,
        subject_of: SubjectLookup,
        placeholders: Mapping[str, str] | None = None,
    ) -> None:
        self.realm = realm
        self.tokens = tokens
        self.key = key
        self.subject_of = subject_of
        self.placeholders = dict(placeholders or {})

    # -- client configuration ------------------------------------------------------------------

    def attribute(self, client: Client, name: str) -> str | None:
        value = client.attribute(name)
        return resolve_placeholders(value, self.placeholders) if value is not None else None

    def allowed_audiences(self, client: Client) -> list[str]:
        return _split(self.attribute(client, ATTR_AUDIENCES))

    def resources_for(self, client: Client, audience: str) -> list[str]:
        pairs = (item.split() for item in _split(self.attribute(client, ATTR_RESOURCES)))
        return [pair[1] for pair in pairs if len(pair) == 2 and _same_url(pair[0], audience)]

    # -- the exchange --------------------------------------------------------------------------

    def exchange(self, client: Client, form: dict[str, str]) -> dict[str, Any]:
        def param(name: str) -> str | None:
            return form.get(name) or None

        requested = param("requested_token_type")
        if requested != TOKEN_TYPE_ID_JAG:
            # The embedded IdP implements only the ID-JAG profile of RFC 8693.
            raise InvalidRequest(
                f"requested_token_type {requested or '(none)'} is not supported; "
                f"this IdP exchanges ID tokens for {TOKEN_TYPE_ID_JAG}"
            )
        if client.public_client:
            # An ID-JAG delegates the user's identity to another trust domain: the client
            # must prove who it is (Keycloak: confidential clients only).
            raise InvalidClient("Public client is not allowed to exchange token", status=400)
        if (self.attribute(client, ATTR_ENABLED) or "").lower() != "true":
            raise UnauthorizedClient(f"Client not allowed to issue ID-JAG ({ATTR_ENABLED})")
        subject_token = param("subject_token")
        if subject_token is None:
            raise InvalidRequest("Missing parameter: subject_token")
        subject_type = param("subject_token_type")
        if subject_type != TOKEN_TYPE_ID_TOKEN:
            # -04 §4.3.1: the subject token is the ID token (the lab has no SAML).
            raise InvalidRequest(
                f"subject_token_type must be {TOKEN_TYPE_ID_TOKEN}, not {subject_type or '(none)'}"
            )
        # RFC 8693 §2.2.2: an invalid or unacceptable subject_token is invalid_request.
        try:
            id_claims = self.tokens.verify(subject_token, KEYCLOAK_TYP_ID)
        except JwtValidationError as exc:
            raise InvalidRequest(f"Invalid subject token: {exc.reason}") from None
        audiences = id_claims.get("aud")
        audiences = audiences if isinstance(audiences, list) else [audiences]
        if client.client_id not in audiences or id_claims.get("azp", client.client_id) != (
            client.client_id
        ):
            # -04 §4.3: the ID token must have been issued to the client asking.
            raise InvalidRequest("Invalid subject token: it was not issued to this client")
        subject = self.subject_of(id_claims)
        if subject is None or subject.user is None:
            raise InvalidRequest("Invalid subject token: the user session is not active")
        audience = param("audience")
        if audience is None:
            raise InvalidRequest("Missing parameter: audience")  # -04 §4.3.1: REQUIRED
        configured = _as_configured(audience, self.allowed_audiences(client))
        if configured is None:
            raise InvalidTarget(
                f"Audience {audience} is not allowed for client {client.client_id} "
                f"({ATTR_AUDIENCES})"
            )
        # The token names the audience and resource as configured, not as the request spelled
        # them ("…/zts/v1/" matches "…/zts/v1"): its verifier compares aud exactly (RFC 7519
        # §4.1.3), and one resource must not reach it under two names.
        audience = configured
        resource = param("resource")
        if resource is not None:
            known = _as_configured(resource, self.resources_for(client, audience))
            if known is None:
                raise InvalidTarget(f"Resource {resource} is not a resource of audience {audience}")
            resource = known
        scope = param("scope")
        if scope is not None:
            # The ID-JAG carries the scope as text its redeemer splits again: RFC 6749 §3.3's
            # grammar only (a NUL, a line break, NBSP or the Kelvin sign never reaches a
            # signed token), read as the IdP's other grants read it (Keycloak's reading).
            try:
                scope = " ".join(keycloak_scope_values(scope)) or None
            except ScopeSyntaxError as odd:
                raise InvalidScope(f"Invalid scopes: {odd.value[:200]}") from None
        allowed_scopes = _split(self.attribute(client, ATTR_SCOPES))
        if scope is not None and allowed_scopes:
            outside = sorted(set(scope.split(" ")) - set(allowed_scopes))
            if outside:
                raise InvalidScope(f"Invalid scopes: {' '.join(outside)}")
        claims = self._claims(client, subject, id_claims, audience, resource, scope)
        token = self.key.sign(claims, typ=TYP_ID_JAG)
        log.info(
            "issued ID-JAG %s to %s for %s, audience %s",
            claims["jti"],
            client.client_id,
            subject.username,
            audience,
        )
        # -04 §4.3.4: the response; no refresh token.
        body: dict[str, Any] = {
            "access_token": token,
            "issued_token_type": TOKEN_TYPE_ID_JAG,
            "token_type": "N_A",
            "expires_in": ID_JAG_LIFETIME_S,
        }
        if scope is not None:
            body["scope"] = scope
        return body

    def _claims(
        self,
        client: Client,
        subject: Subject,
        id_claims: dict[str, Any],
        audience: str,
        resource: str | None,
        scope: str | None,
    ) -> dict[str, Any]:
        """-04 §3.1: iss, sub, aud, client_id, jti, exp, iat required; the rest optional."""
        issued = now()
        claims: dict[str, Any] = {
            "jti": str(uuid.uuid4()),
            "iss": self.tokens.issuer,
            "sub": subject.id,
            "aud": audience,
            "client_id": self.attribute(client, ATTR_CLIENT_ID) or client.client_id,
            "iat": issued,
            "exp": issued + ID_JAG_LIFETIME_S,
        }
        if id_claims.get("auth_time") is not None:
            claims["auth_time"] = id_claims["auth_time"]
        if resource is not None:
            claims["resource"] = resource
        if scope is not None:
            claims["scope"] = scope
        user = subject.user
        if user is not None and user.email:
            claims["email"] = user.email  # -04 §3.1: email and/or aud_sub RECOMMENDED
        # Lab addition: the username, so the resource authorization server maps the user with
        # the same principal template it applies to this realm's ID tokens.
        claims["preferred_username"] = subject.username
        return claims
