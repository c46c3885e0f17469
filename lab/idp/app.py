"""The embedded identity provider: Keycloak's URL layout and answers, from Keycloak's realm file.

A client cannot tell it from Keycloak 26 for what the lab uses: discovery, JWKS, the browser
login (authorization code + PKCE), the password, refresh and client-credentials grants,
userinfo, introspection and logout, all under ``/realms/<realm>``. Errors keep Keycloak's
shape, ``{"error", "error_description"}``, without the Athenz members the PDP adds.
"""

from __future__ import annotations

import base64
import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from cryptography.hazmat.primitives import serialization
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from lab.config import Settings
from lab.idp import login
from lab.idp.authorize import Authorizer
from lab.idp.clients import authenticate_client, redirect_uri_allowed
from lab.idp.grants import Grants, param
from lab.idp.id_jag import IdJagIssuer
from lab.idp.own_key import load_own_rsa_key
from lab.idp.realm import Realm, load_realm
from lab.idp.store import IdpStore
from lab.idp.tokens import Subject, TokenIssuer, resolve_scopes
from lab.oauth.errors import (
    InvalidBearerRequest,
    InvalidGrant,
    InvalidRequest,
    InvalidToken,
    OAuthError,
)
from lab.oauth.jose import JwtValidationError, SigningKey, jwks, key_id
from lab.oauth.starlette import (
    NO_STORE,
    RepeatedParameter,
    Repeats,
    exception_handlers,
    harden,
    read_form,
    single_query_params,
)
from lab.oauth.tokens import (
    GRANT_TOKEN_EXCHANGE,
    KEYCLOAK_TYP_BEARER,
    KEYCLOAK_TYP_ID,
    KEYCLOAK_TYP_REFRESH,
    TOKEN_TYPE_ID_JAG,
)

log = logging.getLogger("lab.idp")
#: How the embedded IdP names itself on ``/healthz`` (Keycloak reports "Keycloak 26.x").
SERVER_NAME = "lab embedded IdP (Keycloak-compatible)"

DEFAULT_REALM_FILE = Path(__file__).resolve().parents[2] / "keycloak" / "realm-idjag.json"
SIGNING_KEY_NAME = "idp-signing"


async def keycloak_error(request: Request, exc: Exception) -> Response:
    """Keycloak's error body: only ``error`` and ``error_description``."""
    assert isinstance(exc, OAuthError)
    body = {"error": exc.error, "error_description": exc.description}
    return JSONResponse(body, status_code=exc.status_code, headers={**NO_STORE, **exc.headers()})


