"""The authorization endpoint and the login form behind it (RFC 6749 §4.1, OIDC Core §3.1.2).

Until the client and its redirect URI are known to be good, problems are shown on an HTML
error page (RFC 6749 §4.1.2.1: never redirect to an unverified URI). After that, problems go
back to the client on the redirect as ``error`` / ``error_description`` / ``state``.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
import logging
import re
import secrets
from urllib.parse import quote_plus, urlencode

from starlette.datastructures import URL
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from lab.idp import login, pkce
from lab.idp.clients import default_redirect_uri, redirect_uri_allowed
from lab.idp.grants import check_password
from lab.idp.realm import Realm
from lab.idp.store import AuthRequest, IdpStore, PendingLogin
from lab.idp.tokens import resolve_scopes
from lab.oauth.errors import OAuthError
from lab.oauth.starlette import (
    NO_STORE,
    Repeats,
    form_pairs,
    one_value_each,
    query_pairs,
    read_form,
    single_query_params,
)
from lab.oauth.usernames import login_form_username

log = logging.getLogger("lab.idp")

#: Keycloak binds a login form to the browser with this cookie.
AUTH_SESSION_COOKIE = "AUTH_SESSION_ID"
_RESPONSE_MODES = ("query", "fragment")
#: A cookie value ``http.cookies`` writes unquoted: the base64url alphabet of the keys made here.
_PLAIN_COOKIE_VALUE = re.compile(r"[A-Za-z0-9_-]+")
#: Keycloak 26.7's page (400, "We are sorry...") when the login form comes back without its
#: cookies (AUTH_SESSION_ID and KC_RESTART), e.g. from a client that drops Secure cookies on http.
COOKIE_NOT_FOUND = (
    "Restart login cookie not found. It may have expired; it may have been deleted or cookies "
    "are disabled in your browser. If cookies are disabled then enable them. "
    "Click Back to Application to login again."
)


class ClientRedirectError(Exception):
    """An authorization error that is sent to the (verified) redirect URI."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


