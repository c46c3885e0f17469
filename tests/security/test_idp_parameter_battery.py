"""Hostile parameters at the IdP with genuine credentials: authorize, the login form, the token
endpoint (authorization_code with PKCE, refresh_token, password).

Each request is the genuine one with exactly one parameter given a hostile value (or left out).
What the IdP answers must be:

* at the authorization endpoint: the login form (200), Keycloak's HTML error page (400) when the
  client or its redirect URI is not verified - then with no ``Location`` at all (RFC 6749
  §4.1.2.1: never redirect to an unverified URI) - or a 302 to the *registered* redirect URI
  carrying an RFC 6749 §4.1.2.1 ``error`` and the request's ``state``;
* at the login form: the form again (200), the error page (400), or a code sent to the redirect
  URI the authorization request verified - and a code only for the real user and password;
* at the token endpoint (and its RFC 8693 ID-JAG exchange): a JSON OAuth error (RFC 6749
  §5.2) with a 4xx status, or tokens whose ``azp`` is the authenticated client and whose scope
  is no wider than the request asked;
* never a 5xx, a stack trace or a redirect anywhere else.

The realm is the shipped one plus ``exact.client`` (one exact redirect URI, so path suffixes,
added queries and case changes have something to differ from) and ``other.client`` (to check a
code or refresh token never serves another client). Brute-force protection is off here: the
password grant's throttle has its own tests (``test_idp_grants.py``).

Shown able to fail (each by hand, then restored):

* on the code before this battery, ``test_authorize_never_redirects_to_an_unregistered_uri``
  failed for both clients: redirect URIs with a port out of range (``:99999``, ``:-1``), a
  non-numeric port, a broken IPv6 literal or a bracketed IPv4 address answered HTTP 500
  (``urlsplit().port`` raised inside ``redirect_uri_allowed``), and ``http://evil@127.0.0.1:…``
  and a URI carrying CR LF were accepted (the login form was shown). Fixed in
  ``lab/idp/clients.py``;
* with the authorization_code grant's ``redirect_uri`` comparison disabled,
  ``test_token_code_grant_one_hostile_parameter[redirect_uri]`` failed ("the hostile value was
  accepted" for every value);
* with the grant's ``pkce.verify`` call disabled, ``[code_verifier]`` failed;
* before the fix in ``lab/idp/id_jag.py``, ``test_token_id_jag_exchange_one_hostile_parameter``
  failed for ``audience`` and ``resource``: ``…/zts/v1/`` and ``…/mcp//`` were accepted (right)
  but the ID-JAG carried them as spelled, not as configured.
"""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from lab.agent.signin import IdpClient, sign_in_with_code, sign_in_with_password
from lab.config import PORTS, Settings
from lab.idp.app import DEFAULT_REALM_FILE, create_app
from lab.oauth.jose import unverified_claims
from lab.oauth.tokens import (
    GRANT_TOKEN_EXCHANGE,
    TOKEN_TYPE_ACCESS_TOKEN,
    TOKEN_TYPE_ID_JAG,
    TOKEN_TYPE_ID_TOKEN,
)
from lab.serving import bind_socket, serve_in_thread
from tests.idp.helpers import (
    CLIENT_ID,
    CLIENT_SECRET,
    REDIRECT_URI,
    Idp,
    Pkce,
    auth_params,
    browser_client,
    form_action,
)
from tests.idp.username_cases import CANONICAL, USERNAME_CASES, case_id
from tests.security.battery import LEAKS, TOKEN_ERRORS, answer_problems

EXACT_CLIENT = "exact.client"
EXACT_SECRET = "exact-secret"
OTHER_CLIENT = "other.client"
OTHER_SECRET = "other-secret"

#: RFC 6749 §4.1.2.1 (authorization response) and §5.2 (token endpoint) error codes, plus OIDC
#: Core §3.1.2.6 ``login_required``.
AUTHORIZE_ERRORS = {
    "invalid_request",
    "unauthorized_client",
    "access_denied",
    "unsupported_response_type",
    "invalid_scope",
    "server_error",
    "temporarily_unavailable",
    "login_required",
}

HOSTILE_TEXT: list[str | None] = [
    None,  # left out
    "",
    " ",
    "\x00",
    "a\x00b",
    "x" * 100_000,
    "é",
    "\u212a",
    "\u0430\u0440\u0456",
    "\r\nSet-Cookie: x=1",
    "<script>alert(1)</script>",
    "' OR '1'='1",
    "../../../etc/passwd",
    "%00",
    "%2e%2e%2f",
    "*",
]

# ------------------------------------------------------------------------------ the realm


