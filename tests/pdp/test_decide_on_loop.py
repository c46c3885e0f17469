"""A token request is decided on the event loop when everything it needs is held in memory, and
in a worker thread whenever it would block: a JWKS fetch (in the embedded runtime that loop
serves the IdP's keys) or a SQLite read (a policy view rebuilt after a write, a client secret).
Either way the same answer; the loop never waits for the slow part (issue #21)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from lab import nonblocking
from lab.oauth.errors import OAuthError
from lab.oauth.jose import JwksCache, JwtValidationError
from lab.oauth.tokens import (
    GRANT_CLIENT_CREDENTIALS,
    GRANT_TOKEN_EXCHANGE,
    TOKEN_TYPE_ID_JAG,
    TOKEN_TYPE_ID_TOKEN,
)
from lab.pdp.core import Pdp
from lab.pdp.store import Store
from lab.pdp.zts.dispatcher import TokenEndpoint
from tests.pdp.conftest import AGENT, LEARNER, PdpLab

LOOP_BOUND_S = 30.0


def credentials(world: PdpLab, scope: str = "api:role.docs-getter") -> dict[str, str]:
    return {
        "grant_type": GRANT_CLIENT_CREDENTIALS,
        "scope": scope,
        **world.client_assertion(LEARNER),
    }


def id_jag_form(world: PdpLab) -> dict[str, str]:
    return {
        "grant_type": GRANT_TOKEN_EXCHANGE,
        "requested_token_type": TOKEN_TYPE_ID_JAG,
        "subject_token": world.id_token(),
        "subject_token_type": TOKEN_TYPE_ID_TOKEN,
        "audience": world.zts,
        "scope": "api:role.docs-getter mcp:role.mcp-accessor",
        "resource": world.settings.endpoints.mcp,
        **world.client_assertion(AGENT),
    }


def where_decided(endpoint: TokenEndpoint) -> list[int]:
    """The thread of every call of ``endpoint.decide`` from here on."""
    threads: list[int] = []
    decide = endpoint.decide

    def recorded(form: dict[str, str], headers: Any) -> Any:
        threads.append(threading.get_ident())
        return decide(form, headers)

    endpoint.decide = recorded  # type: ignore[method-assign]
    return threads


class LoopProbe:
    """Whether the event loop ran while a blocking step was under way: the step waits for a task
    on the loop to see it started. In a worker it ends at once; on the loop itself it could never
    end, so it gives up at a bound far past any loaded machine's delay (a fact, not a speed)."""

    def __init__(self) -> None:
        self.inside = threading.Event()
        self.loop_ran = threading.Event()
        self.answered: list[bool] = []

    def blocking_step(self) -> None:
        self.inside.set()
        self.answered.append(self.loop_ran.wait(LOOP_BOUND_S))

    async def watch(self) -> None:
        while not self.inside.is_set():
            await asyncio.sleep(0.005)
        self.loop_ran.set()


def run_on_loop(
    make: Callable[[], Awaitable[Any]], probe: LoopProbe | None = None
) -> tuple[Any, int]:
    """(result, the loop's thread); ``probe`` watching the loop meanwhile."""

    async def main() -> tuple[Any, int]:
        watcher = asyncio.create_task((probe or LoopProbe()).watch())
        try:
            result = await make()
        finally:
            watcher.cancel()
        return result, threading.get_ident()

    return asyncio.run(main())


def test_a_request_whose_keys_and_policy_are_held_is_decided_on_the_loop(world: PdpLab) -> None:
    endpoint = TokenEndpoint(Pdp.open(world.settings))
    asyncio.run(endpoint.handle_async(credentials(world), {}))  # keys and views now held
    asyncio.run(endpoint.handle_async(id_jag_form(world), {}))  # the IdP's JWKS too
    threads = where_decided(endpoint)

    async def both() -> list[Any]:
        return [
            await endpoint.handle_async(credentials(world), {}),
            await endpoint.handle_async(id_jag_form(world), {}),
        ]

    results, loop_thread = run_on_loop(both)
    assert results[0].body["token_type"] == "Bearer"
    assert results[1].body["issued_token_type"] == TOKEN_TYPE_ID_JAG
    assert threads == [loop_thread, loop_thread]  # decided once each, on the loop


