"""A resource server's policy copy on demand (``lab/oauth/resource_server.py``), in process:
which ``Cache-Control`` asks for revalidation, the rate bound's window, and what ``held()`` and
``health()`` report. For mutants ``make mutate`` found alive (docs/dev/mutation.md)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import pytest

import lab.oauth.resource_server as resource_server
from lab.oauth.resource_server import (
    PolicyCache,
    PolicyUnavailable,
    _Cached,
    asks_revalidation,
)


class _Policy:
    def __init__(self, expires_at: float | None = None) -> None:
        self.expires_at = expires_at


def _cache(**kwargs: Any) -> PolicyCache:
    return PolicyCache(
        "http://127.0.0.1:1/zts/v1",
        "api",
        None,  # type: ignore[arg-type]
        verify=lambda document, keys: _Policy(),  # type: ignore[arg-type,return-value]
        refresh_s=2.5,
        **kwargs,
    )


@pytest.mark.parametrize(
    ("header", "asks"),
    [
        (None, False),
        ("", False),
        ("max-age=0", True),
        ("MAX-AGE=0", True),
        ('max-age="0"', True),
        ("max-age = 0", True),
        ("private, max-age=0", True),
        ("no-cache", True),
        (" No-Cache ,private", True),
        ("max-age=10", False),
        ("max-age=", False),
        ("max-age", False),
        ("no-store", False),
        ("no-cache-please", False),
        ("x=no-cache", False),
        ("s-maxage=0", False),
        ("max-age=X0X", False),
    ],
)
def test_only_max_age_0_or_no_cache_asks_for_revalidation(header: str | None, asks: bool) -> None:
    assert asks_revalidation(header) is asks


def test_one_revalidation_may_start_per_window(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(resource_server.time, "monotonic", lambda: clock[0])
    cache = _cache(revalidate_min_s=0.5)
    assert cache._claim_revalidation() is True
    assert cache._claim_revalidation() is False
    clock[0] += 0.375
    assert cache._claim_revalidation() is False
    clock[0] += 0.125  # exactly the window after the first one (binary fractions: exact)
    assert cache._claim_revalidation() is True
    assert cache._claim_revalidation() is False


def test_the_default_window_is_100_ms(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(resource_server.time, "monotonic", lambda: clock[0])
    cache = _cache()
    assert cache._claim_revalidation() is True
    clock[0] += 0.099
    assert cache._claim_revalidation() is False
    clock[0] += 0.001
    assert cache._claim_revalidation() is True


def test_held_names_no_version_before_the_first_fetch() -> None:
    assert _cache().held() == {
        "domain": "api",
        "version": None,
        "fetched_at": None,
        "age_s": None,
        "refresh_s": 2.5,
    }


def test_held_reports_the_copys_version_send_time_and_age(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resource_server.time, "monotonic", lambda: 500.25)
    cache = _cache()
    cache._cached = _Cached(_Policy(), '"v7"', fetched_at=499.0, fetched_wall=1700000000.1234567)
    assert cache.held() == {
        "domain": "api",
        "version": '"v7"',
        "fetched_at": 1700000000.123457,
        "age_s": 1.25,
        "refresh_s": 2.5,
    }


def test_health_says_whether_a_request_could_be_decided_now() -> None:
    cache = _cache()
    assert cache.health() == (True, "policy data not fetched yet")
    assert cache._unavailable() == "signed policy data is being fetched; try again"
    cache._last_error = "the PDP answered 500 for the signed policy data of api"
    assert cache.health() == (False, "the PDP answered 500 for the signed policy data of api")
    assert cache._unavailable() == "the PDP answered 500 for the signed policy data of api"
    cache._cached = _Cached(_Policy(expires_at=1.0), None, fetched_at=0.0)  # long expired
    assert cache.health()[0] is False
    cache._cached = _Cached(_Policy(), None, fetched_at=0.0)
    assert cache.health() == (True, "policy data cached")


class _Fetches:
    """Stands in for the one network call: counts fetches, answers a copy or fails."""

    def __init__(self, cache: PolicyCache, fail: bool = False) -> None:
        self.count, self.fail = 0, fail
        cache._fetch = self  # type: ignore[method-assign]

    def __call__(self, cached: Any) -> _Cached:
        self.count += 1
        if self.fail:
            raise PolicyUnavailable("the PDP answered 503 for the signed policy data of api")
        return _Cached(_Policy(), f'"v{self.count}"', time.monotonic())


def test_a_revalidation_fetches_once_and_counts_one_finished_fetch() -> None:
    cache = _cache()
    fetches = _Fetches(cache)
    assert cache._revalidate() is True
    assert (fetches.count, cache._fetches_done) == (1, 1)
    assert cache._revalidate() is True
    assert (fetches.count, cache._fetches_done) == (2, 2)
    assert cache.held()["version"] == '"v2"'


def test_a_revalidation_never_waits_behind_a_fetch_in_flight() -> None:
    cache = _cache()
    fetches = _Fetches(cache)
    cache._refreshing.acquire()  # another caller's fetch is in flight
    answers: list[bool] = []
    worker = threading.Thread(target=lambda: answers.append(cache._revalidate()), daemon=True)
    worker.start()
    worker.join(timeout=2)
    cache._refreshing.release()
    assert answers == [False]  # at once: it shares the other fetch instead
    assert (fetches.count, cache._fetches_done) == (0, 0)


def test_revalidating_a_copy_that_goes_stale_at_once_fetches_once() -> None:
    # refresh_s=0: every ordinary read refetches; the revalidation's own answer is served.
    cache = PolicyCache(
        "http://127.0.0.1:1/zts/v1",
        "api",
        None,  # type: ignore[arg-type]
        verify=lambda document, keys: _Policy(),  # type: ignore[arg-type,return-value]
        refresh_s=0.0,
    )
    fetches = _Fetches(cache)
    policy = asyncio.run(cache.revalidate_async())
    assert policy is not None and fetches.count == 1


def test_a_failed_revalidation_says_it_serves_the_last_good_copy_only_when_it_has_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache = _cache()
    _Fetches(cache, fail=True)
    with caplog.at_level(logging.WARNING, logger=resource_server.log.name):
        cache._cached = _Cached(_Policy(expires_at=1.0), None, 0.0)  # expired: not usable
        assert cache._revalidate() is True
        assert "serving the last good copy" not in caplog.text
        cache._cached = _Cached(_Policy(), None, 0.0)
        assert cache._revalidate() is True
    assert "serving the last good copy" in caplog.text
    assert cache.health() == (True, "policy data cached")


class _Answer:
    def __init__(self, status_code: int) -> None:
        self.status_code, self.headers = status_code, {"etag": '"v9"'}

    def json(self) -> dict[str, Any]:
        return {}


@pytest.mark.parametrize("status", [200, 304, 404])
def test_a_copy_fetched_confirmed_or_found_missing_is_dated_by_when_its_request_was_sent(
    monkeypatch: pytest.MonkeyPatch, status: int
) -> None:
    # The PDP answers 5 s after the request left: a step that changed the policy within
    # those 5 s must not take this copy for one fetched after its change.
    from types import SimpleNamespace

    clock = [1_700_000_000.0]

    def get(url: str, **kwargs: Any) -> _Answer:
        clock[0] += 5
        return _Answer(status)

    monkeypatch.setattr(resource_server.time, "time", lambda: clock[0])
    cache = _cache()
    monkeypatch.setattr(cache, "_http", lambda: SimpleNamespace(get=get))  # the PDP's client
    cache._cached = _Cached(_Policy(), '"v1"', fetched_at=0.0, fetched_wall=0.0)
    assert cache._revalidate() is True
    assert cache.held()["fetched_at"] == 1_700_000_000.0


def test_each_call_holding_the_refresh_flag_counts_one_finished_fetch() -> None:
    # Callers sharing a fetch in flight wait until this count moves past what they saw.
    cache = _cache()
    fetches = _Fetches(cache)
    assert cache._fetches_done == 0
    assert cache._try_refresh() is not None
    assert (fetches.count, cache._fetches_done) == (1, 1)
    assert cache._try_refresh() is not None  # fresh now: no fetch, but it held the flag
    assert (fetches.count, cache._fetches_done) == (1, 2)


def test_held_rounds_the_age_to_microseconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resource_server.time, "monotonic", lambda: 500.2500004)
    cache = _cache()
    cache._cached = _Cached(_Policy(), '"v7"', fetched_at=499.0, fetched_wall=0.0)
    assert cache.held()["age_s"] == 1.25


def test_a_caller_sharing_a_fetch_that_outlives_the_timeout_gets_the_copy_held() -> None:
    # The fetch in flight never finishes: past the timeout the caller is answered with the
    # usable copy, not with None (which would read as "no such domain": everything denied).
    cache = _cache(timeout_s=0.05)
    held = _Policy()
    cache._cached = _Cached(held, '"v1"', fetched_at=time.monotonic())
    cache._refreshing.acquire()
    try:
        assert asyncio.run(cache.revalidate_async()) is held
    finally:
        cache._refreshing.release()