def battery_realm(path: Path) -> Path:
    document = json.loads(DEFAULT_REALM_FILE.read_text())
    agent = next(c for c in document["clients"] if c["clientId"] == CLIENT_ID)
    exact = copy.deepcopy(agent)
    exact.update(clientId=EXACT_CLIENT, secret=EXACT_SECRET, redirectUris=[REDIRECT_URI])
    other = copy.deepcopy(agent)
    other.update(clientId=OTHER_CLIENT, secret=OTHER_SECRET)
    document["clients"] += [exact, other]
    document["bruteForceProtected"] = False
    path.write_text(json.dumps(document))
    return path


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Idp]:
    home = tmp_path_factory.mktemp("idp-battery")
    realm = battery_realm(home / "realm.json")
    socks = {name: bind_socket("127.0.0.1", 0) for name in PORTS}
    ports = {name: sock.getsockname()[1] for name, sock in socks.items()}
    settings = replace(Settings(), home=home / "home", ports=ports, policy_refresh_s=0.0)
    with contextlib.ExitStack() as stack:
        for name, sock in socks.items():
            if name == "idp":
                stack.enter_context(serve_in_thread(create_app(settings, realm), sock))
            else:
                stack.callback(sock.close)
        endpoints = settings.endpoints
        yield Idp(endpoints.idp_issuer.rsplit("/realms/", 1)[0], endpoints.idp_issuer, settings)


# ------------------------------------------------------------------------------ helpers


def authorize(idp: Idp, params: dict[str, str | None]) -> httpx.Response:
    sent = {k: v for k, v in params.items() if v is not None}
    with browser_client() as browser:
        return browser.get(idp.auth_url, params=sent)


def location_problems(response: httpx.Response, allowed: str, described: str) -> list[str]:
    """A 302 must go to ``allowed`` exactly (with its query parameters appended)."""
    target = response.headers.get("location", "")
    base = target.split("?", 1)[0].split("#", 1)[0]
    if base != allowed.split("?", 1)[0]:
        return [f"{described}: redirected to {target[:200]!r}, not to {allowed!r}"]
    return []


def authorize_problems(
    response: httpx.Response, redirect_uri: str, state: str | None, described: str
) -> list[str]:
    if response.status_code >= 500:
        return [f"{described}: HTTP {response.status_code} {response.text[:200]}"]
    if LEAKS.search(response.text):
        return [f"{described}: leaks {response.text[:200]}"]
    if response.status_code == 200:
        return [] if 'id="kc-form-login"' in response.text else [f"{described}: 200, no form"]
    if response.status_code == 413:
        # A body over the size limit (a form POST): refused before it is read, as JSON.
        return (
            []
            if _json(response).get("error") == "invalid_request"
            else [f"{described}: 413 without an OAuth error"]
        )
    if response.status_code == 400:
        if "location" in response.headers:
            return [f"{described}: a 400 with a Location"]
        return (
            []
            if "text/html" in response.headers.get("content-type", "")
            else [f"{described}: 400 that is not the HTML error page"]
        )
    if response.status_code == 302:
        found = location_problems(response, redirect_uri, described)
        params = httpx.URL(response.headers["location"]).params
        if params.get("error") not in AUTHORIZE_ERRORS:
            found.append(f"{described}: redirect without an RFC 6749 error: {params}")
        if "code" in params:
            found.append(f"{described}: a code without a login")
        if state and params.get("state") != state:
            found.append(f"{described}: state not returned as sent")
        return found
    return [f"{described}: unexpected HTTP {response.status_code} {response.text[:200]}"]


def token_problems(
    response: httpx.Response, client: str, widest_scope: set[str], described: str
) -> list[str]:
    found, body = answer_problems(response, TOKEN_ERRORS, described)
    if body is None:
        return found
    claims = unverified_claims(body["access_token"])
    found = []
    if claims.get("azp") != client:
        found.append(f"{described}: token for {claims.get('azp')!r}, not {client!r}")
    scope = set(str(claims.get("scope", "")).split())
    if not scope <= widest_scope:
        found.append(f"{described}: scope {sorted(scope - widest_scope)} beyond what was asked")
    return found


def token(
    idp: Idp, form: dict[str, str | None], auth: tuple[str, str] = (CLIENT_ID, CLIENT_SECRET)
) -> httpx.Response:
    sent = {k: v for k, v in form.items() if v is not None}
    return httpx.post(idp.token_url, data=sent, auth=auth, timeout=30)


#: What ``scope=openid`` gives the agent: its default scopes that show in a token.
GENUINE_SCOPE = {"openid", "profile", "email"}


def fresh_code(idp: Idp, client: str = CLIENT_ID) -> tuple[str, Pkce]:
    pkce = Pkce.new()
    with browser_client() as browser:
        page = browser.get(idp.auth_url, params=auth_params(pkce, client_id=client))
        assert page.status_code == 200, page.text
        done = browser.post(
            form_action(page), data={"username": "idjag-learner", "password": "password"}
        )
    assert done.status_code == 302, done.text
    return httpx.URL(done.headers["location"]).params["code"], pkce


