"""The sign-in's shortcuts (issue #21, sixth session) answer exactly as the slow paths did.

The authorization request and the login form skip work that the answer does not depend on: the
login cookie's header is written directly, the redirect's ``Location`` without Starlette's
quote pass when that would change nothing, the secure-context check and the redirect-URI check
are kept per (scheme, host) and per (client, URI), the realm's look-ups are indexed, and a
token's claims are copied from a shape kept per kind of grant. Each test
holds a shortcut to the path it replaced, byte for byte, or shows that what it keeps is keyed by
everything the answer depends on.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
import string
from pathlib import Path
from urllib.parse import urlencode

import pytest
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse

from lab.idp.app import DEFAULT_REALM_FILE
from lab.idp.authorize import AUTH_SESSION_COOKIE, Authorizer, _redirect, secure_context
from lab.idp.clients import redirect_uri_allowed
from lab.idp.realm import Realm, User, load_realm
from lab.idp.store import IdpStore
from lab.idp.tokens import Grant, Subject, TokenIssuer
from lab.oauth.jose import SigningKey
from lab.oauth.starlette import NO_STORE, single_query_params
from lab.oauth.usernames import normalize_username


def _authorizer(realm: Realm) -> Authorizer:
    store = IdpStore(code_lifespan_s=60, session_idle_s=1800, session_max_s=36000)
    return Authorizer(realm, store, "http://127.0.0.1:9090/realms/" + realm.name)


@pytest.mark.parametrize("secure", [True, False])
@pytest.mark.parametrize(
    "value", ["Zq3-_x09AbCdEfGhIjKlMnOpQrStUvWx", 'a b";', "caf\u00e9", "x=y", "a,b"]
)
def test_login_cookie_header_is_what_starlettes_set_cookie_writes(value: str, secure: bool) -> None:
    authorizer = _authorizer(load_realm(DEFAULT_REALM_FILE))
    ours = HTMLResponse("page")
    authorizer._set_browser_cookie(ours, value, secure)
    theirs = HTMLResponse("page")
    theirs.set_cookie(
        AUTH_SESSION_COOKIE,
        value,
        path="/realms/idjag/",
        httponly=True,
        secure=secure,
        samesite="none" if secure else "lax",
    )
    assert ours.raw_headers == theirs.raw_headers


def _old_redirect(redirect_uri: str, mode: str, params: dict[str, str | None]) -> RedirectResponse:
    encoded = urlencode({k: v for k, v in params.items() if v is not None})
    if mode == "fragment":
        target = f"{redirect_uri}#{encoded}"
    else:
        target = f"{redirect_uri}{'&' if '?' in redirect_uri else '?'}{encoded}"
    return RedirectResponse(target, status_code=302, headers=NO_STORE)


def test_redirects_to_the_client_are_what_redirect_response_writes() -> None:
    rnd = random.Random(21)
    alphabet = string.printable + "\u00e4\u00e9\u20ac\U0001f600\u2028"

    def junk(most: int) -> str:
        return "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, most)))

    bases = [
        "http://127.0.0.1:40123/callback",
        "http://localhost/cb?x=1",
        "https://app.example/a b",
        "http://127.0.0.1/\u00e4",
        'http://h/<>"{}|^`',
        "http://h/%zz",
    ]
    for _ in range(3000):
        params: dict[str, str | None] = {
            "error": rnd.choice([None, "invalid_request"]),
            "error_description": rnd.choice([None, junk(20)]),
            "state": rnd.choice([None, junk(12)]),
            "session_state": rnd.choice([None, "5f0c9a52-3c1e-4d8b-9a57-0b1d6e4a7c21"]),
            "iss": rnd.choice(["http://127.0.0.1:9090/realms/idjag", "https://\u00e4/x y"]),
            "code": rnd.choice([None, junk(40)]),
        }
        uri, mode = rnd.choice(bases) + junk(5), rnd.choice(["query", "fragment"])
        ours, theirs = _redirect(uri, mode, params), _old_redirect(uri, mode, params)
        assert (ours.status_code, ours.raw_headers, ours.body) == (
            theirs.status_code,
            theirs.raw_headers,
            theirs.body,
        ), (uri, mode, params)


def _request(
    scheme: str, host: bytes | None, server: tuple[str, int] | list[object] | None
) -> Request:
    headers = [] if host is None else [(b"host", host)]
    return Request(
        {
            "type": "http",
            "method": "GET",
            "scheme": scheme,
            "path": "/realms/idjag/protocol/openid-connect/auth",
            "query_string": b"",
            "headers": headers,
            "server": server,
        }
    )


@pytest.mark.parametrize(
    ("scheme", "host", "server", "secure"),
    [
        ("http", b"127.0.0.1:9090", None, True),
        ("http", b"127.9.9.9", None, True),
        ("http", b"[::1]:9090", None, True),
        ("http", b"LOCALHOST.:9090", None, True),
        ("http", b"app.localhost", None, True),
        ("http", b"lab.example:9090", None, False),
        ("https", b"lab.example", None, True),
        ("http", b"lab.example", None, False),  # the same host: the scheme is part of the key
        ("http", b"10.0.0.7:9090", None, False),
        ("http", None, ("127.0.0.1", 9090), True),
        ("http", None, ("10.0.0.7", 9090), False),
        ("http", b"127.0.0.1:9090", ("10.0.0.7", 9090), True),  # the Host header wins
    ],
)
def test_secure_context_is_decided_by_scheme_and_host(
    scheme: str, host: bytes | None, server: tuple[str, int] | None, secure: bool
) -> None:
    # Asked twice: the second answer comes from what the first kept, and must be the same.
    assert secure_context(_request(scheme, host, server)) is secure
    assert secure_context(_request(scheme, host, server)) is secure


def test_redirect_uri_answers_are_kept_per_client_not_per_uri() -> None:
    realm = load_realm(DEFAULT_REALM_FILE)
    agent = realm.client("ai.agent")
    assert agent is not None
    narrow = dataclasses.replace(agent, redirect_uris=("http://localhost/only",))
    uri = "http://127.0.0.1:40123/callback"
    assert redirect_uri_allowed(agent, uri) is True
    assert redirect_uri_allowed(narrow, uri) is False
    assert redirect_uri_allowed(agent, uri) is True
    assert redirect_uri_allowed(narrow, "http://localhost/only") is True
    assert redirect_uri_allowed(agent, "http://127.0.0.1:40123/cb\\evil") is False


def _user(user_id: str, username: str, email: str | None) -> User:
    return User(user_id, username, email, True, None, None, True, "pw", ())


def test_realm_lookups_find_the_first_user_in_file_order(tmp_path: Path) -> None:
    """An email may equal another user's username: the scan found the first user in the file
    having either, and so does the index."""
    realm = dataclasses.replace(
        load_realm(DEFAULT_REALM_FILE),
        users=(
            _user("u1", "alice", "bob"),
            _user("u2", "bob", "Carol@Example.com"),
            _user("u3", "carol@example.com", None),
            _user("u4", "dave", "dave@example.com"),
        ),
    )

    def scan(username: str) -> User | None:
        wanted = normalize_username(username)
        for user in realm.users:
            if wanted is not None and (
                user.username == wanted or (user.email and normalize_username(user.email) == wanted)
            ):
                return user
        return None

    for name in [
        "alice",
        "bob",
        "carol@example.com",
        "Carol@Example.com",
        "dave@example.com",
        "DAVE",
        "nobody",
        "",
        " bob",
        "\u212alice",
    ]:
        assert realm.user_by_username(name) is scan(name), name
    assert [realm.user_by_id(u) for u in ("u1", "u2", "u3", "u4")] == list(realm.users)
    assert realm.user_by_id("u5") is None
    assert realm.client("ai.agent") is realm.clients[0]
    assert realm.client("nobody") is None


@pytest.mark.parametrize(
    "query",
    [
        b"a=1&b=2",
        b"a=&b",
        b"redirect_uri=http%3A%2F%2F127.0.0.1%2Fcb&scope=openid+profile",
        b"x=%C3%A4&y=%E4&z=%zz",
        b"a=1;b=2&&c=3",
        b"\xe4=\xfc",
        b"",
    ],
)
def test_single_query_params_reads_the_query_as_starlette_does(query: bytes) -> None:
    scope = {"type": "http", "method": "GET", "path": "/", "query_string": query, "headers": []}
    assert single_query_params(Request(scope)) == dict(Request(scope).query_params.multi_items())


def test_token_claims_from_kept_shapes_are_those_of_a_fresh_issuer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Claims built after other grants' shapes were kept equal (in Keycloak's order) those of an
    issuer that kept nothing: a shape keyed by less than the claims depend on would leak one
    user's, client's or scope set's claims into another's token."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    monkeypatch.setattr("lab.idp.tokens.now", lambda: 1_700_000_000)  # one second for both
    realm = load_realm(DEFAULT_REALM_FILE)
    key = SigningKey(rsa.generate_private_key(public_exponent=65537, key_size=2048), "k1")
    warm = TokenIssuer(realm, "http://127.0.0.1:9090/realms/idjag", key)
    agent = realm.clients[0]
    other = dataclasses.replace(agent, client_id="other", web_origins=())
    subjects = [Subject.of_user(u) for u in realm.users[:2]] + [Subject.service_account(agent)]
    scope_sets = [
        frozenset({"openid"}),
        frozenset({"openid", "profile", "email", "roles", "acr", "web-origins"}),
        frozenset({"profile", "roles"}),
    ]
    combinations = itertools.product(
        subjects, (agent, other), scope_sets, ("1", "0"), (None, 5), (None, "n-1"), (None, "sid-1")
    )
    for subject, client, scopes, acr, auth_time, nonce, sid in combinations:
        grant = Grant(subject, client, scopes, sid, auth_time, nonce, acr, session_expires_in=9)
        fresh = TokenIssuer(realm, warm.issuer, key)
        for ours, theirs in [
            (warm.access_claims(grant), fresh.access_claims(grant)),
            (warm.id_claims(grant, "at"), fresh.id_claims(grant, "at")),
            (warm.refresh_claims(grant), fresh.refresh_claims(grant)),
        ]:
            assert ours.pop("jti") != theirs.pop("jti")
            assert list(ours.items()) == list(theirs.items()), (subject.username, scopes)


def test_secure_context_takes_a_server_given_as_a_list() -> None:
    """ASGI's ``server`` may be any two-item iterable; Starlette's TestClient passes a list,
    which the per-address cache could not hash (a 500 at /auth)."""
    for _ in range(2):
        assert secure_context(_request("http", None, ["127.0.0.1", 9090])) is True
        assert secure_context(_request("http", None, ["10.0.0.7", 9090])) is False
