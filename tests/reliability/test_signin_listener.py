"""The browser sign-in's loopback listener (``lab agent --browser``, the gateway's sign-in) when
other things reach its port before the IdP's redirect does.

Found by an outsider's battery (sixth session): the listener was one ``http.server.HTTPServer``
thread with no timeout, and the first GET of its path ended the wait. So a connection opened and
left idle (a browser's speculative preconnect, or any local process) held it forever: the real
redirect was never read and the sign-in timed out; and any GET of the callback path, a web page's
``<img src="http://127.0.0.1:PORT/callback">`` or ``?error=access_denied`` from anyone, ended the
sign-in with a state mismatch. Now each connection has its own thread and a read timeout, and
only a redirect carrying the sign-in's own ``state`` (RFC 6749 §10.12) ends the wait; others are
answered 400. Shown failing with ``HTTPServer`` back (the first test: ``sign_in_browser`` never
returned, its ``shutdown()`` waiting on the idle connection) and with the state check in the
handler removed (the second).
"""

from __future__ import annotations

import contextlib
import http.server
import socket
import threading
import time
from collections.abc import Callable
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from lab.agent import signin
from lab.agent.signin import IdpClient, SignIn, _CallbackListener, sign_in_browser

ISSUER = "http://127.0.0.1:9/realms/idjag"  # never reached: the token endpoint is mocked
CLIENT = IdpClient("ai.agent", "secret", "http://127.0.0.1/callback")


def token_endpoint(codes: list[str]) -> httpx.Client:
    """The IdP's token endpoint, standing in: any authorization code gets an ID token."""

    def answer(request: httpx.Request) -> httpx.Response:
        form = parse_qs(request.content.decode())
        codes.append(form["code"][0])
        return httpx.Response(200, json={"id_token": "h.p.s", "access_token": "a.b.c"})

    return httpx.Client(transport=httpx.MockTransport(answer))


# Generous bounds: a CI machine may be at load 15. They only tell "answered" from "hung"; where
# an idle connection read to the listener's timeout is what a test tells apart, that timeout is
# set far past them (IDLE_READ_S).
BROWSER_TIMEOUT_S = 30
SIGN_IN_TIMEOUT_S = 60
IDLE_READ_S = 600.0


def browser_after(
    *strays: dict[str, str], idle: int = 0
) -> tuple[object, list[int], threading.Event]:
    """An opener that, before the real redirect, leaves ``idle`` connections open without a
    byte and sends each of ``strays`` as the callback's query; the statuses it got, and an
    event set once the browser has read its last answer (the sign-in may return before)."""
    statuses: list[int] = []
    finished = threading.Event()
    kept: list[socket.socket] = []

    def visit(url: str) -> None:
        query = parse_qs(urlsplit(url).query)
        redirect, state = query["redirect_uri"][0], query["state"][0]
        port = urlsplit(redirect).port or 80
        for _ in range(idle):
            kept.append(socket.create_connection(("127.0.0.1", port), timeout=BROWSER_TIMEOUT_S))
        with httpx.Client(timeout=BROWSER_TIMEOUT_S) as browser:
            for stray in strays:
                statuses.append(browser.get(f"{redirect}?{urlencode(stray)}").status_code)
            real = {"code": "the-real-code", "state": state}
            statuses.append(browser.get(f"{redirect}?{urlencode(real)}").status_code)

    def opener(url: str) -> None:
        threading.Thread(target=_safely, args=(visit, url, finished), daemon=True).start()

    return opener, statuses, finished


def _safely(visit: Callable[[str], None], url: str, finished: threading.Event) -> None:
    # A hung listener: the sign-in below times out and says so.
    try:
        with contextlib.suppress(httpx.HTTPError):
            visit(url)
    finally:
        finished.set()


def signed_in(http: httpx.Client, opener: object) -> SignIn:
    """``sign_in_browser`` with every wait bounded: a listener that cannot stop fails the test
    (before the fix, ``shutdown()`` waited on the handler reading the idle connection)."""
    outcome: list[SignIn] = []
    worker = threading.Thread(
        target=lambda: outcome.append(
            sign_in_browser(
                http,
                ISSUER,
                CLIENT,
                opener=opener,  # type: ignore[arg-type]
                timeout_s=SIGN_IN_TIMEOUT_S,
            )
        ),
        daemon=True,
    )
    worker.start()
    worker.join(SIGN_IN_TIMEOUT_S + 10)
    assert outcome, "sign_in_browser did not return: the listener hung"
    return outcome[0]