# ------------------------------------------------------------------------------ authorize

#: Redirect URIs the agent (``http://127.0.0.1/*``, ``http://localhost/*``) must not get.
REFUSED_FOR_AGENT = [
    "http://evil.example/callback",
    "https://127.0.0.1:49152/callback",  # another scheme
    "http://127.0.0.2:49152/callback",  # loopback, but not a registered host
    "http://127.0.0.1.evil.example/callback",
    "http://localhost.evil.example:49152/callback",
    "http://127.0.0.1:49152@evil.example/callback",
    "http://evil@127.0.0.1:49152/callback",  # userinfo: refused outright
    "http://127.0.0.1:49152\\@evil.example/callback",
    "http://127.0.0.1\\.evil.example/callback",
    "http:\\\\evil.example\\callback",
    "http://127.0.0.1:49152/callback#frag",
    "http://127.0.0.1%2eevil.example/callback",
    "http://127.0.0.1%00.evil.example/callback",
    "http://127.0.0.1:99999/callback",  # port out of range
    "http://127.0.0.1:-1/callback",
    "http://127.0.0.1:abc/callback",
    "http://127.0.0.1:49152:1/callback",
    "http://[::1/callback",  # broken IPv6 literal
    "http://[127.0.0.1]/callback",
    "//evil.example/callback",
    "/callback",
    "callback",
    "javascript:alert(1)//http://127.0.0.1/",
    "data:text/html,<script>alert(1)</script>",
    "http:evil.example",
    "http://",
    " http://evil.example/",
    "http://evil.example/http://127.0.0.1/callback",
    "HTTP://EVIL.EXAMPLE/",
    "http://127.0.0.1:49152/callback\r\nLocation: http://evil.example/",
    "\x00",
    "x" * 10_000,
]
#: Redirect URIs that exact.client (registered: exactly ``REDIRECT_URI``) must not get.
REFUSED_FOR_EXACT = [
    *REFUSED_FOR_AGENT,
    "http://127.0.0.1:49153/callback",  # another port: the registered URI names one
    "http://127.0.0.1:49152/callback/x",
    "http://127.0.0.1:49152/callbackx",
    "http://127.0.0.1:49152/callback/../x",
    "http://127.0.0.1:49152/callback?x=1",
    "http://127.0.0.1:49152/callback?",
    "http://127.0.0.1:49152/Callback",
    "http://127.0.0.1:49152/%63allback",
    "http://127.0.0.1:49152/callback%2f..%2fx",
    "http://127.0.0.1:49152/callback/",
    "http://localhost:49152/callback",
]
#: RFC 8252 §7.3: a loopback redirect URI registered without a port admits any port.
ACCEPTED_FOR_AGENT = [
    REDIRECT_URI,
    "http://127.0.0.1:1/callback",
    "http://localhost:49152/other/path?x=1",
]


@pytest.mark.parametrize(
    ("client", "uris"),
    [(CLIENT_ID, REFUSED_FOR_AGENT), (EXACT_CLIENT, REFUSED_FOR_EXACT)],
    ids=["wildcard-client", "exact-client"],
)
def test_authorize_never_redirects_to_an_unregistered_uri(
    idp: Idp, client: str, uris: list[str]
) -> None:
    found: list[str] = []
    for uri in uris:
        for method in ("GET", "POST"):
            params = auth_params(Pkce.new(), client_id=client, redirect_uri=uri)
            if method == "GET":
                response = authorize(idp, dict(params))
            else:
                response = httpx.post(idp.auth_url, data=params)
            described = f"{method} {uri[:60]!r}"
            if response.status_code != 400 or "location" in response.headers:
                found.append(
                    f"{described}: HTTP {response.status_code} "
                    f"{response.headers.get('location', response.text[:100])!r}"
                )
            elif "Invalid parameter: redirect_uri" not in response.text:
                found.append(f"{described}: not the redirect_uri error page")
    assert not found, "\n".join(found)


def test_authorize_accepts_the_registered_loopback_uris(idp: Idp) -> None:
    """The control: the refusals above are the redirect check's doing."""
    for uri in ACCEPTED_FOR_AGENT:
        response = authorize(idp, dict(auth_params(Pkce.new(), redirect_uri=uri)))
        assert response.status_code == 200 and 'id="kc-form-login"' in response.text, uri
    exact = authorize(idp, dict(auth_params(Pkce.new(), client_id=EXACT_CLIENT)))
    assert exact.status_code == 200