class Authorizer:
    def __init__(self, realm: Realm, store: IdpStore, issuer: str) -> None:
        self.realm = realm
        self.store = store
        self.issuer = issuer
        self.cookie_path = "/realms/" + realm.name + "/"
        # What follows the value in the browser cookie's Set-Cookie header, by secure context:
        # byte for byte what Starlette's ``set_cookie`` writes (its ``SimpleCookie`` sorts the
        # attributes), built once rather than through ``http.cookies`` on every login page.
        self._cookie_attributes = {
            secure: f"; HttpOnly; Path={self.cookie_path}; SameSite={'none' if secure else 'lax'}"
            + ("; Secure" if secure else "")
            for secure in (True, False)
        }

    # -- GET/POST /protocol/openid-connect/auth -----------------------------------------------

    async def authorize(self, request: Request) -> Response:
        # RFC 6749 §3.1: a parameter MUST NOT be included more than once. As Keycloak 26
        # (AuthzEndpointQueryStringParser): a repeated client_id is its error page; any other
        # repeat is read by its first value, and once the client, its redirect URI and the
        # response type check out, answered invalid_request at that redirect URI (§4.1.2.1).
        # A form post (OIDC Core §3.1.2.1) is read by the same rule as the query.
        pairs = query_pairs(request)
        params = one_value_each(pairs, Repeats.FIRST)
        repeated = len(params) < len(pairs)
        if repeated and _client_id_repeated(pairs):
            return _error_page("Invalid Request")
        if request.method == "POST":
            posted = await form_pairs(request)
            form = one_value_each(posted, Repeats.FIRST)
            if len(form) < len(posted):
                if _client_id_repeated(posted):
                    return _error_page("Invalid Request")
                repeated = True
            if set(form) & set(params):
                # The same parameter in the query and the form is included more than once, too:
                # the form would silently win over what the query says.
                return _error_page("Invalid Request")
            params.update(form)
        client = self.realm.client(params.get("client_id", ""))
        if client is None or not client.enabled:
            return _error_page("Client not found.")
        redirect_uri = params.get("redirect_uri") or default_redirect_uri(client)
        if not redirect_uri or not redirect_uri_allowed(client, redirect_uri):
            return _error_page("Invalid parameter: redirect_uri")
        state = params.get("state") or None
        mode = params.get("response_mode") or "query"
        if mode not in _RESPONSE_MODES:
            return _redirect(
                redirect_uri,
                "query",
                {
                    "error": "invalid_request",
                    "error_description": "Invalid parameter: response_mode",
                    "state": state,
                },
            )
        try:
            auth_request = self._validate(
                client.client_id, redirect_uri, state, mode, params, repeated
            )
        except ClientRedirectError as exc:
            return _redirect(
                redirect_uri,
                mode,
                {
                    "error": exc.error,
                    "error_description": exc.description,
                    "state": state,
                    "iss": self.issuer,
                },
            )
        browser_key = request.cookies.get(AUTH_SESSION_COOKIE) or secrets.token_urlsafe(24)
        pending = self.store.start_login(auth_request, browser_key)
        response = self._login_form(pending)
        self._set_browser_cookie(response, browser_key, secure_context(request))
        return response

    def _validate(
        self,
        client_id: str,
        redirect_uri: str,
        state: str | None,
        mode: str,
        params: dict[str, str],
        repeated: bool,
    ) -> AuthRequest:
        client = self.realm.client(client_id)
        assert client is not None
        if params.get("response_type") != "code":
            raise ClientRedirectError(
                "unsupported_response_type",
                "Client is not allowed to initiate browser login with given response_type.",
            )
        if not client.standard_flow:
            raise ClientRedirectError(
                "unauthorized_client",
                "Client is not allowed to initiate browser login "
                "with given response_type. Standard flow is disabled for the client.",
            )
        if repeated:
            raise ClientRedirectError("invalid_request", "duplicated parameter")
        try:
            resolve_scopes(client, params.get("scope"))
            method = pkce.check_challenge(
                params.get("code_challenge") or None,
                params.get("code_challenge_method") or None,
                client.pkce_method,
            )
        except OAuthError as exc:
            raise ClientRedirectError(exc.error, exc.description) from None
        if params.get("prompt") == "none":
            # No SSO cookie session in the embedded IdP: a silent login can never succeed.
            raise ClientRedirectError("login_required", "No active session")
        return AuthRequest(
            client_id=client_id,
            redirect_uri=redirect_uri,
            scope=params.get("scope") or "",
            state=state,
            nonce=params.get("nonce") or None,
            response_mode=mode,
            code_challenge=params.get("code_challenge") if method else None,
            code_challenge_method=method,
        )

    # -- POST /login-actions/authenticate ------------------------------------------------------

    async def authenticate(self, request: Request) -> Response:
        # Keycloak's login form takes the first of a repeated parameter (Repeats.FIRST).
        tab_id = single_query_params(request, Repeats.FIRST).get("tab_id", "")
        pending = self.store.pending_login(tab_id) if tab_id else None
        if pending is None:
            return _error_page("Your login attempt timed out. Login will start from the beginning.")
        cookie = request.cookies.get(AUTH_SESSION_COOKIE, "")
        if not hmac.compare_digest(cookie.encode(), pending.browser_key.encode()):
            # Login CSRF defence: the form only works in the browser that loaded it. Keycloak's
            # page and wording, so a client that drops Secure cookies on loopback fails here too.
            return _error_page(COOKIE_NOT_FOUND)
        form = await read_form(request, repeats=Repeats.FIRST)
        username = form.get("username", "")
        user = check_password(
            self.realm.user_by_username(login_form_username(username)), form.get("password")
        )
        if user is None:
            log.info("login form: invalid credentials for client %s", pending.request.client_id)
            # Keycloak re-shows the form with status 200 and keeps the username.
            return self._login_form(pending, username=username, error=login.INVALID_CREDENTIALS)
        if not user.enabled:
            return self._login_form(
                pending, username=username, error="Account is disabled, contact your administrator."
            )
        self.store.finish_login(pending.tab_id)
        session = self.store.start_session(user.id, pending.request.client_id)
        code = self.store.issue_code(pending.request, session)
        log.info(
            "login: %s signed in for client %s (sid %s)",
            user.username,
            pending.request.client_id,
            session.sid[:8],
        )
        auth = pending.request
        # RFC 9207: iss in the authorization response (Keycloak 26 sends it).
        return _redirect(
            auth.redirect_uri,
            auth.response_mode,
            {
                "state": auth.state,
                "session_state": session.sid,
                "iss": self.issuer,
                "code": code.code,
            },
        )

    # -- pieces ---------------------------------------------------------------------------------

    def _login_form(
        self, pending: PendingLogin, username: str = "", error: str | None = None
    ) -> Response:
        query = urlencode({"client_id": pending.request.client_id, "tab_id": pending.tab_id})
        # Relative, so the form posts back to whichever host name the browser used (and its cookie).
        action = f"/realms/{self.realm.name}/login-actions/authenticate?{query}"
        html = login.login_page(self.realm.display_name, action, username=username, error=error)
        headers = {
            **NO_STORE,
            "X-Frame-Options": "SAMEORIGIN",
            "Content-Security-Policy": "frame-ancestors 'self'; object-src 'none'",
        }
        return HTMLResponse(html, status_code=200, headers=headers)

    def _set_browser_cookie(self, response: Response, value: str, secure: bool) -> None:
        # Keycloak 26 (PR #32130) marks its login cookies ``Secure; SameSite=None`` whenever the
        # request comes from a secure context, and a browser counts http://127.0.0.1 and
        # http://localhost as one. Clients that do not (a plain cookie jar) lose the cookie and
        # meet "Cookie not found" on the login POST: the lab behaves the same way on purpose.
        if _PLAIN_COOKIE_VALUE.fullmatch(value):
            # The values this IdP makes (``secrets.token_urlsafe``) need no quoting; anything
            # else a browser sent back goes through ``http.cookies``, which quotes it.
            header = f"{AUTH_SESSION_COOKIE}={value}{self._cookie_attributes[secure]}"
            response.raw_headers.append((b"set-cookie", header.encode("latin-1")))
            return
        response.set_cookie(
            AUTH_SESSION_COOKIE,
            value,
            path=self.cookie_path,
            httponly=True,
            secure=secure,
            samesite="none" if secure else "lax",
        )


