"""Sign the user in at the IdP: authorization code + PKCE (RFC 7636), or the password grant.

The code flow is driven headlessly the way a browser would: GET the authorization endpoint,
read the login form from the HTML, POST the credentials, and take the ``code`` from the
redirect ``Location`` to a loopback ``redirect_uri`` (RFC 8252 §7.3) without following it.
Like a browser, it keeps cookies marked ``Secure`` for http://127.0.0.1 and http://localhost
(:class:`LoopbackSecureCookiePolicy`): Keycloak 26 marks its login cookies that way there.
``sign_in_browser`` does the same for a person: it opens the real login page and catches the
redirect on a one-shot loopback listener.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import http.cookiejar
import http.server
import ipaddress
import json
import secrets
import threading
import weakref
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx

from lab.config import AGENT_PRINCIPAL
from lab.oauth.tokens import GRANT_AUTHORIZATION_CODE, GRANT_PASSWORD

DEFAULT_REALM_FILE = Path(__file__).resolve().parents[2] / "keycloak" / "realm-idjag.json"
DEFAULT_REDIRECT_URI = "http://127.0.0.1/callback"
#: Keycloak's page when the login POST arrives without its cookies ("Cookie not found. ..." in
#: older releases, "Restart login cookie not found. ..." in 26.7); compared in lower case.
COOKIE_NOT_FOUND_MARKER = "cookie not found"
SCOPE = "openid profile email"


@dataclass
class SignIn:
    """Tokens from the IdP; on failure the tokens are None and ``error`` says why."""

    id_token: str | None
    access_token: str | None
    refresh_token: str | None
    method: str = "code"
    status: int | None = None
    error: str | None = None
    error_description: str | None = None
    body: dict[str, Any] = field(default_factory=dict)
    #: Set only when the caller asked for a fallback and it happened: why the code flow failed.
    fallback_from: str | None = None

    @property
    def ok(self) -> bool:
        return self.id_token is not None


@dataclass(frozen=True)
class IdpClient:
    """The agent's registration at the IdP, read from the realm file Keycloak also imports."""

    client_id: str
    client_secret: str
    redirect_uri: str

    @classmethod
    def from_realm_file(
        cls, path: Path = DEFAULT_REALM_FILE, client_id: str = AGENT_PRINCIPAL
    ) -> IdpClient:
        realm = json.loads(path.read_text())
        for client in realm.get("clients", []):
            if client.get("clientId") == client_id:
                return cls(
                    client_id=client_id,
                    client_secret=str(client.get("secret", "")),
                    redirect_uri=_loopback_redirect(client.get("redirectUris", [])),
                )
        raise LookupError(f"client {client_id!r} not found in realm file {path}")