AUTHORIZE_VALUES: dict[str, list[str | None]] = {
    "response_type": [*HOSTILE_TEXT, "token", "id_token", "code id_token", "CODE", "code code"],
    "scope": [*HOSTILE_TEXT, "openid evil", "openid openid", "OPENID", "openid\tprofile"],
    "state": [*HOSTILE_TEXT],
    "nonce": [*HOSTILE_TEXT],
    "code_challenge": [*HOSTILE_TEXT, "a" * 42, "a" * 129, "a" * 43 + "=", "+" * 43],
    "code_challenge_method": [*HOSTILE_TEXT, "plain", "s256", "S512", "S256 ", "none"],
    "response_mode": [*HOSTILE_TEXT, "form_post", "web_message", "QUERY"],
    "prompt": [*HOSTILE_TEXT, "none", "login consent"],
    "client_id": [
        *HOSTILE_TEXT,
        "AI.AGENT",
        "ai.agent ",
        " ai.agent",
        "ai.agen",
        "ai.agent\x00",
        "ai\u2024agent",  # one dot leader
        "\u0430i.agent",  # Cyrillic a
        "ai.agent%00",
        "ai%2eagent",
    ],
}


@pytest.mark.parametrize("parameter", list(AUTHORIZE_VALUES))
def test_authorize_one_hostile_parameter(idp: Idp, parameter: str) -> None:
    found: list[str] = []
    for value in AUTHORIZE_VALUES[parameter]:
        if value is not None and len(value) > 8_000:
            value = value[:8_000]  # a request line has a size limit; the POST below sends it all
        params: dict[str, str | None] = {**auth_params(Pkce.new()), parameter: value}
        described = f"{parameter}={str(value)[:40]!r}"
        response = authorize(idp, params)
        state = params.get("state")
        found += authorize_problems(response, REDIRECT_URI, state, described)
        if parameter == "client_id" and value != CLIENT_ID and response.status_code != 400:
            found.append(f"{described}: a look-alike client got HTTP {response.status_code}")
    # The same values, whole, as a form POST (OIDC Core §3.1.2.1).
    for value in AUTHORIZE_VALUES[parameter]:
        params = {**auth_params(Pkce.new()), parameter: value}
        response = httpx.post(idp.auth_url, data={k: v for k, v in params.items() if v})
        found += authorize_problems(
            response, REDIRECT_URI, params.get("state"), f"POST {parameter}={str(value)[:40]!r}"
        )
    assert not found, "\n".join(found)


@pytest.mark.parametrize("parameter", ["client_id", "redirect_uri", "scope", "state"])
def test_authorize_refuses_a_parameter_in_both_the_query_and_the_form(
    idp: Idp, parameter: str
) -> None:
    """RFC 6749 §3.1: a parameter included more than once - in the query and the form body of
    one POST too - is refused; the form no longer silently overrides the query (the query's
    ``redirect_uri`` would be what a proxy or a log saw, the form's what the IdP used)."""
    params = auth_params(Pkce.new())
    query = {parameter: params[parameter]}
    form = {**params, parameter: "other" if parameter != "redirect_uri" else REDIRECT_URI + "x"}
    response = httpx.post(idp.auth_url, params=query, data=form)
    assert response.status_code == 400, (response.status_code, response.text[:200])
    assert "location" not in response.headers
    assert "Invalid Request" in response.text
    alone = httpx.post(idp.auth_url, data=params)
    assert alone.status_code in (200, 302), alone.text[:200]  # the control: the form alone


# ------------------------------------------------------------------------------ login form

#: Usernames real Keycloak maps onto the learner (tests/idp/username_cases.py, shown on real
#: Keycloak): its login form trims as Java's String.trim() does, its password grant trims
#: nothing, and both match usernames case-insensitively.
LEGITIMATE_AT_THE_FORM = {typed for typed, by_form, _ in USERNAME_CASES if by_form}
LEGITIMATE_AT_THE_PASSWORD_GRANT = {typed for typed, _, by_grant in USERNAME_CASES if by_grant}

LOGIN_VALUES: dict[str, list[str | None]] = {
    "username": [
        *HOSTILE_TEXT,
        *(typed for typed, _, _ in USERNAME_CASES),
        "\u0456djag-learner",  # Cyrillic i
        "idjag-other",
    ],
    "password": [*HOSTILE_TEXT, "PASSWORD", "password ", "password\x00"],
}


