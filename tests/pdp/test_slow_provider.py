"""A trusted provider whose JWKS endpoint hangs holds none of the token endpoint's workers.

Found by an outsider's battery (sixth session): the token endpoint runs each request's grant on
four worker threads (``dispatcher.WORKER_THREADS``), and a subject token or assertion from a
trusted provider whose keys were not held fetched them inside that work. While the provider's
JWKS endpoint hung (accepted, never answered), four ID-JAG requests held all four workers for
the fetch's 5 s timeout, and an unrelated ``client_credentials`` request waited ~5 s behind
them (10 s for the next ones); a steady trickle of such requests wedged every client's token
request that needs a worker (decisions run on the event loop when they need no I/O; those
after a ZMS write rebuild a policy view from SQLite). Now the keys are fetched, or waited
for, before the grant runs again, on threads of their own (``KEY_FETCH_THREADS``, running
``WouldBlock.prepare``). Shown failing with ``_decide_in_workers`` running ``decide`` on a
worker directly, as before (4.7 s).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from lab.oauth.jose import JwksCache, JwtValidationError, PublicKey, SigningKey, new_jti, now
from lab.oauth.tokens import (
    GRANT_CLIENT_CREDENTIALS,
    GRANT_TOKEN_EXCHANGE,
    TOKEN_TYPE_ID_JAG,
    TOKEN_TYPE_ID_TOKEN,
)
from lab.pdp import providers as providers_module
from lab.pdp.zts.dispatcher import WORKER_THREADS
from tests.pdp.conftest import PdpLab

SLOW_ISSUER = "http://127.0.0.1:9/realms/slow"
LEARNER = "human.idjag-learner"
# Bounds that only separate "answered" from "hung" (never a speed target): the hung JWKS is
# held until the test lets it go, far past any answer a loaded machine still gives.
HUNG_S = 120.0
ANSWERED_S = 60.0
LINGER_RESET = struct.pack("ii", 1, 0)  # closing sends a reset: the peer fails at once


class Waiters:
    """Counts the callers that reached a JWKS fetch (or the wait for one under way)."""

    def __init__(self) -> None:
        self.count = 0
        self.changed = threading.Condition()

    def arrived(self) -> None:
        with self.changed:
            self.count += 1
            self.changed.notify_all()

    def wait_for(self, count: int) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: self.count >= count, ANSWERED_S), self.count


@pytest.fixture
def hung() -> Iterator[socket.socket]:
    """A listening socket that accepts connections (the kernel's backlog) and never answers;
    on leaving, every connection held is reset, so a fetch still hanging on it fails at once."""
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(64)
        try:
            yield hung
        finally:
            if hung.fileno() != -1:
                release(hung)


def release(hung: socket.socket) -> int:
    """Resets the connections waiting on ``hung``; returns how many there were."""
    hung.setblocking(False)
    connections = 0
    with contextlib.suppress(BlockingIOError):
        while True:
            reset(hung.accept()[0])
            connections += 1
    return connections


@pytest.fixture
def waiters(monkeypatch: pytest.MonkeyPatch) -> Waiters:
    """The PDP's providers' key caches, counting their fetchers and with a timeout past the
    test's (the hung fetch ends when the test releases it, not at a 5 s timeout a loaded
    machine could reach before the unrelated request is answered)."""
    seen = Waiters()

    class CountingJwksCache(JwksCache):
        def __init__(self, url: str, **kwargs: Any) -> None:
            super().__init__(url, **{**kwargs, "timeout_s": HUNG_S})

        def _refresh_once(self, kid: str | None = None) -> dict[str, PublicKey]:
            seen.arrived()
            return super()._refresh_once(kid)

    monkeypatch.setattr(providers_module, "JwksCache", CountingJwksCache)
    return seen


def test_a_hung_providers_jwks_does_not_hold_other_clients_token_requests(
    world: PdpLab, waiters: Waiters, hung: socket.socket
) -> None:
    hung_jwks = f"http://127.0.0.1:{hung.getsockname()[1]}/certs"
    world.write_providers(
        [
            {
                "issuerUri": world.issuer_idp,
                "jwksUri": world.settings.endpoints.idp_jwks,
                "principalTemplate": "human.{preferred_username}",
            },
            {
                "issuerUri": SLOW_ISSUER,
                "jwksUri": hung_jwks,
                "principalTemplate": "human.{preferred_username}",
            },
        ]
    )
    assert world.reload_providers().status_code == 200
    slow_key = SigningKey.load_or_create(world.settings.key_file("slow-idp"), "RS256")

    def id_jag_from_the_slow_provider() -> int:
        issued = now()
        id_token = slow_key.sign(
            {
                "iss": SLOW_ISSUER,
                "sub": new_jti(),
                "aud": "ai.agent",
                "azp": "ai.agent",
                "typ": "ID",
                "preferred_username": "idjag-learner",
                "iat": issued,
                "exp": issued + 300,
            },
            typ="JWT",
        )
        form = {
            "grant_type": GRANT_TOKEN_EXCHANGE,
            "requested_token_type": TOKEN_TYPE_ID_JAG,
            "subject_token": id_token,
            "subject_token_type": TOKEN_TYPE_ID_TOKEN,
            "audience": world.zts,
            "scope": "api:role.docs-getter",
        }
        return world.token(form, client="ai.agent", timeout=HUNG_S + 30).status_code

    assert world.client_credentials(LEARNER, "api:role.docs-getter").status_code == 200
    with ThreadPoolExecutor(8) as pool:
        slow = [pool.submit(id_jag_from_the_slow_provider) for _ in range(8)]
        try:
            # At least as many as the token endpoint has workers wait for the hung JWKS now
            # (the old way, each on a worker of its own).
            waiters.wait_for(WORKER_THREADS)
            # A write, so the next decision reads SQLite (a view rebuilt) and needs a worker: most
            # decisions run on the event loop and need none (lab.nonblocking).
            world.role("api", "docs-getter", [LEARNER, "user.someone-else"])
            other = world.token(
                {"grant_type": GRANT_CLIENT_CREDENTIALS, "scope": "api:role.docs-getter"},
                client=LEARNER,
                timeout=ANSWERED_S,
            )
            assert other.status_code == 200, other.text
            # Answered while the hung fetch still held every slow request (the old way, only its
            # end freed a worker, and the slow requests' 400s came first).
            assert not [future for future in slow if future.done()]
        finally:
            # The slow provider's own requests end, refused, once the fetch fails (and any
            # fetch after it is refused a connection).
            release(hung)
            hung.close()
        assert {future.result(timeout=ANSWERED_S) for future in slow} == {400}


class WatchedLock:
    """A lock that tells which threads found it taken (waiting for a fetch under way)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.refused: set[int] = set()
        self.changed = threading.Condition()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        got = self.lock.acquire(blocking, timeout)
        if not got:
            with self.changed:
                self.refused.add(threading.get_ident())
                self.changed.notify_all()
        return got

    def release(self) -> None:
        self.lock.release()

    def wait_for_waiters(self, count: int) -> None:
        with self.changed:
            waiting = self.changed.wait_for(lambda: len(self.refused) >= count, ANSWERED_S)
            assert waiting, self.refused


