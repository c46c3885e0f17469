"""``GET /healthz/policy`` with ``Cache-Control: max-age=0``: the document API revalidates its
copy with the PDP at once (issue #21: a step's policy wait is one round trip), sharing and
rate-bounding the fetches so no caller can make it hammer the PDP."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from types import SimpleNamespace

import httpx
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from lab.config import Settings
from lab.docapi.app import create_app
from lab.oauth.resource_server import asks_revalidation
from lab.steps.actions import wait
from tests.docapi.zts_standin import ZtsStandIn

REVALIDATE = {"Cache-Control": "max-age=0"}


class CountingApp:
    """Counts the requests that reach the wrapped app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.requests = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.requests += 1
        await self.app(scope, receive, send)


@dataclass
class SlowRefreshDocApi:
    url: str
    zts: ZtsStandIn
    counted: CountingApp


@pytest.fixture
def docapi(
    lab_settings: Settings,
    reserved_sockets: dict[str, socket.socket],
    serve: Callable[..., str],
    zts: ZtsStandIn,
) -> SlowRefreshDocApi:
    # A refresh interval far longer than any test: only a revalidation can bring a write in.
    settings = replace(lab_settings, policy_refresh_s=60.0)
    counted = CountingApp(create_app(settings, protected=True))
    url = serve(counted, reserved_sockets["docapi_protected"])
    return SlowRefreshDocApi(url=url, zts=zts, counted=counted)


def test_max_age_0_brings_a_write_in_with_one_conditional_fetch(docapi: SlowRefreshDocApi) -> None:
    docapi.zts.allow("api:role.docs-getter", "get")
    before = httpx.get(f"{docapi.url}/healthz/policy").json()
    time.sleep(0.15)  # past the rate bound of any earlier revalidation
    unchanged = httpx.get(f"{docapi.url}/healthz/policy", headers=REVALIDATE).json()
    assert unchanged["version"] == before["version"]
    assert unchanged["fetched_at"] > before["fetched_at"]  # confirmed (a 304), so newer

    docapi.zts.allow("api:role.docs-poster", "post")
    plain = httpx.get(f"{docapi.url}/healthz/policy").json()
    assert plain["version"] == before["version"]  # within refresh_s: the old copy, as before
    time.sleep(0.15)
    fetches = docapi.zts.policy_fetches
    asked = time.time()
    after = httpx.get(f"{docapi.url}/healthz/policy", headers=REVALIDATE).json()
    assert after["version"] != before["version"] and after["fetched_at"] >= asked
    assert docapi.zts.policy_fetches == fetches + 1


def test_concurrent_revalidations_cost_the_pdp_at_most_one_fetch(
    docapi: SlowRefreshDocApi,
) -> None:
    docapi.zts.allow("api:role.docs-getter", "get")
    httpx.get(f"{docapi.url}/healthz/policy")
    time.sleep(0.15)
    fetches = docapi.zts.policy_fetches

    async def many() -> list[httpx.Response]:
        async with httpx.AsyncClient(headers=REVALIDATE) as client:
            return list(
                await asyncio.gather(
                    *(client.get(f"{docapi.url}/healthz/policy") for _ in range(24))
                )
            )

    started = time.monotonic()
    responses = asyncio.run(many())
    elapsed = time.monotonic() - started
    assert all(response.status_code == 200 for response in responses)
    # One fetch for the first caller; a second only if the burst outlasted the 100 ms bound.
    assert docapi.zts.policy_fetches - fetches <= 1 + int(elapsed / 0.1)
    if elapsed < 0.1:
        assert docapi.zts.policy_fetches - fetches == 1


def test_a_stream_of_revalidations_is_bounded_to_one_fetch_per_100_ms(
    docapi: SlowRefreshDocApi,
) -> None:
    httpx.get(f"{docapi.url}/healthz/policy")
    fetches = docapi.zts.policy_fetches
    answered = 0
    started = time.monotonic()
    with httpx.Client(headers=REVALIDATE) as client:
        while time.monotonic() - started < 0.6:
            assert client.get(f"{docapi.url}/healthz/policy").status_code == 200
            answered += 1
    elapsed = time.monotonic() - started
    caused = docapi.zts.policy_fetches - fetches
    assert 1 <= caused <= int(elapsed / 0.1) + 1
    assert answered > caused


def test_the_policy_wait_after_a_write_is_one_round_trip(docapi: SlowRefreshDocApi) -> None:
    docapi.zts.allow("api:role.docs-getter", "get")
    old = httpx.get(f"{docapi.url}/healthz/policy").json()["version"]
    time.sleep(0.15)
    docapi.zts.allow("api:role.docs-poster", "post")
    requests = docapi.counted.requests
    ctx = SimpleNamespace(endpoints=SimpleNamespace(docapi_protected=docapi.url))
    produced = wait.run({"policy": ["docapi"]}, ctx)  # type: ignore[arg-type]
    assert docapi.counted.requests == requests + 1
    assert produced.outcome.result["policy"]["docapi"]["version"] != old


@pytest.mark.parametrize(
    ("header", "asks"),
    [
        ("max-age=0", True),
        ("no-cache", True),
        ("No-Cache, max-age=60", True),
        ('max-age="0"', True),
        ("max-age=5", False),
        ("max-age=00x", False),
        ("no-store", False),
        ("", False),
        (None, False),
    ],
)
def test_which_cache_control_values_ask_for_a_revalidation(header: str | None, asks: bool) -> None:
    assert asks_revalidation(header) is asks