def test_idle_connections_to_the_listener_do_not_hold_off_the_redirect(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An idle connection read to its timeout would now take 10 x the sign-in's bound: only a
    # listener that reads the redirect beside them signs in (no speed check).
    monkeypatch.setattr(signin, "CALLBACK_READ_TIMEOUT_S", IDLE_READ_S)
    codes: list[str] = []
    opener, statuses, _ = browser_after(idle=3)
    with token_endpoint(codes) as http:
        result = signed_in(http, opener)
    assert result.ok, (result.error, result.error_description, statuses)
    assert codes == ["the-real-code"]


def test_only_the_redirect_with_the_sign_ins_state_ends_the_wait() -> None:
    codes: list[str] = []
    opener, statuses, finished = browser_after(
        {},
        {"code": "planted", "state": "guessed"},
        {"error": "access_denied"},
        {"error": "access_denied", "state": "guessed"},
    )
    with token_endpoint(codes) as http:
        result = signed_in(http, opener)
    assert result.ok, (result.error, result.error_description, statuses)
    # The sign-in returns once the redirect is read; the browser reads its 200 just after.
    assert finished.wait(BROWSER_TIMEOUT_S)
    assert codes == ["the-real-code"]
    assert statuses == [400, 400, 400, 400, 200]


def _slow_page(monkeypatch: pytest.MonkeyPatch, error: Exception | None = None) -> None:
    """The listener's page is written slowly (or the write fails, as to a browser that
    dropped the connection): ``end_headers`` waits, then raises ``error`` if given."""
    end_headers = http.server.BaseHTTPRequestHandler.end_headers

    def slow(self: http.server.BaseHTTPRequestHandler) -> None:
        time.sleep(0.5)
        if error is not None and self.command == "GET" and "code=" in self.path:
            raise error
        end_headers(self)

    monkeypatch.setattr(http.server.BaseHTTPRequestHandler, "end_headers", slow)


def test_two_redirects_with_the_right_state_at_once_only_the_first_is_taken(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Connections are handled in threads: both redirects once passed the check before either
    had written its page and ended the wait, and both were kept (the later one's code won)."""
    _slow_page(monkeypatch)
    with _CallbackListener("127.0.0.1", "http://127.0.0.1/callback", "the-state") as listener:
        statuses: dict[str, int] = {}

        def redirect(code: str) -> None:
            query = urlencode({"code": code, "state": "the-state"})
            with httpx.Client(timeout=BROWSER_TIMEOUT_S) as browser:
                statuses[code] = browser.get(f"{listener.redirect_uri}?{query}").status_code

        browsers = [threading.Thread(target=redirect, args=(c,)) for c in ("one", "two")]
        for browser in browsers:
            browser.start()
        received = listener.wait(SIGN_IN_TIMEOUT_S)
        for browser in browsers:
            browser.join(SIGN_IN_TIMEOUT_S)
    assert sorted(statuses.values()) == [200, 400], statuses
    taken = next(code for code, status in statuses.items() if status == 200)
    assert received is not None and received["code"] == [taken]


def test_the_wait_ends_when_the_browser_drops_the_connection_before_the_page(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The redirect is what the sign-in waits for, not the page: ``done`` was set only after
    the page was written, so a failed write left ``wait()`` to its whole timeout."""
    _slow_page(monkeypatch, ConnectionResetError("the browser went away"))
    with _CallbackListener("127.0.0.1", "http://127.0.0.1/callback", "the-state") as listener:
        query = urlencode({"code": "the-code", "state": "the-state"})
        with socket.create_connection(
            ("127.0.0.1", urlsplit(listener.redirect_uri).port or 80)
        ) as s:
            s.sendall(f"GET /callback?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            # The old way the page's failed write left the wait to its whole timeout (None).
            received = listener.wait(SIGN_IN_TIMEOUT_S)
    assert received is not None and received["code"] == ["the-code"]