@pytest.mark.parametrize("field", list(LOGIN_VALUES))
def test_login_form_one_hostile_field(idp: Idp, field: str) -> None:
    found: list[str] = []
    for value in LOGIN_VALUES[field]:
        form = {"username": "idjag-learner", "password": "password", field: value}
        described = f"{field}={str(value)[:40]!r}"
        with browser_client() as browser:
            page = browser.get(idp.auth_url, params=auth_params(Pkce.new()))
            response = browser.post(
                form_action(page), data={k: v for k, v in form.items() if v is not None}
            )
        if response.status_code >= 500 or LEAKS.search(response.text):
            found.append(f"{described}: HTTP {response.status_code} {response.text[:200]}")
            continue
        genuine = field == "username" and value in (*LEGITIMATE_AT_THE_FORM, "idjag-other")
        if response.status_code == 302:
            found += location_problems(response, REDIRECT_URI, described)
            if not genuine:
                found.append(f"{described}: signed in")
        elif genuine:
            found.append(f"{described}: the real user was refused ({response.status_code})")
        elif response.status_code not in (200, 400, 413):
            found.append(f"{described}: HTTP {response.status_code}")
    assert not found, "\n".join(found)


@pytest.mark.parametrize(
    ("typed", "by_form", "by_password"), USERNAME_CASES, ids=[case_id(c[0]) for c in USERNAME_CASES]
)
def test_a_typed_username_signs_in_as_keycloak_does(
    idp: Idp, typed: str, by_form: bool, by_password: bool
) -> None:
    """The rows real Keycloak answered (tests/keycloak/test_usernames_against_keycloak.py): the
    login form trims as Java's String.trim() does, the password grant trims nothing, and the
    ID token names the stored user (``preferred_username``), never the typed spelling."""
    client = IdpClient.from_realm_file()
    for method, accepted in (("code", by_form), ("password", by_password)):
        with browser_client() as browser:
            sign_in = sign_in_with_code if method == "code" else sign_in_with_password
            result = sign_in(browser, idp.issuer, client, typed, "password")
        assert bool(result.id_token) == accepted, (method, result.error, result.error_description)
        if accepted:
            claims = unverified_claims(result.id_token or "")
            assert claims["preferred_username"] == CANONICAL, (method, claims)
        elif method == "password":
            assert (result.status, result.error) == (400, "invalid_grant")
        else:
            assert result.error == "login_failed", result.error


@pytest.mark.parametrize(
    "tab_id", ["", "\x00", "x" * 5_000, "../x", "%00", "1' OR '1'='1", "\u212a"]
)
def test_login_form_with_a_hostile_tab_id_is_the_error_page(idp: Idp, tab_id: str) -> None:
    with browser_client() as browser:
        browser.get(idp.auth_url, params=auth_params(Pkce.new()))
        response = browser.post(
            f"{idp.issuer}/login-actions/authenticate",
            params={"client_id": CLIENT_ID, "tab_id": tab_id},
            data={"username": "idjag-learner", "password": "password"},
        )
    assert response.status_code == 400, response.text[:200]
    assert "location" not in response.headers
    assert not LEAKS.search(response.text)


# ------------------------------------------------------------------------------ token endpoint


def code_form(code: str, pkce: Pkce) -> dict[str, str | None]:
    return {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": pkce.verifier,
    }


CODE_VALUES: dict[str, list[str | None]] = {
    "grant_type": [*HOSTILE_TEXT, "AUTHORIZATION_CODE", "authorization_code ", "implicit"],
    "code": [*HOSTILE_TEXT],
    "redirect_uri": [
        *HOSTILE_TEXT,
        "http://127.0.0.1:49153/callback",
        "http://127.0.0.1:49152/callback/",
        "http://127.0.0.1:49152/callback?x=1",
        "http://127.0.0.1:49152/Callback",
        "http://localhost:49152/callback",
        "http://127.0.0.1:99999/callback",
        "http://[::1/callback",
    ],
    "code_verifier": [
        *HOSTILE_TEXT,
        "a" * 42,
        "a" * 129,
        "a" * 43,  # well-formed, wrong
        "a" * 42 + "+",
        "a" * 42 + "\u00e9",
        "PLAIN-CHALLENGE",  # replaced by the code's own challenge: plain is not S256
    ],
    "scope": [*HOSTILE_TEXT, "openid address phone offline_access"],
}


@pytest.mark.parametrize("parameter", list(CODE_VALUES))
def test_token_code_grant_one_hostile_parameter(idp: Idp, parameter: str) -> None:
    found: list[str] = []
    for value in CODE_VALUES[parameter]:
        code, pkce = fresh_code(idp)
        if value == "PLAIN-CHALLENGE":
            value = pkce.challenge
        form = {**code_form(code, pkce), parameter: value}
        described = f"{parameter}={str(value)[:40]!r}"
        response = token(idp, form)
        # The code grant's scope is the authorization request's (openid): a scope here is ignored.
        found += token_problems(response, CLIENT_ID, GENUINE_SCOPE, described)
        if parameter != "scope" and response.status_code == 200:
            found.append(f"{described}: the hostile value was accepted")
    assert not found, "\n".join(found)


