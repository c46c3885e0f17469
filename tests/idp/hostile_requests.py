"""Hostile requests whose answer the lab IdP takes from real Keycloak 26, and the answer's class.

The same requests go to the lab IdP (``tests/idp/test_hostile_requests.py``, against the answers
recorded here) and, on CI, to real Keycloak beside the lab IdP
(``tests/keycloak/test_hostile_requests_against_keycloak.py``): a rule of the lab's that stops
matching Keycloak fails there, and a recorded answer Keycloak no longer gives fails too.

Two rules are covered:

* **a parameter sent twice** (``lab.oauth.starlette.Repeats``): the token, introspection and
  userinfo endpoints refuse it (400 ``invalid_request``, Keycloak's ``checkParameterDuplicated``);
  the authorization endpoint redirects ``invalid_request`` back to the client (RFC 6749
  §4.1.2.1); RP-initiated logout and the login form take the first value
  (``@QueryParam`` / ``MultivaluedMap.getFirst``);
* **the scope parameter's syntax** (``lab.oauth.scopes``, RFC 6749 §3.3): only a space
  separates scope values, so a tab, a line break or a Unicode space joins two names into one
  unknown value (400 ``invalid_scope``), as does a non-ASCII letter; runs of spaces and a
  repeated value are harmless.

An answer is compared by class (:class:`Outcome`): the status, how it came back (JSON, a
redirect, an HTML page), the OAuth ``error`` code, and - where a parameter was repeated - which
of its values counted. Wording, token contents and page layout are not compared.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from html import unescape
from pathlib import Path
from urllib.parse import urljoin

import httpx

from lab.agent.signin import IdpClient, browser_like

CLIENT_ID = "ai.agent"
REDIRECT_URI = "http://127.0.0.1:49152/callback"
#: A post-logout redirect the realm allows (``post.logout.redirect.uris`` "+": the redirect
#: URIs, ``http://127.0.0.1/*``), and one it does not.
REGISTERED = "http://127.0.0.1:5000/bye"
UNREGISTERED = "https://evil.example/bye"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@dataclass(frozen=True)
class Outcome:
    """An answer's class: ``status``; ``shape`` (``json``, ``redirect`` or ``page``); the OAuth
    ``error`` (JSON body or redirect parameter); ``used`` - which repeated value counted."""

    status: int
    shape: str
    error: str | None = None
    used: str | None = None

    def __str__(self) -> str:
        parts = [str(self.status), self.shape, self.error or "-", self.used or "-"]
        return " ".join(parts)


@dataclass(frozen=True)
class Issuer:
    """An IdP serving the lab's realm (``idjag``, imported from the same realm file)."""

    url: str
    client_secret: str

    @property
    def token(self) -> str:
        return f"{self.url}/protocol/openid-connect/token"

    @property
    def auth(self) -> str:
        return f"{self.url}/protocol/openid-connect/auth"

    @property
    def logout(self) -> str:
        return f"{self.url}/protocol/openid-connect/logout"

    @property
    def introspect(self) -> str:
        return f"{self.url}/protocol/openid-connect/token/introspect"

    @property
    def userinfo(self) -> str:
        return f"{self.url}/protocol/openid-connect/userinfo"

    def tokens(self) -> dict[str, str]:
        """A fresh sign-in by the password grant (its own session)."""
        response = httpx.post(
            self.token,
            data={"grant_type": "password", "username": "idjag-learner", "password": "password"}
            | {"scope": "openid"},
            auth=(CLIENT_ID, self.client_secret),
        )
        assert response.status_code == 200, response.text
        return dict(response.json())

    def refresh_works(self, refresh_token: str) -> bool:
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        response = httpx.post(self.token, data=form, auth=(CLIENT_ID, self.client_secret))
        return response.status_code == 200