def _client_id_repeated(pairs: list[tuple[str, str]]) -> bool:
    return sum(name == "client_id" for name, _ in pairs) > 1


def secure_context(request: Request) -> bool:
    """W3C Secure Contexts §3.1: https, or a loopback host (``127.0.0.0/8``, ``::1``, localhost)."""
    scope = request.scope
    host = next((value for key, value in scope["headers"] if key == b"host"), None)
    # ASGI lets ``server`` be any two-item iterable (Starlette's TestClient passes a list): a
    # tuple is what the cache below can hash.
    server = scope.get("server")
    return _secure_context(
        scope.get("scheme", "http"), host, None if server is None else tuple(server)
    )


@functools.lru_cache(maxsize=64)
def _secure_context(scheme: str, host: bytes | None, server: tuple[str, int] | None) -> bool:
    """:func:`secure_context` for one (scheme, Host header, server address): the answer depends
    on nothing else, and a lab is reached under a handful of names, so it is worked out once per
    name rather than on every authorization request (building ``request.url`` and parsing an
    IP address cost more than the rest of the check). The URL is the one Starlette builds."""
    url = URL(
        scope={
            "scheme": scheme,
            "server": server,
            "path": "/",
            "query_string": b"",
            "headers": [] if host is None else [(b"host", host)],
        }
    )
    if url.scheme == "https":
        return True
    return is_loopback_host(url.hostname or "")


def is_loopback_host(host: str) -> bool:
    name = host.strip("[]").lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _redirect(redirect_uri: str, mode: str, params: dict[str, str | None]) -> Response:
    # What urlencode() writes (the names here need no escaping), with the issuer's escaped form
    # kept: a URL takes quote_plus's slow path, character by character, on every sign-in.
    encoded = "&".join(
        _iss_param(value) if name == "iss" else f"{name}={quote_plus(value)}"
        for name, value in params.items()
        if value is not None
    )
    if mode == "fragment":
        target = f"{redirect_uri}#{encoded}"
    else:
        target = f"{redirect_uri}{'&' if '?' in redirect_uri else '?'}{encoded}"
    if not _UNCHANGED_BY_REDIRECT_QUOTE.fullmatch(target):
        return RedirectResponse(target, status_code=302, headers=NO_STORE)
    # The same response as RedirectResponse's, whose quote() would leave this target as it is.
    response = Response(status_code=302, headers=NO_STORE)
    response.raw_headers.append((b"location", target.encode("ascii")))
    return response


@functools.lru_cache(maxsize=16)
def _iss_param(issuer: str) -> str:
    return f"iss={quote_plus(issuer)}"


#: A URL Starlette's RedirectResponse writes unchanged: only characters its quote() keeps
#: (RFC 3986 unreserved, plus the ``safe`` set it passes: ``:/%#?=@[]!$&'()*+,;``).
_UNCHANGED_BY_REDIRECT_QUOTE = re.compile(r"[A-Za-z0-9_.~\-:/%#?=@\[\]!$&'()*+,;]+")


def _error_page(message: str) -> Response:
    return HTMLResponse(login.error_page(message), status_code=400, headers=NO_STORE)
