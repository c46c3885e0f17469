"""Tokens shaped as Keycloak 26 issues them: ID, access (``Bearer``) and refresh tokens.

ID and access tokens are RS256 JWTs with ``kid`` in the header. Refresh tokens are HS512,
as Keycloak signs them with the realm's generated HMAC key: only the IdP ever checks them
(clients treat them as opaque), and an HMAC costs ~20 µs where an RS256 signature costs
~250 µs (a third of a sign-in's crypto). The HMAC key lives as long as the process, as do
the sessions a refresh token belongs to (:class:`lab.idp.store.IdpStore` keeps them in
memory).

Which claims appear follows Keycloak's default client scopes: ``profile`` adds the name
claims, ``email`` the email claims, ``roles`` the role claims and ``aud: account``, ``acr``
the ``acr`` claim.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from lab.idp.realm import Client, Realm, User
from lab.oauth.errors import InvalidScope
from lab.oauth.jose import (
    JwtValidationError,
    SigningKey,
    b64url,
    now,
    sign_hmac_jwt,
    static_key_resolver,
    verify_hmac_jwt,
    verify_jwt,
)
from lab.oauth.scopes import ScopeSyntaxError, keycloak_scope_values, scope_values
from lab.oauth.tokens import KEYCLOAK_TYP_BEARER, KEYCLOAK_TYP_ID, KEYCLOAK_TYP_REFRESH, TYP_JWT

log = logging.getLogger("lab.idp")

#: Client scopes whose name Keycloak writes into the token's ``scope`` ("include.in.token.scope").
_SCOPES_IN_TOKEN = frozenset(
    {"profile", "email", "address", "phone", "offline_access", "microprofile-jwt", "organization"}
)

#: What Keycloak's built-in ``default-roles-<realm>`` composite expands to.
_DEFAULT_REALM_ROLES = ("offline_access", "uma_authorization")
_DEFAULT_ACCOUNT_ROLES = ("manage-account", "manage-account-links", "view-profile")


#: Claim shapes kept (:meth:`TokenIssuer._claims`): a realm's users × clients × scope sets in
#: use stay far below it; past it the shapes are built again, not kept without bound.
_MAX_SHAPES = 1024


@dataclass(frozen=True)
class Subject:
    """Who a token is about: a realm user, or a client's service account."""

    id: str
    username: str
    user: User | None

    @classmethod
    def of_user(cls, user: User) -> Subject:
        return cls(user.id, user.username, user)

    @classmethod
    def service_account(cls, client: Client) -> Subject:
        return cls(client.service_account_id, f"service-account-{client.client_id}", None)


@dataclass(frozen=True)
class Grant:
    """Everything a token response is built from."""

    subject: Subject
    client: Client
    scopes: frozenset[str]
    sid: str | None
    auth_time: int | None
    nonce: str | None = None
    acr: str = "1"
    refresh: bool = True
    session_expires_in: int = 0


def resolve_scopes(
    client: Client, requested: str | None, *, as_sent: bool = True
) -> frozenset[str]:
    """The client scopes in effect: all defaults plus requested optional ones.

    Keycloak refuses a scope the client has neither as default nor optional
    (``invalid_scope`` "Invalid scopes: ..."); ``openid`` is a protocol marker, always allowed.
    ``requested`` as a client sent it (None: not sent) is read as Keycloak reads it, where an
    empty value is an unknown scope; ``as_sent=False`` for scope text the IdP wrote itself
    (a token's claim, a stored authorization request, "" when none was asked).
    """
    try:
        # RFC 6749 §3.3, split on spaces only, as Keycloak reads it (lab.oauth.scopes).
        read = keycloak_scope_values if as_sent and requested is not None else scope_values
        asked = set(read(requested or ""))
    except ScopeSyntaxError:
        raise InvalidScope(f"Invalid scopes: {(requested or '')[:200]}") from None
    allowed = set(client.default_scopes) | set(client.optional_scopes) | {"openid"}
    unknown = sorted(asked - allowed)
    if unknown:
        raise InvalidScope(f"Invalid scopes: {' '.join(sorted(asked))}")
    return frozenset(set(client.default_scopes) | asked)


def scope_string(scopes: frozenset[str]) -> str:
    shown = [s for s in scopes if s in _SCOPES_IN_TOKEN]
    return " ".join((["openid"] if "openid" in scopes else []) + sorted(shown))


