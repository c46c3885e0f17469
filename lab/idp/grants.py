"""The token endpoint's grants, one function each, with Keycloak's refusals.

Each grant checks in the order Keycloak does: is the client allowed this grant, are the
parameters there, is the grant valid. Every refusal is an :mod:`lab.oauth.errors` exception
(4xx); nothing here builds a response.
"""

from __future__ import annotations

import hmac
import logging
import time
from typing import Any

from lab.idp import pkce
from lab.idp.bruteforce import BruteForceDetector
from lab.idp.realm import Client, User
from lab.idp.store import IdpStore, UserSession
from lab.idp.tokens import Grant, Subject, TokenIssuer, resolve_scopes
from lab.oauth.errors import (
    InvalidGrant,
    InvalidRequest,
    InvalidScope,
    UnauthorizedClient,
    UnsupportedGrantType,
)
from lab.oauth.jose import JwtValidationError
from lab.oauth.tokens import (
    GRANT_AUTHORIZATION_CODE,
    GRANT_CLIENT_CREDENTIALS,
    GRANT_PASSWORD,
    GRANT_REFRESH_TOKEN,
    KEYCLOAK_TYP_REFRESH,
)

log = logging.getLogger("lab.idp")

INVALID_USER_CREDENTIALS = "Invalid user credentials"


def param(form: dict[str, str], name: str) -> str | None:
    """A form parameter, with "" treated as absent (python-keycloak sends empty fields)."""
    value = form.get(name)
    return value if value else None


def check_password(user: User | None, password: str | None) -> User | None:
    """The user if the password is right; compares in constant time."""
    if user is None or user.password is None or password is None:
        return None
    if hmac.compare_digest(user.password.encode("utf-8"), password.encode("utf-8")):
        return user
    return None