def test_a_policy_view_rebuilt_after_a_write_is_read_in_a_worker_while_the_loop_runs(
    world: PdpLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    pdp = Pdp.open(world.settings)
    endpoint = TokenEndpoint(pdp)
    asyncio.run(endpoint.handle_async(credentials(world), {}))
    # A write to the domain: its view is patched from SQLite on the next read, slowly here.
    pdp.store.put_object("roles", "api", "readers", {"name": "api:role.readers", "roleMembers": []})
    patch = Store._patch_view

    probe = LoopProbe()

    def slow_patch(self: Store, *args: Any) -> Any:
        # On the loop the read is WouldBlock (raised before it happens); wherever it is done,
        # it is then slow.
        view = patch(self, *args)
        probe.blocking_step()
        return view

    monkeypatch.setattr(Store, "_patch_view", slow_patch)
    threads = where_decided(endpoint)
    result, loop_thread = run_on_loop(lambda: endpoint.handle_async(credentials(world), {}), probe)
    assert result.body["scope"] == "api:role.docs-getter"
    assert threads[0] == loop_thread and threads[1:] and threads[-1] != loop_thread
    assert probe.answered == [True]  # the loop ran on while the view was read


def test_a_jwks_fetch_for_an_id_token_runs_in_a_worker_while_the_loop_runs(
    world: PdpLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint = TokenEndpoint(Pdp.open(world.settings))
    asyncio.run(endpoint.handle_async(credentials(world), {}))  # the PDP's side held
    refresh = JwksCache._refresh
    fetched_on: list[int] = []

    probe = LoopProbe()

    def slow_refresh(self: JwksCache) -> None:
        fetched_on.append(threading.get_ident())
        probe.blocking_step()
        refresh(self)

    monkeypatch.setattr(JwksCache, "_refresh", slow_refresh)
    result, loop_thread = run_on_loop(lambda: endpoint.handle_async(id_jag_form(world), {}), probe)
    assert result.body["issued_token_type"] == TOKEN_TYPE_ID_JAG
    assert len(fetched_on) == 1 and fetched_on[0] != loop_thread
    assert probe.answered == [True]  # the loop ran on while the keys were fetched


@pytest.mark.parametrize(
    "change",
    [
        {"scope": "api:role.nope"},
        {"scope": "nodomain:role.docs-getter"},
        {"scope": "api:role.docs-getter mcp:role.mcp-accessor"},
        {"client_assertion": "not-a-jwt"},
        {"grant_type": "password"},
    ],
)
def test_a_refusal_decided_on_the_loop_is_the_one_a_worker_gives(
    world: PdpLab, change: dict[str, str]
) -> None:
    endpoint = TokenEndpoint(Pdp.open(world.settings))
    asyncio.run(endpoint.handle_async(credentials(world), {}))
    form = {**credentials(world), **change}
    # In a worker first: an unknown domain is looked up in SQLite once, then known absent.
    _, in_worker = endpoint.decide(dict(form), {})
    with nonblocking.forbidden():
        _, on_loop = endpoint.decide(dict(form), {})
    assert isinstance(on_loop, OAuthError) and isinstance(in_worker, OAuthError)
    assert (on_loop.status_code, on_loop.body()) == (in_worker.status_code, in_worker.body())


def test_a_client_secret_is_read_in_a_worker(world: PdpLab) -> None:
    """The secret's hash is a SQLite read: never on the loop."""
    pdp = Pdp.open(world.settings)
    endpoint = TokenEndpoint(pdp)
    form = {
        "grant_type": GRANT_CLIENT_CREDENTIALS,
        "scope": "api:role.docs-getter",
        "client_id": LEARNER,
        "client_secret": "wrong",
    }
    with nonblocking.forbidden(), pytest.raises(nonblocking.WouldBlock):
        endpoint.decide(dict(form), {})
    _, refused = endpoint.decide(dict(form), {})
    assert isinstance(refused, OAuthError) and refused.error == "invalid_client"


class CountingJwks(JwksCache):
    def __init__(self, keys: dict[str, Any], **options: Any) -> None:
        super().__init__("http://127.0.0.1:9/keys", **options)
        self.fetches = 0
        self.served = keys

    def _refresh(self) -> None:
        self.fetches += 1
        self._keys = dict(self.served)
        self._fetched_at = time.monotonic()


def test_a_jwks_cache_answers_held_keys_without_fetching_and_never_fetches_when_forbidden(
    world: PdpLab,
) -> None:
    key = world.idp_key.key.public_key()
    cache = CountingJwks({"k1": key}, min_refresh_s=60.0)
    with nonblocking.forbidden(), pytest.raises(nonblocking.WouldBlock):
        cache.resolve("k1")  # nothing held yet: it would fetch
    assert cache.fetches == 0
    assert cache.resolve("k1") is key and cache.fetches == 1
    with nonblocking.forbidden():
        assert cache.resolve("k1") is key  # held
        # An unknown kid within the refresh interval is refused without a fetch, on the spot.
        with pytest.raises(JwtValidationError, match="unknown signing key"):
            cache.resolve("k2")
        assert cache.resolve(None) is key  # the lone key, no refetch allowed yet
    cache._fetched_at -= 61  # past min_refresh_s, within max_age
    with nonblocking.forbidden():
        assert cache.resolve("k1") is key
        for kid in ("k2", None):  # an unknown kid or none: resolve would refetch first
            with pytest.raises(nonblocking.WouldBlock):
                cache.resolve(kid)
    assert cache.fetches == 1
    cache._fetched_at -= 3600  # past max_age
    assert cache.held("k1") is None
    with nonblocking.forbidden(), pytest.raises(nonblocking.WouldBlock):
        cache.resolve("k1")
    assert cache.fetches == 1


def test_no_broad_exception_handler_can_swallow_would_block() -> None:
    """WouldBlock is no Exception: an ``except Exception`` guard on the way (malformed input,
    an unexpected error turned into a refusal) cannot answer a request that must go to a
    worker."""
    with pytest.raises(nonblocking.WouldBlock), nonblocking.forbidden():
        try:
            nonblocking.check("test")
        except Exception:  # noqa: BLE001 - the point of the test
            pytest.fail("swallowed")
    nonblocking.check("outside forbidden(): nothing raised")