class TokenIssuer:
    def __init__(self, realm: Realm, issuer: str, key: SigningKey) -> None:
        self.realm = realm
        self.issuer = issuer
        self.key = key
        self._resolve = static_key_resolver({key.kid: key.key.public_key()})
        # Keycloak's "hmac-generated-hs512" key: random per process, as sessions are.
        self._refresh_key = secrets.token_bytes(64)
        self._refresh_kid = str(uuid.uuid4())
        #: Claim shapes by (type, subject, client, scopes, acr, which of auth_time/nonce/sid).
        self._shapes: dict[tuple[Any, ...], dict[str, Any]] = {}

    # -- issuing ------------------------------------------------------------------------------

    def token_response(self, grant: Grant) -> dict[str, Any]:
        """The token endpoint's JSON body (RFC 6749 §5.1 plus Keycloak's extra members)."""
        access_token = self._sign(self.access_claims(grant))
        body: dict[str, Any] = {
            "access_token": access_token,
            "expires_in": self.realm.access_token_lifespan,
            "refresh_expires_in": grant.session_expires_in if grant.refresh else 0,
            "token_type": "Bearer",
        }
        if grant.refresh:
            body["refresh_token"] = sign_hmac_jwt(
                self.refresh_claims(grant), self._refresh_key, self._refresh_kid, TYP_JWT
            )
        if "openid" in grant.scopes:
            body["id_token"] = self._sign(self.id_claims(grant, access_token))
        body["not-before-policy"] = 0
        if grant.sid:
            body["session_state"] = grant.sid
        body["scope"] = scope_string(grant.scopes)
        return body

    def access_claims(self, grant: Grant) -> dict[str, Any]:
        lifespan = self.realm.access_token_lifespan
        return self._claims(grant, KEYCLOAK_TYP_BEARER, lifespan, self._access_shape)

    def id_claims(self, grant: Grant, access_token: str) -> dict[str, Any]:
        lifespan = self.realm.access_token_lifespan
        claims = self._claims(grant, KEYCLOAK_TYP_ID, lifespan, self._id_shape)
        # OIDC Core §3.1.3.6: at_hash = base64url(left half of SHA-256(access_token)).
        claims["at_hash"] = b64url(hashlib.sha256(access_token.encode("ascii")).digest()[:16])
        return claims

    def refresh_claims(self, grant: Grant) -> dict[str, Any]:
        lifespan = max(grant.session_expires_in, 1)
        return self._claims(grant, KEYCLOAK_TYP_REFRESH, lifespan, self._refresh_shape)

    def _claims(
        self, grant: Grant, typ: str, lifespan: int, shape: Callable[[Grant], dict[str, Any]]
    ) -> dict[str, Any]:
        """A token's claims: its shape for this kind of grant, with this token's own values.

        Everything but the times, the jti, auth_time, nonce and sid follows from the token type,
        the subject, the client, the scopes and the acr, and the realm never changes in a running
        IdP: the shape (names in Keycloak's order, the fixed values) is built once per such
        combination and copied (a nested value is shared between tokens: read, never changed).
        Which of auth_time, nonce and sid appear is part of the key too, so the copy only ever
        overwrites names the shape has, and keeps their order."""
        key = (
            typ,
            grant.subject,
            grant.client.client_id,
            grant.scopes,
            grant.acr,
            grant.auth_time is not None,
            bool(grant.nonce),
            bool(grant.sid),
        )
        template = self._shapes.get(key)
        if template is None:
            if len(self._shapes) >= _MAX_SHAPES:
                self._shapes.clear()
            template = self._shapes[key] = shape(grant)
        claims = template.copy()
        issued = now()
        claims["exp"] = issued + lifespan
        claims["iat"] = issued
        claims["jti"] = str(uuid.uuid4())
        if "auth_time" in claims:
            claims["auth_time"] = grant.auth_time
        if "nonce" in claims:
            claims["nonce"] = grant.nonce
        if "sid" in claims:
            claims["sid"] = grant.sid
        return claims

    # The shapes: every claim of a token of this kind, in Keycloak's order. The per-token values
    # (:meth:`_claims`) are placeholders here.

    def _base(self, grant: Grant, typ: str) -> dict[str, Any]:
        claims: dict[str, Any] = {
            "exp": 0,
            "iat": 0,
            "jti": "",
            "iss": self.issuer,
            "sub": grant.subject.id,
            "typ": typ,
            "azp": grant.client.client_id,
        }
        if grant.auth_time is not None and typ != KEYCLOAK_TYP_REFRESH:
            claims["auth_time"] = grant.auth_time
        if grant.nonce and typ != KEYCLOAK_TYP_BEARER:
            claims["nonce"] = grant.nonce
        if grant.sid:
            claims["sid"] = grant.sid
        return claims

    def _access_shape(self, grant: Grant) -> dict[str, Any]:
        claims = self._base(grant, KEYCLOAK_TYP_BEARER)
        if "acr" in grant.scopes:
            claims["acr"] = grant.acr
        if "web-origins" in grant.scopes and grant.client.web_origins:
            claims["allowed-origins"] = allowed_origins(grant.client)
        if "roles" in grant.scopes:
            claims.update(self._role_claims(grant.subject))
        claims["scope"] = scope_string(grant.scopes)
        if grant.subject.user is None:
            # Keycloak's service-account mappers (client_credentials).
            claims["client_id"] = grant.client.client_id
        claims.update(self.identity_claims(grant.subject, grant.scopes))
        return _keycloak_order(claims)

    def _id_shape(self, grant: Grant) -> dict[str, Any]:
        claims = self._base(grant, KEYCLOAK_TYP_ID)
        claims["aud"] = grant.client.client_id
        claims["at_hash"] = ""
        if "acr" in grant.scopes:
            claims["acr"] = grant.acr
        claims.update(self.identity_claims(grant.subject, grant.scopes))
        return _keycloak_order(claims)

    def _refresh_shape(self, grant: Grant) -> dict[str, Any]:
        claims = self._base(grant, KEYCLOAK_TYP_REFRESH)
        claims["aud"] = self.issuer
        claims["scope"] = scope_string(grant.scopes)
        return _keycloak_order(claims)

    def identity_claims(self, subject: Subject, scopes: frozenset[str]) -> dict[str, Any]:
        """Claims of the ``profile`` and ``email`` scopes (also the userinfo response)."""
        claims: dict[str, Any] = {}
        user = subject.user
        if "email" in scopes and user is not None:
            claims["email_verified"] = user.email_verified
        if "profile" in scopes:
            if user is not None and user.name:
                claims["name"] = user.name
            claims["preferred_username"] = subject.username
            if user is not None and user.first_name:
                claims["given_name"] = user.first_name
            if user is not None and user.last_name:
                claims["family_name"] = user.last_name
        if "email" in scopes and user is not None and user.email:
            claims["email"] = user.email
        return claims

    def _role_claims(self, subject: Subject) -> dict[str, Any]:
        realm_roles = (
            list(subject.user.realm_roles) if subject.user else [f"default-roles-{self.realm.name}"]
        )
        default_role = f"default-roles-{self.realm.name}"
        expanded = list(
            dict.fromkeys(
                realm_roles + (list(_DEFAULT_REALM_ROLES) if default_role in realm_roles else [])
            )
        )
        claims: dict[str, Any] = {"realm_access": {"roles": expanded}}
        if default_role in realm_roles:
            # The account console's roles come with the default role; they are why Keycloak
            # access tokens carry aud "account".
            claims["aud"] = "account"
            claims["resource_access"] = {"account": {"roles": list(_DEFAULT_ACCOUNT_ROLES)}}
        return claims

    def _sign(self, claims: dict[str, Any]) -> str:
        return self.key.sign(claims, typ=TYP_JWT)

    # -- checking tokens this IdP issued -------------------------------------------------------

    def verify(self, token: str, typ: str) -> dict[str, Any]:
        """Signature, issuer, expiry and the Keycloak ``typ`` claim; raises JwtValidationError.

        A refresh token is checked against the HMAC key only, every other type against the
        RSA key only: neither kind passes as the other."""
        required = ("exp", "iat", "sub")
        if typ == KEYCLOAK_TYP_REFRESH:
            claims = verify_hmac_jwt(
                token, self._refresh_key, self._refresh_kid, issuer=self.issuer, required=required
            )
        else:
            claims = verify_jwt(token, self._resolve, issuer=self.issuer, required=required)
        if claims.get("typ") != typ:
            raise JwtValidationError(f"token type {claims.get('typ')!r} is not {typ!r}")
        return claims


def allowed_origins(client: Client) -> list[str]:
    """Keycloak's ``webOrigins``: ``+`` stands for the origins of the redirect URIs."""
    origins: list[str] = []
    for entry in client.web_origins:
        if entry == "+":
            for uri in client.redirect_uris:
                parts = urlsplit(uri.rstrip("*"))
                if parts.scheme and parts.netloc:
                    origins.append(f"{parts.scheme}://{parts.netloc}")
        else:
            origins.append(entry)
    return list(dict.fromkeys(origins))


_ORDER = (
    "exp",
    "iat",
    "auth_time",
    "jti",
    "iss",
    "aud",
    "sub",
    "typ",
    "azp",
    "nonce",
    "sid",
    "at_hash",
    "acr",
    "allowed-origins",
    "realm_access",
    "resource_access",
    "scope",
)


def _keycloak_order(claims: dict[str, Any]) -> dict[str, Any]:
    """Claims in the order Keycloak writes them, so a decoded token reads like the real thing."""
    ordered = {k: claims[k] for k in _ORDER if k in claims}
    ordered.update({k: v for k, v in claims.items() if k not in ordered})
    return ordered