class IdentityProvider:
    """One realm served Keycloak-style; the routes below are thin wrappers over it."""

    def __init__(
        self,
        realm: Realm,
        issuer: str,
        key: SigningKey,
        placeholders: dict[str, str] | None = None,
    ) -> None:
        self.realm = realm
        self.issuer = issuer
        self.key = key
        self.store = IdpStore(
            code_lifespan_s=realm.access_code_lifespan,
            session_idle_s=realm.sso_session_idle,
            session_max_s=realm.sso_session_max,
        )
        self.tokens = TokenIssuer(realm, issuer, key)
        self.grants = Grants(self.tokens, self.store)
        self.authorizer = Authorizer(realm, self.store, issuer)
        self.id_jag = IdJagIssuer(realm, self.tokens, key, self._subject_of, placeholders)

    # -- metadata -----------------------------------------------------------------------------

    def discovery(self) -> dict[str, Any]:
        """OIDC Discovery §3 with the members Keycloak publishes that the lab implements."""
        oidc = f"{self.issuer}/protocol/openid-connect"
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{oidc}/auth",
            "token_endpoint": f"{oidc}/token",
            "introspection_endpoint": f"{oidc}/token/introspect",
            "userinfo_endpoint": f"{oidc}/userinfo",
            "end_session_endpoint": f"{oidc}/logout",
            "jwks_uri": f"{oidc}/certs",
            "grant_types_supported": [
                "authorization_code",
                "client_credentials",
                "password",
                "refresh_token",
                GRANT_TOKEN_EXCHANGE,
            ],
            # ID-JAG draft -04 §7: this IdP issues ID-JAGs by token exchange.
            "identity_chaining_requested_token_types_supported": [TOKEN_TYPE_ID_JAG],
            "acr_values_supported": ["0", "1"],
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "userinfo_signing_alg_values_supported": ["none"],
            "response_modes_supported": ["query", "fragment"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "introspection_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
            ],
            "claims_supported": [
                "aud",
                "sub",
                "iss",
                "auth_time",
                "name",
                "given_name",
                "family_name",
                "preferred_username",
                "email",
                "acr",
            ],
            "claim_types_supported": ["normal"],
            "claims_parameter_supported": False,
            "scopes_supported": sorted(
                {
                    "openid",
                    *(
                        s
                        for c in self.realm.clients
                        for s in (*c.default_scopes, *c.optional_scopes)
                    ),
                }
            ),
            "request_parameter_supported": False,
            "request_uri_parameter_supported": False,
            "code_challenge_methods_supported": ["plain", "S256"],
            "authorization_response_iss_parameter_supported": True,
            "frontchannel_logout_supported": False,
            "backchannel_logout_supported": False,
        }

    def realm_info(self) -> dict[str, Any]:
        """``GET /realms/<realm>``: what python-keycloak's ``public_key()`` reads."""
        der = self.key.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return {
            "realm": self.realm.name,
            "public_key": base64.b64encode(der).decode("ascii"),
            "token-service": f"{self.issuer}/protocol/openid-connect",
            "account-service": f"{self.issuer}/account",
            "tokens-not-before": 0,
        }

    def certs(self) -> dict[str, Any]:
        return jwks([(self.key.key, self.key.kid)])

    # -- token endpoint -----------------------------------------------------------------------

    def token(self, request: Request, form: dict[str, str]) -> dict[str, Any]:
        grant_type = param(form, "grant_type")
        if grant_type is None:
            raise InvalidRequest("Missing form parameter: grant_type")
        client = authenticate_client(self.realm, request, form)
        if grant_type == GRANT_TOKEN_EXCHANGE:
            return self.id_jag.exchange(client, form)  # RFC 8693: ID token -> ID-JAG
        return self.grants.run(grant_type, client, form)

    # -- userinfo (OIDC Core §5.3) --------------------------------------------------------------

    def userinfo(self, token: str | None) -> dict[str, Any]:
        if not token:
            raise InvalidToken("Token not provided", realm=self.realm.name)
        try:
            claims = self.tokens.verify(token, KEYCLOAK_TYP_BEARER)
        except JwtValidationError as exc:
            log.info("userinfo: token refused: %s", exc.reason)
            raise InvalidToken("Token verification failed", realm=self.realm.name) from None
        subject = self._subject_of(claims)
        client = self.realm.client(str(claims.get("azp", "")))
        if subject is None or client is None:
            raise InvalidToken("Token verification failed", realm=self.realm.name)
        scopes = resolve_scopes(client, str(claims.get("scope", "")), as_sent=False)
        return {"sub": subject.id, **self.tokens.identity_claims(subject, scopes)}

    def _subject_of(self, claims: dict[str, Any]) -> Subject | None:
        """The user (still enabled, session still alive) or service account a token is about."""
        sid = claims.get("sid")
        if sid is not None and self.store.active_session(str(sid)) is None:
            return None
        user = self.realm.user_by_id(str(claims.get("sub")))
        if user is not None:
            return Subject.of_user(user) if user.enabled else None
        client = self.realm.client(str(claims.get("azp", "")))
        if (
            client is not None
            and client.service_accounts
            and claims.get("sub") == client.service_account_id
        ):
            return Subject.service_account(client)
        return None

    # -- introspection (RFC 7662) ---------------------------------------------------------------

    def introspect(self, request: Request, form: dict[str, str]) -> dict[str, Any]:
        authenticate_client(self.realm, request, form)
        token = param(form, "token")
        if token is None:
            raise InvalidRequest("Token not provided.")
        for typ in (KEYCLOAK_TYP_BEARER, KEYCLOAK_TYP_ID, KEYCLOAK_TYP_REFRESH):
            try:
                claims = self.tokens.verify(token, typ)
            except JwtValidationError:
                continue
            if self._subject_of(claims) is None:
                break
            # RFC 7662 §2.2: active plus the token's own claims; Keycloak adds client_id/username.
            return {
                **claims,
                "client_id": claims.get("azp"),
                "username": claims.get("preferred_username"),
                "token_type": "Bearer",
                "active": True,
            }
        return {"active": False}

    # -- logout ---------------------------------------------------------------------------------

    def logout_with_refresh_token(self, request: Request, form: dict[str, str]) -> None:
        """Back-channel logout as python-keycloak's ``logout(refresh_token)`` does it."""
        client = authenticate_client(self.realm, request, form)
        try:
            claims = self.tokens.verify(form["refresh_token"], KEYCLOAK_TYP_REFRESH)
        except JwtValidationError:
            raise InvalidGrant("Invalid refresh token") from None
        if claims.get("azp") != client.client_id:
            raise InvalidGrant(
                "Invalid refresh token. Token client and authorized client don't match"
            )
        self.store.end_session(str(claims.get("sid", "")))

    def logout_in_browser(self, params: dict[str, str]) -> Response:
        """RP-initiated logout (OIDC RP-Initiated Logout §2): end the session, maybe redirect."""
        hint = params.get("id_token_hint")
        claims: dict[str, Any] = {}
        if hint:
            try:
                claims = self.tokens.verify(hint, KEYCLOAK_TYP_ID)
            except JwtValidationError:
                return HTMLResponse(
                    login.error_page("Invalid parameter: id_token_hint"), 400, headers=NO_STORE
                )
            self.store.end_session(str(claims.get("sid", "")))
        target = params.get("post_logout_redirect_uri")
        if target:
            client = self.realm.client(params.get("client_id") or str(claims.get("azp", "")))
            if client is None or not redirect_uri_allowed(client, target):
                return HTMLResponse(login.error_page("Invalid redirect uri"), 400, headers=NO_STORE)
            state = params.get("state")
            sep = "&" if "?" in target else "?"
            location = f"{target}{sep}{urlencode({'state': state})}" if state else target
            return RedirectResponse(location, status_code=302, headers=NO_STORE)
        return HTMLResponse(login.logged_out_page(), headers=NO_STORE)