def test_token_code_grant_control_and_client_binding(idp: Idp) -> None:
    code, pkce = fresh_code(idp)
    genuine = token(idp, code_form(code, pkce))
    assert genuine.status_code == 200, genuine.text
    assert not token_problems(genuine, CLIENT_ID, GENUINE_SCOPE, "genuine")
    for client, secret in [
        (OTHER_CLIENT, OTHER_SECRET),
        (EXACT_CLIENT, EXACT_SECRET),
    ]:
        code, pkce = fresh_code(idp)
        stolen = token(idp, code_form(code, pkce), auth=(client, secret))
        assert (stolen.status_code, stolen.json()["error"]) == (400, "invalid_grant"), client


CLIENT_LOOKALIKES = [
    ("AI.AGENT", CLIENT_SECRET),
    ("ai.agent ", CLIENT_SECRET),
    ("ai.agent\x00", CLIENT_SECRET),
    ("\u0430i.agent", CLIENT_SECRET),
    ("ai.agen", CLIENT_SECRET),
    ("", CLIENT_SECRET),
    (CLIENT_ID, ""),
    (CLIENT_ID, CLIENT_SECRET + "x"),
    (CLIENT_ID, CLIENT_SECRET.upper()),
    (CLIENT_ID, CLIENT_SECRET + "\x00"),
    (CLIENT_ID, OTHER_SECRET),
    (OTHER_CLIENT, CLIENT_SECRET),
    (CLIENT_ID, "x" * 10_000),  # in the Authorization header: within the header size limit
]


@pytest.mark.parametrize("grant", ["authorization_code", "password", "refresh_token"])
def test_token_client_look_alikes_are_invalid_client(idp: Idp, grant: str) -> None:
    found: list[str] = []
    for client, secret in CLIENT_LOOKALIKES:
        if grant == "authorization_code":
            code, pkce = fresh_code(idp)
            form = code_form(code, pkce)
        elif grant == "password":
            form = password_form()
        else:
            form = {"grant_type": "refresh_token", "refresh_token": refresh_token(idp)}
        response = token(idp, form, auth=(client, secret))
        described = f"{grant} as {client[:20]!r}/{secret[:10]!r}"
        if response.status_code >= 500 or response.status_code == 200:
            found.append(f"{described}: HTTP {response.status_code} {response.text[:200]}")
        elif _json(response).get("error") not in (
            "invalid_client",
            "unauthorized_client",
            "invalid_grant",
            "invalid_request",
        ):
            found.append(f"{described}: {response.text[:200]}")
    assert not found, "\n".join(found)


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def password_form(**changes: str | None) -> dict[str, str | None]:
    return {
        "grant_type": "password",
        "username": "idjag-learner",
        "password": "password",
        "scope": "openid",
        **changes,
    }


PASSWORD_VALUES: dict[str, list[str | None]] = {
    "username": [*LOGIN_VALUES["username"]],
    "password": [*LOGIN_VALUES["password"]],
    "scope": [
        *HOSTILE_TEXT,
        "openid evil",
        "openid address",  # an optional scope: may be granted, since it is asked
        "OPENID",
        "openid\x00profile",
    ],
}


@pytest.mark.parametrize("parameter", list(PASSWORD_VALUES))
def test_token_password_grant_one_hostile_parameter(idp: Idp, parameter: str) -> None:
    found: list[str] = []
    for value in PASSWORD_VALUES[parameter]:
        response = token(idp, password_form(**{parameter: value}))
        described = f"{parameter}={str(value)[:40]!r}"
        asked = set((value or "").split()) if parameter == "scope" else set()
        widest = GENUINE_SCOPE | asked | ({"profile", "email"} if parameter == "scope" else set())
        found += token_problems(response, CLIENT_ID, widest, described)
        # Keycloak refuses an empty `scope=` as an unknown (empty) scope: tests/keycloak shows it.
        genuine = (
            parameter == "username" and value in (*LEGITIMATE_AT_THE_PASSWORD_GRANT, "idjag-other")
        ) or (parameter == "scope" and value in (None, " ", "openid address"))
        if response.status_code == 200 and not genuine:
            found.append(f"{described}: accepted")
        elif response.status_code != 200 and genuine:
            found.append(f"{described}: the real user was refused ({response.status_code})")
        if response.status_code == 200 and parameter == "username":
            # The stored name, never what was typed (Keycloak: preferred_username).
            stored = "idjag-other" if value == "idjag-other" else CANONICAL
            sub = unverified_claims(response.json()["access_token"]).get("preferred_username")
            if sub != stored:
                found.append(f"{described}: signed in as {sub!r}")
    assert not found, "\n".join(found)