@dataclass(frozen=True)
class Pkce:
    """RFC 7636 §4.1–4.2: a high-entropy verifier and its S256 challenge."""

    verifier: str
    challenge: str

    @classmethod
    def new(cls) -> Pkce:
        return cls.from_verifier(secrets.token_urlsafe(48))  # 64 unreserved chars (43..128 allowed)

    @classmethod
    def from_verifier(cls, verifier: str) -> Pkce:
        # S256: BASE64URL-ENCODE(SHA256(ASCII(code_verifier))), no padding (RFC 7636 §4.2)
        digest = hashlib.sha256(verifier.encode("ascii")).digest()
        return cls(verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii"))


class SignInFailed(Exception):
    """The login page did not lead to a code; carries the data a step shows."""

    def __init__(self, error: str, description: str, status: int | None = None) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status


# -- cookies, the way a browser keeps them ------------------------------------------------


class LoopbackSecureCookiePolicy(http.cookiejar.DefaultCookiePolicy):
    """Send ``Secure`` cookies to loopback http URLs, as browsers do.

    W3C Secure Contexts §3.1 counts http://127.0.0.1, http://[::1] and http://localhost as
    potentially trustworthy, and browsers return ``Secure`` cookies there. Keycloak 26 relies
    on it (``AUTH_SESSION_ID``/``KC_RESTART`` are ``Secure; SameSite=None`` on loopback http);
    the standard library's policy sends them to https only, so the login POST would arrive
    without them and Keycloak would answer 400 "cookie not found" (keycloak#37726).
    """

    def return_ok_secure(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        # Asked per cookie and per request: the verdict is the request's host's (its netloc,
        # as urllib's Request parsed it from the URL), kept per host.
        if _loopback_netloc(request.host):
            return True
        return bool(super().return_ok_secure(cookie, request))


def browser_cookie_jar() -> http.cookiejar.CookieJar:
    """A cookie jar whose policy treats loopback http as a secure context."""
    return http.cookiejar.CookieJar(policy=LoopbackSecureCookiePolicy())


class _StoresNothing(http.cookiejar.CookieJar):
    """The jar httpx keeps on a :func:`browser_like` client: what a response sets is kept by the
    browser's jar beside it, so this one does not even parse it."""

    def extract_cookies(self, response: Any, request: Any) -> None:
        return None


def browser_like(client: httpx.Client) -> httpx.Client:
    """Make ``client`` keep and send cookies the way a browser does on loopback http.

    httpx copies the client's cookies into a jar with the default policy for every request
    (``Client._merge_cookies``), so a policy on the client's own jar is not enough: the
    browser's jar (:func:`browser_cookie_jar`) is kept beside the client instead, by two
    hooks: a request hook sets the ``Cookie`` header from it, a response hook stores every
    ``Set-Cookie`` in it (setting a Secure cookie over http is allowed; only sending it back
    is restricted). The client's own jar stores nothing, so httpx has nothing to copy and no
    header to build that the hook would replace (0.3 ms of a chain's sign-in and token
    requests). ``browser_cookies(client)`` is the browser's jar.
    """
    jar = browser_cookie_jar()
    cookies = httpx.Cookies(jar)
    client.cookies = _StoresNothing()  # type: ignore[assignment]

    def cookie_header(request: httpx.Request) -> None:
        request.headers.pop("cookie", None)  # one a caller passed per request: the jar's wins
        if jar:
            cookies.set_cookie_header(request)

    def store_cookies(response: httpx.Response) -> None:
        if "set-cookie" in response.headers:
            cookies.extract_cookies(response)

    # The hooks hold the jar, not the client: no reference cycle (a finished agent, its
    # recorder and its exchanges are freed at once, not left to the cyclic collector).
    client.event_hooks["request"].insert(0, cookie_header)
    client.event_hooks["response"].insert(0, store_cookies)
    _BROWSER_JARS[client] = jar
    return client


#: The browser's jar of each :func:`browser_like` client.
_BROWSER_JARS: weakref.WeakKeyDictionary[httpx.Client, http.cookiejar.CookieJar] = (
    weakref.WeakKeyDictionary()
)


def browser_cookies(client: httpx.Client) -> http.cookiejar.CookieJar:
    """The cookies a :func:`browser_like` client keeps and sends."""
    return _BROWSER_JARS[client]


@functools.lru_cache(maxsize=256)
def _loopback_netloc(netloc: str) -> bool:
    return is_loopback_url(f"http://{netloc}/")


def is_loopback_url(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# -- endpoints ----------------------------------------------------------------------------


def auth_endpoint(issuer: str) -> str:
    return f"{issuer}/protocol/openid-connect/auth"


def token_endpoint(issuer: str) -> str:
    return f"{issuer}/protocol/openid-connect/token"


def authorization_url(
    issuer: str, client: IdpClient, redirect_uri: str, pkce: Pkce, state: str
) -> str:
    params = {
        "response_type": "code",
        "client_id": client.client_id,
        "redirect_uri": redirect_uri,
        "scope": SCOPE,
        "state": state,
        "nonce": secrets.token_urlsafe(16),
        "code_challenge": pkce.challenge,
        "code_challenge_method": "S256",
    }
    return f"{auth_endpoint(issuer)}?{urlencode(params)}"


# -- flows ------------------------------------------------------------------------------------


def sign_in_with_code(
    http: httpx.Client, issuer: str, client: IdpClient, username: str, password: str
) -> SignIn:
    """Authorization code + PKCE, the login form filled in headlessly."""
    pkce = Pkce.new()
    state = secrets.token_urlsafe(16)
    redirect_uri = client.redirect_uri
    try:
        code = _drive_login(
            http,
            authorization_url(issuer, client, redirect_uri, pkce, state),
            redirect_uri,
            state,
            username,
            password,
        )
    except SignInFailed as failure:
        return SignIn(None, None, None, "code", failure.status, failure.error, failure.description)
    return redeem_code(http, issuer, client, code, redirect_uri, pkce.verifier)


def sign_in_with_password(
    http: httpx.Client, issuer: str, client: IdpClient, username: str, password: str
) -> SignIn:
    """Resource owner password credentials (RFC 6749 §4.3): only when asked for by name."""
    form = {
        "grant_type": GRANT_PASSWORD,
        "username": username,
        "password": password,
        "scope": SCOPE,
        "client_id": client.client_id,
        "client_secret": client.client_secret,
    }
    return _token_request(http, issuer, form, "password")


def redeem_code(
    http: httpx.Client, issuer: str, client: IdpClient, code: str, redirect_uri: str, verifier: str
) -> SignIn:
    """RFC 6749 §4.1.3 with the PKCE verifier (RFC 7636 §4.5); client_secret_post."""
    form = {
        "grant_type": GRANT_AUTHORIZATION_CODE,
        "code": code,
        "redirect_uri": redirect_uri,
        "code_verifier": verifier,
        "client_id": client.client_id,
        "client_secret": client.client_secret,
    }
    return _token_request(http, issuer, form, "code")


def sign_in_browser(
    http: httpx.Client,
    issuer: str,
    client: IdpClient,
    *,
    opener: Callable[[str], Any] = webbrowser.open,
    host: str = "127.0.0.1",
    timeout_s: float = 300.0,
) -> SignIn:
    """Open the real login page for a person; catch the redirect on a one-shot loopback listener."""
    pkce = Pkce.new()
    state = secrets.token_urlsafe(16)
    with _CallbackListener(host, client.redirect_uri, state) as listener:
        opener(authorization_url(issuer, client, listener.redirect_uri, pkce, state))
        params = listener.wait(timeout_s)
    if params is None:
        return SignIn(
            None,
            None,
            None,
            "browser",
            None,
            "timeout",
            f"no redirect reached {listener.redirect_uri} within {timeout_s:.0f}s",
        )
    try:
        code = _code_from_params(params, state)
    except SignInFailed as failure:
        return SignIn(None, None, None, "browser", None, failure.error, failure.description)
    result = redeem_code(http, issuer, client, code, listener.redirect_uri, pkce.verifier)
    result.method = "browser"
    return result


# -- login form driving -------------------------------------------------------------------------


@dataclass
class LoginForm:
    action: str
    method: str
    fields: dict[str, str]


class _FormParser(HTMLParser):
    """Collects forms and their inputs; the login form is the one with a password input."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[dict[str, str], dict[str, str], bool]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.forms.append((attributes, {}, False))
        elif tag == "input" and self.forms and attributes.get("name"):
            form_attrs, fields, has_password = self.forms[-1]
            fields[attributes["name"]] = attributes.get("value", "")
            is_password = attributes.get("type", "").lower() == "password"
            self.forms[-1] = (form_attrs, fields, has_password or is_password)


def parse_login_form(html: str, page_url: str) -> LoginForm:
    parser = _FormParser()
    parser.feed(html)
    for attributes, fields, has_password in parser.forms:
        if has_password:
            action = urljoin(page_url, attributes.get("action") or page_url)
            return LoginForm(action, (attributes.get("method") or "post").upper(), fields)
    raise SignInFailed(
        "login_form_missing", "the IdP's page has no login form with a password field"
    )


def _drive_login(
    http: httpx.Client, url: str, redirect_uri: str, state: str, username: str, password: str
) -> str:
    page = _get_following_idp_redirects(http, url, redirect_uri)
    if isinstance(
        page, str
    ):  # already signed in (session cookie): the IdP redirected straight back
        return _code_from_location(page, state)
    if page.status_code != 200:
        raise SignInFailed(*_error_of(page), page.status_code)
    form = parse_login_form(page.text, str(page.url))
    form.fields.update({"username": username, "password": password})
    answer = http.request(form.method, form.action, data=form.fields)
    location = answer.headers.get("location", "")
    if answer.is_redirect and location.startswith(_redirect_base(redirect_uri)):
        return _code_from_location(location, state)
    if answer.status_code == 400 and COOKIE_NOT_FOUND_MARKER in answer.text.lower():
        raise SignInFailed(
            "cookie_not_found",
            "the IdP did not get back the session cookie it set with the login page "
            f"(AUTH_SESSION_ID, posted to {form.action}); the credentials were never checked. "
            "Keycloak marks it Secure even on http://127.0.0.1: the HTTP client must keep Secure "
            "cookies for loopback hosts, as browsers do (lab.agent.signin.browser_cookie_jar)",
            answer.status_code,
        )
    if answer.status_code in (200, 400, 401):
        raise SignInFailed("login_failed", _login_error_text(answer.text), answer.status_code)
    raise SignInFailed(*_error_of(answer), answer.status_code)


def _get_following_idp_redirects(
    http: httpx.Client, url: str, redirect_uri: str
) -> httpx.Response | str:
    """GET, following redirects at the IdP; a redirect to redirect_uri comes back as a str."""
    for _ in range(5):
        response = http.get(url)
        location = response.headers.get("location")
        if not (response.is_redirect and location):
            return response
        target = urljoin(str(response.url), location)
        if target.startswith(_redirect_base(redirect_uri)):
            return target
        url = target
    raise SignInFailed("too_many_redirects", "the IdP redirected more than 5 times")


def _code_from_location(location: str, state: str) -> str:
    return _code_from_params(parse_qs(urlsplit(location).query), state)


def _code_from_params(params: dict[str, list[str]], state: str) -> str:
    if "error" in params:  # RFC 6749 §4.1.2.1: the error comes back on the redirect
        raise SignInFailed(params["error"][0], params.get("error_description", [""])[0])
    # RFC 6749 §10.12: the state must round-trip unchanged (CSRF defence).
    if params.get("state", [""])[0] != state:
        raise SignInFailed("state_mismatch", "the redirect carried a different state")
    code = params.get("code", [""])[0]
    if not code:
        raise SignInFailed("code_missing", "the redirect carried no code")
    return code


def _redirect_base(redirect_uri: str) -> str:
    return redirect_uri.split("?", 1)[0]


def _login_error_text(html: str) -> str:
    """Keycloak shows 'Invalid username or password.' in the page; keep it short and plain."""
    marker = "Invalid username or password"
    if marker.lower() in html.lower():
        return marker + "."
    return "the IdP showed the login form again (credentials refused)"


def _error_of(response: httpx.Response) -> tuple[str, str]:
    try:
        body = response.json()
    except ValueError:
        return "unexpected_response", f"HTTP {response.status_code} from {response.url}"
    if isinstance(body, dict):
        return str(body.get("error", "unexpected_response")), str(body.get("error_description", ""))
    return "unexpected_response", f"HTTP {response.status_code}"


def _token_request(http: httpx.Client, issuer: str, form: dict[str, str], method: str) -> SignIn:
    response = http.post(token_endpoint(issuer), data=form)
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    if response.status_code == 200 and body.get("id_token"):
        return SignIn(
            body["id_token"],
            body.get("access_token"),
            body.get("refresh_token"),
            method,
            200,
            None,
            None,
            body,
        )
    return SignIn(
        None,
        None,
        None,
        method,
        response.status_code,
        str(body.get("error", "unexpected_response")),
        str(body.get("error_description", "")),
        body,
    )


# -- loopback listener for --browser ----------------------------------------------------------


def _loopback_redirect(uris: list[str]) -> str:
    """Pick the realm's loopback redirect URI; a wildcard path becomes /callback."""
    for uri in uris:
        parts = urlsplit(uri)
        if parts.hostname in ("127.0.0.1", "localhost", "::1") and parts.scheme == "http":
            return uri.replace("/*", "/callback") if uri.endswith("/*") else uri
    return DEFAULT_REDIRECT_URI


#: How long the listener waits for a connection's request line and headers: a connection opened
#: and left idle (a browser's preconnect, any local process) is dropped, never waited on.
CALLBACK_READ_TIMEOUT_S = 10.0


class _CallbackListener:
    """One-shot HTTP listener on loopback: waits for the IdP's redirect, answers a short page.

    Each connection is read in its own thread with a timeout, so an idle one holds neither the
    redirect nor ``shutdown()``; only a redirect carrying the sign-in's ``state`` (RFC 6749
    §10.12) ends the wait; any other GET of the path (a web page's ``<img>``, a local process)
    is answered 400 and the listener keeps waiting.
    """

    def __init__(self, host: str, redirect_uri: str, state: str) -> None:
        parts = urlsplit(redirect_uri)
        self.path = parts.path or "/"
        received: dict[str, list[str]] = {}
        done = threading.Event()
        # Connections are handled in threads: two redirects with the right state could both
        # pass the check before either set ``done``. Check, keep and set under one lock.
        first = threading.Lock()
        expected_path = self.path

        class Handler(http.server.BaseHTTPRequestHandler):
            timeout = CALLBACK_READ_TIMEOUT_S

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                url = urlsplit(self.path)
                if url.path != expected_path:
                    self.send_error(404)
                    return
                params = parse_qs(url.query)
                sent = params.get("state", [""])[0].encode("utf-8", "replace")
                with first:
                    ours = not done.is_set() and hmac.compare_digest(sent, state.encode())
                    if ours:
                        received.update(params)
                        # Before the page: a browser that drops the connection meanwhile
                        # must not leave wait() to its timeout.
                        done.set()
                if not ours:
                    self.send_error(400, "not the redirect this sign-in waits for")
                    return
                self.send_response(200)
                self.send_header("content-type", "text/html; charset=utf-8")
                self.end_headers()
                self.wfile.write(b"<!doctype html><p>Signed in. You can close this window.</p>")

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return  # components never print

        # RFC 8252 §7.3: the port may vary for loopback redirects; use the registered one if any.
        self.server = http.server.ThreadingHTTPServer((host, parts.port or 0), Handler)
        self.server.daemon_threads = True
        port = self.server.server_address[1]
        self.redirect_uri = f"http://{host}:{port}{self.path}"
        self._received = received
        self._done = done
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> _CallbackListener:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait(self, timeout_s: float) -> dict[str, list[str]] | None:
        if not self._done.wait(timeout_s):
            return None
        return dict(self._received)
