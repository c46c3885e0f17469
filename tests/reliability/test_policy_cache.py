"""The resource servers' policy cache never blocks readers on the network.

The wedge under load: 39 of 40 worker threads waited on the cache lock while the 40th held it
during a blocking call to the PDP, which needed a free worker to answer. Now one caller
refreshes (single-flight) and everyone else gets the last good copy at once; a copy past its
``expires`` is never used; health says when the part cannot get policy data.
"""

from __future__ import annotations

import ast
import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lab.oauth.errors import OAuthError
from lab.oauth.jose import SigningKey, static_key_resolver
from lab.oauth.resource_server import PolicyCache
from lab.policy.signed import sign_policy_data, verify_signed_policy_data
from lab.serving import bind_socket

ROOT = Path(__file__).resolve().parents[2]


class StubPdp:
    """Serves signed policy data for ``api``; can be made slow, failing or short-lived."""

    def __init__(self, key: SigningKey) -> None:
        self.key = key
        self.release = threading.Event()
        self.release.set()
        self.status = 200
        self.expires_in = 3600.0
        self.calls = 0
        #: The client address of each call: one per TCP connection the cache opened.
        self.peers: list[tuple[str, int] | None] = []

    def document(self) -> dict[str, Any]:
        stamp = time.time() + self.expires_in
        expires = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(stamp)) + (
            f".{int(stamp * 1000) % 1000:03d}Z"
        )
        signed = {
            "policyData": {"domain": "api", "policies": [], "roles": []},
            "modified": "x",
            "expires": expires,
        }
        return sign_policy_data(signed, self.key)

    def app(self) -> Starlette:
        async def signed_policy(request: Request) -> Response:
            self.calls += 1
            self.peers.append(tuple(request.client) if request.client else None)  # type: ignore[arg-type]
            while not self.release.is_set():
                await anyio.sleep(0.01)
            if self.status != 200:
                return JSONResponse({"error": "server_error"}, status_code=self.status)
            return JSONResponse(self.document())

        return Starlette(routes=[Route("/zts/v1/domain/api/signed_policy_data", signed_policy)])


def make_cache(url: str, key: SigningKey, refresh_s: float = 0.0) -> PolicyCache:
    resolver = static_key_resolver({key.kid: key.key.public_key()})
    return PolicyCache(
        f"{url}/zts/v1",
        "api",
        resolver,  # type: ignore[arg-type]
        verify=verify_signed_policy_data,
        refresh_s=refresh_s,
        timeout_s=2.0,
    )


@pytest.fixture
def stub(tmp_path: Path, serve: Callable[..., str]) -> tuple[StubPdp, str]:
    pdp = StubPdp(SigningKey.load_or_create(tmp_path / "pdp.pem"))
    url = serve(pdp.app(), bind_socket("127.0.0.1", 0))
    return pdp, url


def test_refreshes_reuse_one_connection_to_the_pdp(stub: tuple[StubPdp, str]) -> None:
    # A new client (and TCP connection) per refresh was most of a refresh's CPU (issue #21).
    pdp, url = stub
    cache = make_cache(url, pdp.key)  # refresh_s=0: every read refreshes
    for _ in range(3):
        assert cache.current() is not None
    assert pdp.calls == 3
    assert len(set(pdp.peers)) == 1 and pdp.peers[0] is not None
    timeout = cache._http().timeout  # the cache's, as a client per fetch had it
    assert (timeout.read, timeout.connect) == (2.0, 2.0)
    assert make_cache(url, pdp.key)._http() is not cache._http()  # one client per cache


def test_readers_get_the_last_good_copy_while_one_refresh_waits(
    stub: tuple[StubPdp, str],
) -> None:
    pdp, url = stub
    cache = make_cache(url, pdp.key)
    first = cache.current()
    assert first is not None
    pdp.release.clear()  # the PDP now hangs until released
    calls_before = pdp.calls
    with ThreadPoolExecutor(max_workers=20) as pool:
        refresher = pool.submit(cache.current)
        deadline = time.monotonic() + 2
        while pdp.calls == calls_before and time.monotonic() < deadline:
            time.sleep(0.005)
        started = time.monotonic()
        readers = [pool.submit(cache.current) for _ in range(40)]
        results = [reader.result(timeout=1.5) for reader in readers]
        waited = time.monotonic() - started
        pdp.release.set()
        assert refresher.result(timeout=3) is not None
    assert all(result is first for result in results)
    assert waited < 1.0  # none of them waited for the hanging PDP
    assert pdp.calls == calls_before + 1  # single flight: one fetch, not 41


def test_async_readers_do_not_hold_worker_threads(stub: tuple[StubPdp, str]) -> None:
    pdp, url = stub
    cache = make_cache(url, pdp.key)

    async def many() -> list[Any]:
        return await asyncio.gather(*(cache.current_async() for _ in range(100)))

    results = asyncio.run(many())
    assert all(result is not None for result in results)
    assert pdp.calls < 100


def test_an_expired_copy_is_never_served(stub: tuple[StubPdp, str]) -> None:
    pdp, url = stub
    pdp.expires_in = 1.0
    cache = make_cache(url, pdp.key, refresh_s=60.0)
    assert cache.current() is not None
    pdp.status = 500
    time.sleep(1.2)
    with pytest.raises(OAuthError) as refused:
        cache.current()
    assert refused.value.error == "temporarily_unavailable"
    assert cache.health()[0] is False


def test_a_failed_refresh_keeps_serving_an_unexpired_copy(stub: tuple[StubPdp, str]) -> None:
    pdp, url = stub
    cache = make_cache(url, pdp.key)
    first = cache.current()
    pdp.status = 500
    assert cache.current() is first
    assert cache.health()[0] is True


def test_health_is_false_when_no_policy_data_can_be_had(stub: tuple[StubPdp, str]) -> None:
    pdp, url = stub
    pdp.status = 502
    cache = make_cache(url, pdp.key)
    with pytest.raises(OAuthError):
        cache.current()
    ok, detail = cache.health()
    assert ok is False and "502" in detail


def test_resource_server_does_not_import_the_policy_engine() -> None:
    """No arrow up: lab/oauth sits below lab/policy; the decision is handed in."""
    tree = ast.parse((ROOT / "lab" / "oauth" / "resource_server.py").read_text())
    imported = [
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    ]
    assert not [name for name in imported if name and name.startswith("lab.policy")]