def refresh_token(idp: Idp) -> str:
    response = token(idp, password_form())
    assert response.status_code == 200, response.text
    return str(response.json()["refresh_token"])


REFRESH_VALUES: dict[str, list[str | None]] = {
    "refresh_token": [*HOSTILE_TEXT, "x.y.z", "eyJhbGciOiJub25lIn0.e30."],
    "scope": [
        *HOSTILE_TEXT,
        "openid address",  # not granted originally: must be refused
        "openid offline_access",
        "openid profile",  # a narrowing: allowed
    ],
}


@pytest.mark.parametrize("parameter", list(REFRESH_VALUES))
def test_token_refresh_grant_one_hostile_parameter(idp: Idp, parameter: str) -> None:
    found: list[str] = []
    for value in REFRESH_VALUES[parameter]:
        form = {
            "grant_type": "refresh_token",
            "refresh_token": refresh_token(idp),
            parameter: value,
        }
        response = token(idp, form)
        described = f"{parameter}={str(value)[:40]!r}"
        found += token_problems(response, CLIENT_ID, GENUINE_SCOPE, described)
        narrowing = parameter == "scope" and value in (None, "", " ", "openid profile")
        if response.status_code == 200 and not narrowing:
            found.append(f"{described}: accepted")
    # Another client's refresh token is refused, and the agent's is not another client's.
    stolen = token(
        idp,
        {"grant_type": "refresh_token", "refresh_token": refresh_token(idp)},
        auth=(OTHER_CLIENT, OTHER_SECRET),
    )
    found += token_problems(stolen, OTHER_CLIENT, set(), "another client's refresh token")
    if stolen.status_code == 200:
        found.append("another client's refresh token was accepted")
    assert not found, "\n".join(found)


def test_the_token_endpoint_refuses_hostile_bodies_precisely(idp: Idp) -> None:
    """Bodies, not parameters: repeated parameters, wrong content types, not UTF-8."""
    found: list[str] = []
    bodies: list[tuple[str, bytes]] = [
        ("application/x-www-form-urlencoded", b"grant_type=password&grant_type=refresh_token"),
        ("application/x-www-form-urlencoded", b"grant_type=password&username=\xff&password=x"),
        ("application/json", b'{"grant_type":"password"}'),
        ("text/plain", b"grant_type=password"),
        ("application/x-www-form-urlencoded", b"grant_type=" + b"a" * 2_000_000),
        ("application/x-www-form-urlencoded", b"%%%&&&==="),
    ]
    for content_type, body in bodies:
        response = httpx.post(
            idp.token_url,
            content=body,
            headers={"Content-Type": content_type},
            auth=(CLIENT_ID, CLIENT_SECRET),
            timeout=30,
        )
        found += token_problems(response, CLIENT_ID, set(), f"{content_type} {body[:40]!r}")
        if response.status_code == 200:
            found.append(f"{body[:40]!r}: accepted")
    assert not found, "\n".join(found)


def test_the_battery_hosts_are_what_the_redirect_check_reads() -> None:
    """The wildcard client's refused list holds no URI the RFC 8252 loopback rule admits."""
    for uri in REFUSED_FOR_AGENT:
        with contextlib.suppress(ValueError):
            parts = urlsplit(uri)
            assert not (
                parts.scheme == "http"
                and parts.hostname in ("127.0.0.1", "localhost")
                and "@" not in parts.netloc
                and "\\" not in uri
                and not parts.fragment
                and parts.port
                and uri.isascii()
                and "\r" not in uri
                and "%" not in parts.netloc
            ), uri


# ------------------------------------------------------------------------------ ID-JAG (RFC 8693)

JAG_SCOPE = "api:role.docs-getter mcp:role.mcp-accessor"


def id_token(idp: Idp) -> str:
    response = token(idp, password_form())
    assert response.status_code == 200, response.text
    return str(response.json()["id_token"])


def jag_form(idp: Idp, subject_token: str) -> dict[str, str | None]:
    endpoints = idp.settings.endpoints
    return {
        "grant_type": GRANT_TOKEN_EXCHANGE,
        "requested_token_type": TOKEN_TYPE_ID_JAG,
        "subject_token": subject_token,
        "subject_token_type": TOKEN_TYPE_ID_TOKEN,
        "audience": endpoints.zts,
        "resource": endpoints.mcp,
        "scope": JAG_SCOPE,
    }


