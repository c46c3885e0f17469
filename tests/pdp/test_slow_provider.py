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
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from lab.oauth.jose import JwksCache, JwtValidationError, SigningKey, new_jti, now
from lab.oauth.tokens import GRANT_TOKEN_EXCHANGE, TOKEN_TYPE_ID_JAG, TOKEN_TYPE_ID_TOKEN
from tests.pdp.conftest import PdpLab

SLOW_ISSUER = "http://127.0.0.1:9/realms/slow"
LEARNER = "human.idjag-learner"


@pytest.fixture
def hung_jwks() -> Iterator[str]:
    """A JWKS URL whose server accepts connections and never answers."""
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(64)
        yield f"http://127.0.0.1:{hung.getsockname()[1]}/certs"


def test_a_hung_providers_jwks_does_not_hold_other_clients_token_requests(
    world: PdpLab, hung_jwks: str
) -> None:
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
        return world.token(form, client="ai.agent", timeout=30).status_code

    assert world.client_credentials(LEARNER, "api:role.docs-getter").status_code == 200
    with ThreadPoolExecutor(8) as pool:
        slow = [pool.submit(id_jag_from_the_slow_provider) for _ in range(8)]
        time.sleep(0.3)  # they are waiting for the hung JWKS now
        # A write, so the next decision reads SQLite (a view rebuilt) and needs a worker: most
        # decisions run on the event loop and need none (lab.nonblocking).
        world.role("api", "docs-getter", [LEARNER, "user.someone-else"])
        started = time.monotonic()
        other = world.client_credentials(LEARNER, "api:role.docs-getter")
        waited = time.monotonic() - started
        assert other.status_code == 200, other.text
        assert waited < 3.0, f"an unrelated token request waited {waited:.1f} s"
        # The slow provider's own requests end, refused, once the fetch gives up.
        assert {future.result(timeout=30) for future in slow} == {400}


def test_callers_of_a_hung_jwks_with_no_keys_share_one_fetch() -> None:
    """The single-flight refresh's "another caller just refreshed" check needed keys held: once
    a first fetch failed with none, a waiter that found the lock free fetched again, and waited
    another timeout (the 10 s answers of the PDP above). Now a failed fetch counts as the
    refresh for ``min_refresh_s``: four callers, one fetch (one connection to the hung JWKS).
    Shown failing with the old check (two connections)."""
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(64)
        cache = JwksCache(f"http://127.0.0.1:{hung.getsockname()[1]}/certs", timeout_s=1.0)

        def resolve() -> str:
            try:
                cache.resolve("some-kid")
            except JwtValidationError as refused:
                return str(refused)
            return "resolved"

        with ThreadPoolExecutor(4) as pool:
            first = pool.submit(resolve)
            time.sleep(0.3)  # the others arrive while the first fetch hangs
            futures = [first, *(pool.submit(resolve) for _ in range(3))]
            answers = [future.result(timeout=10) for future in futures]
        assert all(answer != "resolved" for answer in answers)
        hung.setblocking(False)
        connections = 0
        with contextlib.suppress(BlockingIOError):
            while True:
                hung.accept()[0].close()
                connections += 1
    assert connections == 1, (connections, answers)