def create_app(settings: Settings, realm_file: Path = DEFAULT_REALM_FILE) -> Starlette:
    """The IdP app. Raises :class:`lab.idp.realm.RealmFileError` if the realm file is unusable."""
    realm = load_realm(realm_file)
    issuer = f"{settings.endpoints.idp_base}/realms/{realm.name}"
    key = signing_key(settings)
    # Keycloak resolves ${LAB_ZTS_ISSUER} etc. in the realm file from its environment; the
    # embedded IdP from the lab's own endpoints (lab/idp/id_jag.py).
    placeholders = {
        "LAB_ZTS_ISSUER": settings.endpoints.zts,
        "LAB_MCP_RESOURCE": settings.endpoints.mcp,
    }
    idp = IdentityProvider(realm, issuer, key, placeholders)
    log.info("idp: realm %s from %s, issuer %s, key %s", realm.name, realm_file, issuer, key.kid)
    handlers = exception_handlers()
    handlers[OAuthError] = keycloak_error
    app = Starlette(routes=_routes(idp), exception_handlers=handlers)
    harden(app, settings)
    app.state.idp = idp
    return app


def signing_key(settings: Settings) -> SigningKey:
    """The realm's RS256 key in ``$LAB_HOME/keys`` (created 0600 on first start, then reused)."""
    path = settings.key_file(SIGNING_KEY_NAME)
    own = load_own_rsa_key(path)  # the key this lab wrote itself: no re-validation (own_key)
    key = (
        SigningKey(own, key_id(own))
        if own is not None
        else SigningKey.load_or_create(path, alg="RS256")
    )
    if key.alg != "RS256":
        # Keycloak realms sign with RS256 by default, and the lab's steps say so.
        raise ValueError(
            f"{path} holds an {key.alg} key; the IdP needs RS256 (delete the file to regenerate)"
        )
    return key