def outcome(response: httpx.Response, used: str | None = None) -> Outcome:
    """The class of ``response``: a redirect's ``error`` from its Location, an RFC 6750
    challenge's from ``WWW-Authenticate`` (whatever the body), a JSON body's ``error``, anything
    else an HTML page."""
    if response.status_code in (302, 303):
        location = httpx.URL(response.headers["location"])
        return Outcome(response.status_code, "redirect", location.params.get("error"), used)
    challenge = re.search(r'error="([^"]*)"', response.headers.get("www-authenticate", ""))
    if challenge:
        return Outcome(response.status_code, "challenge", challenge.group(1), used)
    if response.headers.get("content-type", "").startswith("application/json"):
        try:
            error = response.json().get("error")
        except (ValueError, AttributeError):
            error = None
        return Outcome(response.status_code, "json", error, used)
    return Outcome(response.status_code, "page", None, used)


def post_form(url: str, body: str, auth: tuple[str, str] | None = None) -> httpx.Response:
    """A form body sent exactly as written (repeats kept, nothing re-encoded)."""
    return httpx.post(url, content=body.encode(), headers=FORM, auth=auth)


def encoded(pairs: list[tuple[str, str]]) -> str:
    return str(httpx.QueryParams(pairs))


# -- a parameter sent twice ---------------------------------------------------------------------


def token_scope_twice(idp: Issuer) -> Outcome:
    body = encoded(
        [("grant_type", "password"), ("username", "idjag-learner"), ("password", "password")]
        + [("scope", "openid"), ("scope", "email")]
    )
    return outcome(post_form(idp.token, body, (CLIENT_ID, idp.client_secret)))


def token_grant_type_twice(idp: Issuer) -> Outcome:
    body = encoded(
        [("grant_type", "password"), ("grant_type", "client_credentials")]
        + [("username", "idjag-learner"), ("password", "password")]
    )
    return outcome(post_form(idp.token, body, (CLIENT_ID, idp.client_secret)))


def token_password_twice(idp: Issuer) -> Outcome:
    """The right password first, a wrong one second: refused all the same."""
    body = encoded(
        [("grant_type", "password"), ("username", "idjag-learner")]
        + [("password", "password"), ("password", "wrong")]
    )
    return outcome(post_form(idp.token, body, (CLIENT_ID, idp.client_secret)))


def introspect_token_twice(idp: Issuer) -> Outcome:
    access = idp.tokens()["access_token"]
    body = encoded([("token", access), ("token", "garbage")])
    return outcome(post_form(idp.introspect, body, (CLIENT_ID, idp.client_secret)))


def userinfo_access_token_twice(idp: Issuer) -> Outcome:
    access = idp.tokens()["access_token"]
    body = encoded([("access_token", access), ("access_token", access)])
    return outcome(post_form(idp.userinfo, body))


def auth_params(**extra: str) -> list[tuple[str, str]]:
    params = {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT_URI,
        "scope": "openid",
        "state": "first",
        # PKCE S256 (the realm's client requires it); never redeemed here.
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        "code_challenge_method": "S256",
    }
    params.update(extra)
    return list(params.items())


def redirect_state(response: httpx.Response) -> str | None:
    if response.status_code not in (302, 303):
        return None
    return httpx.URL(response.headers["location"]).params.get("state")


def auth_state_twice(idp: Issuer) -> Outcome:
    response = httpx.get(idp.auth, params=[*auth_params(), ("state", "second")])
    return outcome(response, redirect_state(response))


def auth_scope_twice(idp: Issuer) -> Outcome:
    response = httpx.get(idp.auth, params=[*auth_params(), ("scope", "email")])
    return outcome(response, redirect_state(response))


def auth_redirect_uri_twice(idp: Issuer) -> Outcome:
    """A second ``redirect_uri``, unregistered: the answer never goes there."""
    other = "https://evil.example/cb"
    response = httpx.get(idp.auth, params=[*auth_params(), ("redirect_uri", other)])
    target = None
    if response.status_code in (302, 303):
        location = httpx.URL(response.headers["location"])
        target = f"{location.scheme}://{location.host}:{location.port}{location.path}"
    return outcome(response, target)