def jag_values(idp: Idp) -> dict[str, list[str | None]]:
    zts, mcp = idp.settings.endpoints.zts, idp.settings.endpoints.mcp
    url_variants = [
        "{}/",
        "{}//",
        "{}/x",
        "{}?x=1",
        "{}#x",
        "{}%2f",
        "{} ",
        " {}",
    ]
    return {
        "requested_token_type": [*HOSTILE_TEXT, TOKEN_TYPE_ACCESS_TOKEN, TOKEN_TYPE_ID_JAG.upper()],
        "subject_token": [*HOSTILE_TEXT, "x.y.z", "eyJhbGciOiJub25lIn0.e30."],
        "subject_token_type": [*HOSTILE_TEXT, TOKEN_TYPE_ACCESS_TOKEN, TOKEN_TYPE_ID_JAG],
        "audience": [
            *HOSTILE_TEXT,
            mcp,
            zts.upper(),
            zts.replace("127.0.0.1", "localhost"),
            *[v.format(zts) for v in url_variants],
        ],
        "resource": [
            *HOSTILE_TEXT,
            zts,
            "https://evil.example/mcp",
            mcp.upper(),
            *[v.format(mcp) for v in url_variants],
        ],
        "scope": [*HOSTILE_TEXT, "api:role.docs-getter\x00", "a" * 5_000],
        "actor_token": [*HOSTILE_TEXT],
    }


@pytest.mark.parametrize(
    "parameter",
    [
        "requested_token_type",
        "subject_token",
        "subject_token_type",
        "audience",
        "resource",
        "scope",
        "actor_token",
    ],
)
def test_token_id_jag_exchange_one_hostile_parameter(idp: Idp, parameter: str) -> None:
    """An ID-JAG only for the audience and resource configured for the client, exactly as
    configured (not as the request spelled them), for the signed-in user and this client."""
    endpoints = idp.settings.endpoints
    subject = id_token(idp)
    genuine = token(idp, jag_form(idp, subject))
    assert genuine.status_code == 200, genuine.text
    base = unverified_claims(genuine.json()["access_token"])
    found: list[str] = []
    for value in jag_values(idp)[parameter]:
        form = {**jag_form(idp, subject), parameter: value}
        response = token(idp, form)
        described = f"{parameter}={str(value)[:60]!r}"
        if response.status_code >= 500 or LEAKS.search(response.text):
            found.append(f"{described}: HTTP {response.status_code} {response.text[:200]}")
            continue
        body = _json(response)
        if response.status_code != 200:
            if body.get("error") not in {*TOKEN_ERRORS, "invalid_target"}:
                found.append(f"{described}: HTTP {response.status_code} {response.text[:200]}")
            continue
        claims = unverified_claims(body["access_token"])
        if claims.get("aud") != endpoints.zts:
            found.append(f"{described}: aud {claims.get('aud')!r}")
        if claims.get("resource", endpoints.mcp) != endpoints.mcp:
            found.append(f"{described}: resource {claims.get('resource')!r}")
        if (claims.get("sub"), claims.get("client_id")) != (base["sub"], base["client_id"]):
            found.append(
                f"{described}: sub/client_id {claims.get('sub')}/{claims.get('client_id')}"
            )
        asked = set(str(form.get("scope") or "").split())
        if not set(str(claims.get("scope", "")).split()) <= asked:
            found.append(f"{described}: scope {claims.get('scope')!r} beyond {sorted(asked)}")
    assert not found, "\n".join(found)


# ------------------------------------------------------------------------------ logout


def test_logout_never_redirects_to_an_unregistered_uri(idp: Idp) -> None:
    """RP-initiated logout's ``post_logout_redirect_uri`` passes the same check as the
    authorization request's ``redirect_uri`` (the client's ``post.logout.redirect.uris`` is
    ``+``: its redirect URIs), with and without an ``id_token_hint``."""
    logout_url = f"{idp.issuer}/protocol/openid-connect/logout"
    found: list[str] = []
    for uri in REFUSED_FOR_AGENT:
        for params in (
            {"client_id": CLIENT_ID, "post_logout_redirect_uri": uri},
            {"id_token_hint": id_token(idp), "post_logout_redirect_uri": uri, "state": "s"},
        ):
            response = httpx.get(logout_url, params=params)
            described = f"{uri[:60]!r} {'hint' if 'id_token_hint' in params else 'client_id'}"
            if response.status_code != 400 or "location" in response.headers:
                found.append(f"{described}: HTTP {response.status_code} {response.text[:100]!r}")
    for value in HOSTILE_TEXT:
        if value is None:
            continue
        response = httpx.get(
            logout_url,
            params={"id_token_hint": value[:8_000], "post_logout_redirect_uri": REDIRECT_URI},
        )
        if response.status_code >= 500 or "location" in response.headers:
            found.append(f"id_token_hint={value[:40]!r}: HTTP {response.status_code}")
    control = httpx.get(
        logout_url,
        params={"id_token_hint": id_token(idp), "post_logout_redirect_uri": REDIRECT_URI},
    )
    assert control.status_code == 302 and control.headers["location"] == REDIRECT_URI
    assert not found, "\n".join(found)