def _routes(idp: IdentityProvider) -> list[Route]:
    base = f"/realms/{idp.realm.name}"
    oidc = f"{base}/protocol/openid-connect"

    async def discovery(request: Request) -> Response:
        return JSONResponse(idp.discovery())

    async def realm_info(request: Request) -> Response:
        return JSONResponse(idp.realm_info())

    async def certs(request: Request) -> Response:
        return JSONResponse(idp.certs())

    async def token(request: Request) -> Response:
        form = await read_form(request)
        return JSONResponse(idp.token(request, form), headers=NO_STORE)

    async def userinfo(request: Request) -> Response:
        token_value = _bearer(request)
        if token_value is None and request.method == "POST":
            try:
                token_value = (await read_form(request)).get("access_token")
            except RepeatedParameter as malformed:
                # Keycloak answers a repeated parameter here with the RFC 6750 challenge; any
                # other malformed form (content type, encoding, length) stays invalid_request.
                raise InvalidBearerRequest(malformed.description, realm=idp.realm.name) from None
        return JSONResponse(idp.userinfo(token_value), headers=NO_STORE)

    async def introspect(request: Request) -> Response:
        form = await read_form(request)
        return JSONResponse(idp.introspect(request, form), headers=NO_STORE)

    async def logout(request: Request) -> Response:
        # As Keycloak's logout endpoint: GET reads the query, POST the form alone, and of a
        # repeated parameter the first value counts (lab.oauth.starlette.Repeats.FIRST).
        if request.method == "POST":
            params = await read_form(request, repeats=Repeats.FIRST)
            if params.get("refresh_token"):
                idp.logout_with_refresh_token(request, params)
                return Response(status_code=204, headers=NO_STORE)
        else:
            params = single_query_params(request, Repeats.FIRST)
        return idp.logout_in_browser(params)

    async def ready(request: Request) -> Response:
        return JSONResponse({"status": "UP", "checks": []})

    async def healthz(request: Request) -> Response:
        # ``server`` names the product, as Keycloak's serverinfo does (lab verify records it).
        return JSONResponse({"status": "ok", "part": "idp", "server": SERVER_NAME})

    async def unknown_realm(request: Request) -> Response:
        # Keycloak's answer for a realm it does not have.
        body = {
            "error": "Realm does not exist",
            "error_description": "For more on this error consult the server log.",
        }
        return JSONResponse(body, status_code=404)

    return [
        Route(f"{base}/.well-known/openid-configuration", discovery),
        Route(f"{base}/.well-known/oauth-authorization-server", discovery),
        Route(base, realm_info),
        Route(f"{oidc}/auth", idp.authorizer.authorize, methods=["GET", "POST"]),
        Route(f"{base}/login-actions/authenticate", idp.authorizer.authenticate, methods=["POST"]),
        Route(f"{oidc}/token", token, methods=["POST"]),
        Route(f"{oidc}/token/introspect", introspect, methods=["POST"]),
        Route(f"{oidc}/certs", certs),
        Route(f"{oidc}/userinfo", userinfo, methods=["GET", "POST"]),
        Route(f"{oidc}/logout", logout, methods=["GET", "POST"]),
        Route("/health/ready", ready),
        Route("/health/live", ready),
        Route("/health", ready),
        Route("/healthz", healthz),
        Route("/realms/{name}", unknown_realm),
        Route("/realms/{name}/{rest:path}", unknown_realm),
    ]


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None