def logout_redirect_twice_registered_first(idp: Issuer) -> Outcome:
    tokens = idp.tokens()
    params = [
        ("id_token_hint", tokens["id_token"]),
        ("post_logout_redirect_uri", REGISTERED),
        ("post_logout_redirect_uri", UNREGISTERED),
        ("state", "first"),
        ("state", "second"),
    ]
    response = httpx.get(idp.logout, params=params)
    location = response.headers.get("location")
    used = None if location is None else f"{location.split('?')[0]} {redirect_state(response)}"
    ended = "ended" if not idp.refresh_works(tokens["refresh_token"]) else "kept"
    return outcome(response, f"{used} session {ended}")


def logout_redirect_twice_unregistered_first(idp: Issuer) -> Outcome:
    tokens = idp.tokens()
    params = [
        ("id_token_hint", tokens["id_token"]),
        ("post_logout_redirect_uri", UNREGISTERED),
        ("post_logout_redirect_uri", REGISTERED),
    ]
    response = httpx.get(idp.logout, params=params)
    return outcome(response, response.headers.get("location"))


def logout_id_token_hint_twice_valid_first(idp: Issuer) -> Outcome:
    tokens = idp.tokens()
    params = [("id_token_hint", tokens["id_token"]), ("id_token_hint", "not.a.token")]
    params += [("post_logout_redirect_uri", REGISTERED)]
    response = httpx.get(idp.logout, params=params)
    ended = "ended" if not idp.refresh_works(tokens["refresh_token"]) else "kept"
    return outcome(response, f"session {ended}")


def logout_id_token_hint_twice_garbage_first(idp: Issuer) -> Outcome:
    tokens = idp.tokens()
    params = [("id_token_hint", "not.a.token"), ("id_token_hint", tokens["id_token"])]
    params += [("post_logout_redirect_uri", REGISTERED)]
    response = httpx.get(idp.logout, params=params)
    ended = "ended" if not idp.refresh_works(tokens["refresh_token"]) else "kept"
    return outcome(response, f"session {ended}")


def login_form_action(page: httpx.Response) -> httpx.URL:
    match = re.search(r'<form[^>]*id="kc-form-login"[^>]*action="([^"]+)"', page.text)
    assert match, f"no login form in the page ({page.status_code})"
    return httpx.URL(urljoin(str(page.url), unescape(match.group(1))))


def login_form_fields_twice(idp: Issuer, username_first: str, password_first: str) -> Outcome:
    """The login form posted with ``tab_id``, ``username`` and ``password`` each twice."""
    with browser_like(httpx.Client()) as browser:
        page = browser.get(idp.auth, params=auth_params())
        action = login_form_action(page)
        twice = action.copy_with(params=[*action.params.multi_items(), ("tab_id", "made-up")])
        others = {"idjag-learner": "idjag-other", "password": "wrong"}
        body = encoded(
            [("username", username_first), ("username", others.get(username_first, "x"))]
            + [("password", password_first), ("password", others.get(password_first, "x"))]
        )
        answer = browser.post(twice, content=body.encode(), headers=FORM)
    signed_in = (
        "code"
        if answer.status_code == 302 and "code=" in answer.headers.get("location", "")
        else "no code"
    )
    return outcome(answer, signed_in)


def login_form_right_values_first(idp: Issuer) -> Outcome:
    return login_form_fields_twice(idp, "idjag-learner", "password")


# -- scope syntax (RFC 6749 §3.3) --------------------------------------------------------------


def password_grant_scope(scope: str) -> Callable[[Issuer], Outcome]:
    def send(idp: Issuer) -> Outcome:
        form = {"grant_type": "password", "username": "idjag-learner", "password": "password"}
        response = httpx.post(
            idp.token, data={**form, "scope": scope}, auth=(CLIENT_ID, idp.client_secret)
        )
        granted = None
        if response.status_code == 200:
            granted = " ".join(sorted(str(response.json().get("scope", "")).split(" ")))
        return outcome(response, granted)

    return send


def auth_scope(scope: str) -> Callable[[Issuer], Outcome]:
    def send(idp: Issuer) -> Outcome:
        response = httpx.get(idp.auth, params=auth_params(scope=scope))
        return outcome(response, redirect_state(response))

    return send


