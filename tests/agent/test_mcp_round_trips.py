"""A tool call through the lab's agent is one HTTP round trip once the server is known: the
protocol era (``server/discover``) and the tool list are kept for as long as the server's
SEP-2549 ``ttlMs`` says, and the RFC 9728/8414 discovery is reused by later agents."""

from __future__ import annotations

import json

import mcp_types

from lab.agent import Agent, Recorder
from lab.agent.discovery import DISCOVERIES, DiscoveryCache
from lab.agent.mcp_client import ERAS, LEGACY_ERA_S, ServerEras
from lab.config import Settings
from tests.agent.fake_mcp import GOOD_TOKEN
from tests.agent.labsetup import RunningLab


def methods(recorder: Recorder) -> list[str]:
    found = []
    for exchange in recorder.exchanges:
        try:
            request = json.loads(exchange.request_body or "null")
        except ValueError:
            continue
        if isinstance(request, dict) and "method" in request:
            found.append(request["method"])
    return found


def access_token(agent: Agent) -> str:
    signed_in = agent.sign_in("idjag-learner", "password")
    token = agent.redeem_id_jag(agent.request_id_jag(signed_in.id_token).token).token
    assert token is not None
    return token


def test_a_later_tool_call_to_the_lab_mcp_server_is_one_round_trip(
    running_lab: RunningLab,
) -> None:
    ERAS.forget(running_lab.endpoints.mcp)
    with Agent(running_lab.endpoints, running_lab.settings) as agent:
        token = access_token(agent)
    first, second = Recorder(), Recorder()
    for recorder in (first, second):
        with Agent(running_lab.endpoints, running_lab.settings, recorder) as agent:
            result = agent.call_tool(token, "list_docs")
            assert not result.is_error, result.text
            assert result.data["docs"]
    assert methods(first) == ["server/discover", "tools/list", "tools/call"]
    assert methods(second) == ["tools/call"]
    assert len(second.exchanges) == 1


def test_a_server_without_freshness_hints_is_negotiated_every_time(
    lab_settings: Settings, fake_mcp_url: str
) -> None:
    from dataclasses import replace

    endpoints = replace(lab_settings.endpoints, mcp=fake_mcp_url)
    for _ in range(2):
        recorder = Recorder()
        with Agent(endpoints, lab_settings, recorder) as agent:
            assert not agent.call_tool(GOOD_TOKEN, "list_docs").is_error
        assert methods(recorder) == ["server/discover", "tools/list", "tools/call"]


def test_a_later_agent_reuses_the_discovered_authorization_server(
    running_lab: RunningLab,
) -> None:
    DISCOVERIES.clear()
    with Agent(running_lab.endpoints, running_lab.settings) as first:
        server = first.authorization_server
        assert len(first.discovery_exchanges) == 3  # 401 probe, RFC 9728, RFC 8414
    with Agent(running_lab.endpoints, running_lab.settings) as second:
        assert second.authorization_server == server
        assert second.discovery_exchanges == []


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def discover_result(ttl_ms: int) -> mcp_types.DiscoverResult:
    return mcp_types.DiscoverResult.model_validate(
        {
            "supportedVersions": ["2026-07-28"],
            "capabilities": {},
            "serverInfo": {"name": "s", "version": "1"},
            "ttlMs": ttl_ms,
        }
    )


def test_server_eras_keep_a_discover_result_for_its_ttl_only() -> None:
    clock = Clock()
    eras = ServerEras(clock)
    result = discover_result(5_000)
    eras.remember("http://a/mcp", result)
    assert eras.get("http://a/mcp") == (True, result)
    clock.now += 5.0
    assert eras.get("http://a/mcp") == (False, None)


def test_server_eras_never_keep_a_result_the_server_says_is_stale() -> None:
    eras = ServerEras(Clock())
    eras.remember("http://a/mcp", discover_result(0))
    assert eras.get("http://a/mcp") == (False, None)


def test_server_eras_keep_a_handshake_era_verdict_for_a_fixed_time() -> None:
    clock = Clock()
    eras = ServerEras(clock)
    eras.remember("http://legacy/mcp", None)
    assert eras.get("http://legacy/mcp") == (True, None)
    clock.now += LEGACY_ERA_S
    assert eras.get("http://legacy/mcp") == (False, None)


def test_discovery_cache_expires_and_is_bounded() -> None:
    from lab.agent.discovery import AuthorizationServer, Discovery

    clock = Clock()
    cache = DiscoveryCache(ttl_s=10, clock=clock)
    found = Discovery("http://m/mcp", "http://m/prm", AuthorizationServer("http://as", "http://t"))
    cache.put("http://m/mcp", None, found)
    assert cache.get("http://m/mcp", None) is found
    assert cache.get("http://m/mcp", "http://other-as") is None  # a pinned issuer is its own key
    clock.now += 10
    assert cache.get("http://m/mcp", None) is None
    for index in range(100):
        cache.put(f"http://m{index}/mcp", None, found)
    assert len(cache._found) <= 64