class Grants:
    def __init__(self, issuer: TokenIssuer, store: IdpStore) -> None:
        self.issuer = issuer
        self.store = store
        self.realm = issuer.realm
        self.brute_force = BruteForceDetector(self.realm.brute_force)

    def run(self, grant_type: str, client: Client, form: dict[str, str]) -> dict[str, Any]:
        handlers = {
            GRANT_AUTHORIZATION_CODE: self.authorization_code,
            GRANT_PASSWORD: self.password,
            GRANT_REFRESH_TOKEN: self.refresh_token,
            GRANT_CLIENT_CREDENTIALS: self.client_credentials,
        }
        handler = handlers.get(grant_type)
        if handler is None:
            raise UnsupportedGrantType("Unsupported grant_type")
        return handler(client, form)

    # -- authorization_code (RFC 6749 §4.1.3, RFC 7636 §4.5) ----------------------------------

    def authorization_code(self, client: Client, form: dict[str, str]) -> dict[str, Any]:
        if not client.standard_flow:
            raise UnauthorizedClient("Client not allowed to exchange code")
        code_value = param(form, "code")
        if code_value is None:
            raise InvalidRequest("Missing parameter: code")
        code = self.store.redeem_code(code_value)
        if code is None:
            # Unknown, expired, or already used: RFC 6749 §4.1.2 makes codes single-use.
            raise InvalidGrant("Code not valid")
        if code.request.client_id != client.client_id:
            raise InvalidGrant("Auth error")
        # RFC 6749 §4.1.3: redirect_uri must be identical to the one in the authorization request.
        if param(form, "redirect_uri") != code.request.redirect_uri:
            raise InvalidGrant("Incorrect redirect_uri")
        pkce.verify(
            param(form, "code_verifier"),
            code.request.code_challenge,
            code.request.code_challenge_method,
        )
        session = self.store.active_session(code.sid)
        user = self.realm.user_by_id(code.user_id)
        if session is None or user is None or not user.enabled:
            raise InvalidGrant("Session not active")
        scopes = resolve_scopes(client, code.request.scope, as_sent=False)
        return self._respond(
            Subject.of_user(user), client, scopes, session, nonce=code.request.nonce
        )

    # -- password (RFC 6749 §4.3) -------------------------------------------------------------

    def password(self, client: Client, form: dict[str, str]) -> dict[str, Any]:
        if not client.direct_access_grants:
            raise UnauthorizedClient("Client not allowed for direct access grants")
        # A sent, empty scope= is an empty value: Keycloak refuses it (tests/keycloak).
        scopes = resolve_scopes(client, form.get("scope"))
        username = param(form, "username")
        known = self.realm.user_by_username(username or "")
        # Keycloak's brute-force detection: a locked user gets the wrong-password answer
        # even with the right password, and the attempt is not checked at all.
        if known is not None and self.brute_force.locked(known.id):
            log.info("password grant refused for client %s: user locked", client.client_id)
            raise InvalidGrant(INVALID_USER_CREDENTIALS)
        user = check_password(known, param(form, "password"))
        if user is None:
            if known is not None:
                self.brute_force.failure(known.id)
            log.info("password grant refused for client %s", client.client_id)
            # Keycloak 26 answers 400 here (older releases: 401); the real thing is the reference.
            raise InvalidGrant(INVALID_USER_CREDENTIALS)
        if not user.enabled:
            raise InvalidGrant("Account disabled")
        self.brute_force.success(user.id)
        session = self.store.start_session(user.id, client.client_id)
        return self._respond(Subject.of_user(user), client, scopes, session)

    # -- refresh_token (RFC 6749 §6) ----------------------------------------------------------

    def refresh_token(self, client: Client, form: dict[str, str]) -> dict[str, Any]:
        token = param(form, "refresh_token")
        if token is None:
            raise InvalidRequest("Missing parameter: refresh_token")
        try:
            claims = self.issuer.verify(token, KEYCLOAK_TYP_REFRESH)
        except JwtValidationError as exc:
            raise InvalidGrant(f"Invalid refresh token: {exc.reason}") from None
        if claims.get("azp") != client.client_id:
            # RFC 6749 §6: the refresh token is bound to the client it was issued to.
            raise InvalidGrant(
                "Invalid refresh token. Token client and authorized client don't match"
            )
        session = self.store.touch_session(str(claims.get("sid", "")))
        user = self.realm.user_by_id(str(claims.get("sub")))
        if session is None or user is None or not user.enabled:
            raise InvalidGrant("Session not active")
        granted = resolve_scopes(client, str(claims.get("scope", "")), as_sent=False)
        requested = param(form, "scope")
        if requested is not None:
            # RFC 6749 §6: the new scope MUST NOT include any scope not originally granted.
            asked = resolve_scopes(client, requested)
            if not asked <= granted:
                raise InvalidScope("Invalid scopes: " + requested)
            granted = asked
        return self._respond(Subject.of_user(user), client, granted, session)

    # -- client_credentials (RFC 6749 §4.4) ---------------------------------------------------

    def client_credentials(self, client: Client, form: dict[str, str]) -> dict[str, Any]:
        if client.public_client:
            raise UnauthorizedClient("Public client not allowed to retrieve service account")
        if not client.service_accounts:
            raise UnauthorizedClient("Client not enabled to retrieve service account")
        scopes = resolve_scopes(client, param(form, "scope"))
        # Keycloak 26: a transient session, no refresh token, no sid.
        grant = Grant(
            Subject.service_account(client), client, scopes, sid=None, auth_time=None, refresh=False
        )
        return self.issuer.token_response(grant)

    def _respond(
        self,
        subject: Subject,
        client: Client,
        scopes: frozenset[str],
        session: UserSession,
        *,
        nonce: str | None = None,
    ) -> dict[str, Any]:
        expires_in = max(int(self.store.session_expiry(session) - time.time()), 1)
        grant = Grant(
            subject,
            client,
            scopes,
            sid=session.sid,
            auth_time=session.auth_time,
            nonce=nonce,
            session_expires_in=expires_in,
        )
        body = self.issuer.token_response(grant)
        log.info(
            "issued tokens to %s for %s (sid %s)",
            client.client_id,
            subject.username,
            session.sid[:8],
        )
        return body