def auth_client_id_twice(idp: Issuer) -> Outcome:
    """The one repeat the authorization endpoint answers with its error page, not a redirect."""
    response = httpx.get(idp.auth, params=[*auth_params(), ("client_id", CLIENT_ID)])
    return outcome(response, redirect_state(response))


@dataclass(frozen=True)
class Case:
    """A hostile request and its answer's class: ``keycloak`` as real Keycloak 26 gave it;
    ``lab`` only where the lab IdP answers otherwise on purpose (docs/dev/contracts.md §5)."""

    name: str
    send: Callable[[Issuer], Outcome]
    keycloak: Outcome
    lab: Outcome | None = None
    #: A second answer real Keycloak was seen to give to the same request (see
    #: CONTROL_CHARACTERS); only where the lab answers otherwise on purpose.
    keycloak_also: Outcome | None = None

    @property
    def lab_answer(self) -> Outcome:
        return self.keycloak if self.lab is None else self.lab

    @property
    def keycloak_answers(self) -> list[Outcome]:
        return (
            [self.keycloak] if self.keycloak_also is None else [self.keycloak, self.keycloak_also]
        )


BAD_REQUEST = Outcome(400, "json", "invalid_request")
DUPLICATED_AT_AUTH = Outcome(302, "redirect", "invalid_request", "first")
NO_SUCH_SCOPE = Outcome(400, "json", "invalid_scope")
NO_SUCH_SCOPE_AT_AUTH = Outcome(302, "redirect", "invalid_scope", "first")
SIGNED_IN = Outcome(200, "json", None, "email openid profile")
LOGIN_PAGE = Outcome(200, "page")

REPEATS: list[Case] = [
    Case("token: scope twice", token_scope_twice, BAD_REQUEST),
    Case("token: grant_type twice", token_grant_type_twice, BAD_REQUEST),
    Case("token: password twice, right one first", token_password_twice, BAD_REQUEST),
    Case("introspect: token twice", introspect_token_twice, BAD_REQUEST),
    Case(
        "userinfo: access_token twice",
        userinfo_access_token_twice,
        Outcome(400, "challenge", "invalid_request"),
    ),
    Case("auth: state twice", auth_state_twice, DUPLICATED_AT_AUTH),
    Case("auth: scope twice", auth_scope_twice, DUPLICATED_AT_AUTH),
    Case(
        "auth: redirect_uri twice",
        auth_redirect_uri_twice,
        Outcome(302, "redirect", "invalid_request", REDIRECT_URI),
    ),
    Case("auth: client_id twice", auth_client_id_twice, Outcome(400, "page")),
    Case(
        "logout: post_logout_redirect_uri twice, registered first",
        logout_redirect_twice_registered_first,
        Outcome(302, "redirect", None, f"{REGISTERED} first session ended"),
    ),
    Case(
        "logout: post_logout_redirect_uri twice, unregistered first",
        logout_redirect_twice_unregistered_first,
        Outcome(400, "page"),
    ),
    Case(
        "logout: id_token_hint twice, valid first",
        logout_id_token_hint_twice_valid_first,
        Outcome(302, "redirect", None, "session ended"),
    ),
    Case(
        "logout: id_token_hint twice, garbage first",
        logout_id_token_hint_twice_garbage_first,
        Outcome(400, "page", None, "session kept"),
    ),
    Case(
        "login form: tab_id, username, password twice, right ones first",
        login_form_right_values_first,
        Outcome(302, "redirect", None, "code"),
    ),
]

