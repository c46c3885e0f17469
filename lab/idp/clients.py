"""Client authentication and redirect-URI matching, with Keycloak's rules and wording."""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
import re
from urllib.parse import unquote_plus, urlsplit, urlunsplit

from starlette.requests import Request

from lab.idp.realm import Client, Realm
from lab.oauth.errors import InvalidClient, InvalidRequest, UnauthorizedClient

INVALID_CLIENT = "Invalid client or Invalid client credentials"
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
_UNSAFE_IN_URI = re.compile(r"[\x00-\x20\x7f\\]")


def _challenge(realm: Realm) -> dict[str, str]:
    return {"WWW-Authenticate": f'Basic realm="{realm.name}"'}


def credentials_from(request: Request, form: dict[str, str]) -> tuple[str | None, str | None]:
    """client_secret_basic (RFC 6749 §2.3.1: id and secret form-urlencoded) or _post."""
    header = request.headers.get("authorization", "")
    if header[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise InvalidRequest("Invalid Authorization header") from None
        client_id, sep, secret = decoded.partition(":")
        if not sep:
            raise InvalidRequest("Invalid Authorization header")
        form_id = form.get("client_id")
        client_id = unquote_plus(client_id)
        if form_id and form_id != client_id:
            # RFC 6749 §2.3: a client uses one authentication method per request.
            raise InvalidRequest("client_id in the body does not match the Authorization header")
        return client_id, unquote_plus(secret)
    return form.get("client_id") or None, form.get("client_secret") or None


def authenticate_client(realm: Realm, request: Request, form: dict[str, str]) -> Client:
    """Keycloak answers an unknown client with invalid_client, a wrong or missing secret with
    unauthorized_client (both 401, "Invalid client or Invalid client credentials" family)."""
    client_id, secret = credentials_from(request, form)
    client = realm.client(client_id) if client_id else None
    if client is None or not client.enabled:
        raise InvalidClient(INVALID_CLIENT, headers=_challenge(realm))
    if client.public_client:
        return client
    if secret is None:
        raise UnauthorizedClient(
            "Client secret not provided in request", status=401, headers=_challenge(realm)
        )
    expected = client.secret or ""
    if not hmac.compare_digest(secret.encode("utf-8"), expected.encode("utf-8")):
        raise UnauthorizedClient(
            "Invalid client or Invalid client credentials", status=401, headers=_challenge(realm)
        )
    return client


def redirect_uri_allowed(client: Client, redirect_uri: str) -> bool:
    """Keycloak's RedirectUtils: exact match, or prefix match for a pattern ending in ``*``.

    Loopback redirects (RFC 8252 §7.3) match whatever port the native app picked: the port
    is dropped before comparing, so ``http://127.0.0.1/*`` admits ``http://127.0.0.1:53127/cb``.
    """
    return _redirect_uri_allowed(client, redirect_uri)


#: A client's registration never changes in a running IdP (the realm file is read once), so the
#: answer for one (client, URI) pair is kept: an agent signs in again and again with the same
#: redirect URI, and parsing it costs more than the rest of the authorization request's checks.
#: Bounded, so URIs made up by a caller only push older answers out.
@functools.lru_cache(maxsize=128)
def _redirect_uri_allowed(client: Client, redirect_uri: str) -> bool:
    if _UNSAFE_IN_URI.search(redirect_uri):
        # Controls, spaces and backslashes: a browser reads "\\" as "/" (WHATWG URL), so what
        # it would visit is not what was matched here. RFC 3986 §2 allows none of them.
        return False
    try:
        parts = urlsplit(redirect_uri)
        port = parts.port  # raises for a port that is not a number in 0-65535
    except ValueError:
        return False  # RFC 3986 §3.2: not a URI (a broken IPv6 literal, a bad port)
    if parts.fragment or parts.scheme not in ("http", "https") or not parts.netloc:
        return False  # RFC 6749 §3.1.2: absolute URI, no fragment
    if "@" in parts.netloc:
        # RFC 3986 §7.5 / RFC 8252 §8.x: userinfo in a redirect is a phishing device, never
        # needed by a client; the host a reader sees first is not the one the browser visits.
        return False
    candidates = [redirect_uri]
    if parts.hostname in _LOOPBACK_HOSTS and port is not None:
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        candidates.append(urlunsplit((parts.scheme, host, parts.path, parts.query, "")))
    return any(
        _matches(pattern, candidate) for pattern in client.redirect_uris for candidate in candidates
    )


def _matches(pattern: str, uri: str) -> bool:
    if pattern.endswith("*"):
        prefix = pattern[:-1]
        # "http://127.0.0.1/*" also admits "http://127.0.0.1" itself (Keycloak strips "/*").
        return uri.startswith(prefix) or uri == prefix.rstrip("/")
    return uri == pattern


def default_redirect_uri(client: Client) -> str | None:
    """OIDC Core §3.1.2.1 lets a client with one registered URI leave redirect_uri out."""
    exact = [u for u in client.redirect_uris if not u.endswith("*")]
    return exact[0] if len(client.redirect_uris) == 1 and exact else None