def reset(connection: socket.socket) -> None:
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
    connection.close()


def test_callers_of_a_hung_jwks_with_no_keys_share_one_fetch(hung: socket.socket) -> None:
    """The single-flight refresh's "another caller just refreshed" check needed keys held: once
    a first fetch failed with none, a waiter that found the lock free fetched again, and waited
    another timeout (the 10 s answers of the PDP above). Now a failed fetch counts as the
    refresh for ``min_refresh_s``: four callers, one fetch (one connection to the hung JWKS).
    Shown failing with the old check (two connections)."""
    # The first fetch hangs until the test resets it, whatever the load; min_refresh_s as long,
    # so no waiter, however late it runs, may fetch again.
    cache = JwksCache(
        f"http://127.0.0.1:{hung.getsockname()[1]}/certs", timeout_s=30.0, min_refresh_s=HUNG_S
    )
    watched = WatchedLock()
    cache._lock = watched  # type: ignore[assignment]

    def resolve() -> str:
        try:
            cache.resolve("some-kid")
        except JwtValidationError as refused:
            return str(refused)
        return "resolved"

    hung.settimeout(ANSWERED_S)
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(resolve)
        fetch = hung.accept()[0]  # the first fetch is under way, holding the lock
        futures = [first, *(pool.submit(resolve) for _ in range(3))]
        watched.wait_for_waiters(3)  # the others wait for it
        reset(fetch)  # it fails, with no keys
        answers = [future.result(timeout=ANSWERED_S) for future in futures]
    assert all(answer != "resolved" for answer in answers)
    connections = 1 + release(hung)
    assert connections == 1, (connections, answers)