#: (scope as sent, password grant's answer, authorization request's answer), as Keycloak
#: gave them: only a space separates, Java's ``split(" ")`` keeps a leading or inner empty
#: value (an unknown scope), a repeated value is read once.
SCOPE_SYNTAX: list[tuple[str, Outcome, Outcome]] = [
    ("openid\tprofile", NO_SUCH_SCOPE, NO_SUCH_SCOPE_AT_AUTH),
    ("openid\nprofile", NO_SUCH_SCOPE, NO_SUCH_SCOPE_AT_AUTH),
    ("openid\u00a0profile", NO_SUCH_SCOPE, NO_SUCH_SCOPE_AT_AUTH),
    ("openid\u3000profile", NO_SUCH_SCOPE, NO_SUCH_SCOPE_AT_AUTH),
    ("openid prof\u00efle", NO_SUCH_SCOPE, NO_SUCH_SCOPE_AT_AUTH),
    ("openid\u212a", NO_SUCH_SCOPE, NO_SUCH_SCOPE_AT_AUTH),
    ('openid "profile"', NO_SUCH_SCOPE, NO_SUCH_SCOPE_AT_AUTH),
    ("openid,profile", NO_SUCH_SCOPE, NO_SUCH_SCOPE_AT_AUTH),
    ("OPENID", NO_SUCH_SCOPE, NO_SUCH_SCOPE_AT_AUTH),
    ("openid  profile", NO_SUCH_SCOPE, NO_SUCH_SCOPE_AT_AUTH),
    (" openid", NO_SUCH_SCOPE, NO_SUCH_SCOPE_AT_AUTH),
    ("", NO_SUCH_SCOPE, NO_SUCH_SCOPE_AT_AUTH),
    ("   ", Outcome(200, "json", None, "email profile"), LOGIN_PAGE),
    ("openid profile ", SIGNED_IN, LOGIN_PAGE),
    ("openid profile profile", SIGNED_IN, LOGIN_PAGE),
]

#: Control characters: Keycloak 26.7.3 was seen, on this machine, to drop them from a form's
#: values (the password grant signs ``openid`` in) and refuse them in a query before any OAuth
#: check (a JSON 400 whose ``error`` is its sentence) - and, in another run of the same
#: distribution, to refuse them as unknown scopes, as the lab does. The lab IdP always refuses
#: them, as it refuses any value outside RFC 6749 §3.3 - never one text read two ways
#: (docs/dev/contracts.md §5).
CONTROL_CHARACTERS = ["openid\x00", "openid\x1f"]
BLOCKED_QUERY = Outcome(400, "json", "Blocking invalid query parameter value")


def _scope_cases() -> list[Case]:
    cases: list[Case] = []
    for scope, by_password, by_auth in SCOPE_SYNTAX:
        cases.append(
            Case(f"password grant: scope {ascii(scope)}", password_grant_scope(scope), by_password)
        )
        cases.append(Case(f"auth: scope {ascii(scope)}", auth_scope(scope), by_auth))
    for scope in CONTROL_CHARACTERS:
        cases.append(
            Case(
                f"password grant: scope {ascii(scope)}",
                password_grant_scope(scope),
                SIGNED_IN,
                NO_SUCH_SCOPE,
                keycloak_also=NO_SUCH_SCOPE,
            )
        )
        cases.append(
            Case(
                f"auth: scope {ascii(scope)}",
                auth_scope(scope),
                BLOCKED_QUERY,
                NO_SUCH_SCOPE_AT_AUTH,
                keycloak_also=NO_SUCH_SCOPE_AT_AUTH,
            )
        )
    return cases


CASES: list[Case] = REPEATS + _scope_cases()


@contextlib.contextmanager
def lab_idp(home: Path) -> Iterator[Issuer]:
    """The lab's own IdP (the shipped realm) on a free loopback port, for a module's cases."""
    from lab.config import PORTS, Settings
    from lab.idp.app import create_app
    from lab.serving import ServerThread, bind_socket

    sockets = {name: bind_socket("127.0.0.1", 0) for name in PORTS}
    ports = {name: sock.getsockname()[1] for name, sock in sockets.items()}
    settings = replace(Settings(), home=home, ports=ports, policy_refresh_s=0.0)
    server = ServerThread(create_app(settings), sockets["idp"])
    server.start()
    try:
        yield Issuer(settings.endpoints.idp_issuer, IdpClient.from_realm_file().client_secret)
    finally:
        server.request_stop()
        server.stop()
        for sock in sockets.values():
            sock.close()
