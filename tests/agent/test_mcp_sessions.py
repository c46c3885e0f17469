"""The agent keeps one MCP session per server for the whole process (``lab.agent.mcp_sessions``):
each call still carries its own agent's token and lands in its own recording, refusals stay
the refused agent's, and the session comes back after restarts, closed connections and a
server that lost it. No call hangs, and process exit does not wait on the kept sessions."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn

from lab.agent import mcp_client, mcp_sessions
from lab.agent.mcp_client import ERAS, ToolCall, ToolResult, call_tools
from lab.agent.mcp_sessions import SESSIONS, KeptSession
from lab.agent.recorder import REDACTED, Recorder
from lab.serving import ServerThread, bind_socket, uvicorn_config
from tests.agent.kept_mcp import USERS, WEAK_TOKEN, Audit, create_kept_mcp_app

ALICE, BOB = sorted(USERS)
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class KeptServer:
    url: str
    audit: Audit
    port: int
    server: ServerThread


def start_server(port: int, audit: Audit, **config: object) -> ServerThread:
    sock = bind_socket("127.0.0.1", port)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/mcp"
    server = ServerThread(create_kept_mcp_app(url, audit), sock)
    if config:
        settings = uvicorn_config(server.server.config.app)
        for name, value in config.items():
            setattr(settings, name, value)
        server.server = uvicorn.Server(settings)
    server.start()
    return server


@pytest.fixture
def kept_server() -> Iterator[KeptServer]:
    audit = Audit()
    server = start_server(0, audit)
    port = server.sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/mcp"
    ERAS.forget(url)  # a port used before in this process: start from what a fresh one knows
    holder = KeptServer(url, audit, port, server)
    try:
        yield holder
    finally:
        holder.server.stop()


@pytest.fixture
def opens(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The URL of every MCP session the agent opens."""
    opened: list[str] = []
    original = KeptSession.open

    async def counting(self: KeptSession, call: mcp_sessions.CallContext) -> None:
        opened.append(self.url)
        await original(self, call)

    monkeypatch.setattr(KeptSession, "open", counting)
    return opened


def whoami(
    url: str, token: str | None, recorder: Recorder | None = None, pause_s: float = 0.0
) -> ToolResult:
    (result,) = call_tools(url, token, [ToolCall("whoami", {"pause_s": pause_s})], recorder)
    return result


def caller(result: ToolResult) -> str:
    assert not result.is_error, result.text
    return str(result.data["caller"])


def test_a_later_call_reuses_the_kept_session(kept_server: KeptServer, opens: list[str]) -> None:
    for _ in range(3):
        assert caller(whoami(kept_server.url, ALICE)) == "human.alice"
    assert opens == [kept_server.url]


def test_concurrent_agents_each_send_only_their_own_token_and_see_their_own_results(
    kept_server: KeptServer, opens: list[str]
) -> None:
    """Two users' agents and two refused ones, from eight threads at once, on one session."""
    whoami(kept_server.url, ALICE)  # the session every call below shares
    kept_server.audit.bearers.clear()
    tokens = [ALICE, BOB, "unknown.token.sig", WEAK_TOKEN] * 2
    recorders = [Recorder() for _ in tokens]

    def agent(index: int) -> list[ToolResult]:
        return [
            whoami(kept_server.url, tokens[index], recorders[index], pause_s=0.01) for _ in range(4)
        ]

    with ThreadPoolExecutor(len(tokens)) as pool:
        outcomes = list(pool.map(agent, range(len(tokens))))

    for token, recorder, results in zip(tokens, recorders, outcomes, strict=True):
        if token in USERS:
            assert {caller(result) for result in results} == {USERS[token]}
        else:
            status = 403 if token == WEAK_TOKEN else 401
            assert all(result.is_error and result.http_status == status for result in results)
            expected = "insufficient_scope" if token == WEAK_TOKEN else "invalid_token"
            assert all(expected in result.text for result in results)
        # Each agent's recording holds its own four requests, its token redacted and kept.
        assert len(recorder.exchanges) == 4
        assert {e.request_headers["authorization"] for e in recorder.exchanges} == {
            f"Bearer {REDACTED}"
        }
        assert {t.value for e in recorder.exchanges for t in e.tokens} == {token}
    # The server saw each token exactly as often as its agent sent it, and no request bare.
    assert sorted(kept_server.audit.bearers, key=str) == sorted(tokens * 4, key=str)
    assert opens == [kept_server.url]


def test_a_refused_agent_leaves_the_session_to_the_others(
    kept_server: KeptServer, opens: list[str]
) -> None:
    assert caller(whoami(kept_server.url, ALICE)) == "human.alice"
    assert whoami(kept_server.url, None).http_status == 401
    assert whoami(kept_server.url, "unknown.token.sig").http_status == 401
    assert whoami(kept_server.url, WEAK_TOKEN).http_status == 403
    assert caller(whoami(kept_server.url, BOB)) == "human.bob"
    assert opens == [kept_server.url]  # never dropped nor reopened for a refusal


def test_a_session_refused_at_its_opening_is_not_kept_for_the_next_agent(
    kept_server: KeptServer, opens: list[str]
) -> None:
    assert whoami(kept_server.url, None).http_status == 401
    assert caller(whoami(kept_server.url, BOB)) == "human.bob"
    # The refused opening (its probe, then the handshake fallback) carried no token; every
    # request after it was Bob's own.
    bearers = kept_server.audit.bearers
    first_bob = bearers.index(BOB)
    assert first_bob > 0 and set(bearers[:first_bob]) == {None}
    assert set(bearers[first_bob:]) == {BOB}


def test_the_session_comes_back_after_the_server_restarts_on_its_port(
    kept_server: KeptServer, opens: list[str]
) -> None:
    assert caller(whoami(kept_server.url, ALICE)) == "human.alice"
    kept_server.server.stop()
    kept_server.audit = Audit()
    kept_server.server = start_server(kept_server.port, kept_server.audit)
    assert caller(whoami(kept_server.url, BOB)) == "human.bob"
    assert kept_server.audit.bearers == [BOB]  # one request, on a new connection


def test_a_connection_the_server_closed_is_replaced(opens: list[str]) -> None:
    audit = Audit()
    server = start_server(0, audit, timeout_keep_alive=0.05)
    url = f"http://127.0.0.1:{server.sock.getsockname()[1]}/mcp"
    ERAS.forget(url)
    try:
        for token in (ALICE, BOB, ALICE):
            assert caller(whoami(url, token)) == USERS[token]
            time.sleep(0.2)  # the server has closed the idle connection by now
    finally:
        server.stop()
    assert opens == [url]


def test_a_server_that_lost_the_session_gets_the_call_on_a_new_one(
    kept_server: KeptServer, opens: list[str]
) -> None:
    assert caller(whoami(kept_server.url, ALICE)) == "human.alice"
    kept_server.audit.lose_session = 1
    recorder = Recorder()
    assert caller(whoami(kept_server.url, BOB, recorder)) == "human.bob"
    assert opens == [kept_server.url, kept_server.url]
    # The learner sees both: the 404 and the call that then went through.
    assert [e.status for e in recorder.exchanges] == [404, 200]
    assert kept_server.audit.ran == 2  # Alice's call, then Bob's once: the 404 ran nothing


def test_a_second_404_after_the_new_session_is_the_calls_error_not_another_retry(
    kept_server: KeptServer, opens: list[str]
) -> None:
    """The stale-session retry happens once: a server that answers 404 again (it lost the
    new session too, or the endpoint is gone) fails the call with that 404 for the learner
    to see, instead of a loop of new sessions."""
    assert caller(whoami(kept_server.url, ALICE)) == "human.alice"
    kept_server.audit.bearers.clear()
    kept_server.audit.lose_session = 5  # more 404s than a bounded retry could use up
    recorder = Recorder()
    result = whoami(kept_server.url, BOB, recorder)
    assert result.is_error and result.http_status == 404
    assert opens == [kept_server.url, kept_server.url]  # one replacement, no more
    assert kept_server.audit.bearers == [BOB, BOB]  # the call and its one retry
    assert [e.status for e in recorder.exchanges] == [404, 404]
    assert kept_server.audit.ran == 1  # only Alice's call ever reached the tool
    # Once the server knows sessions again, the next call works on a session of its own.
    kept_server.audit.lose_session = 0
    assert caller(whoami(kept_server.url, ALICE)) == "human.alice"


def test_a_kept_session_whose_transport_died_is_replaced_before_the_call_is_lost(
    kept_server: KeptServer, opens: list[str]
) -> None:
    assert caller(whoami(kept_server.url, ALICE)) == "human.alice"
    kept = SESSIONS._kept[kept_server.url]
    assert kept.http is not None
    SESSIONS._thread.run(lambda: kept.http.aclose(), 5)  # type: ignore[union-attr]
    assert caller(whoami(kept_server.url, BOB)) == "human.bob"
    assert opens == [kept_server.url, kept_server.url]


def test_a_changed_server_url_gets_its_own_session(
    kept_server: KeptServer, opens: list[str]
) -> None:
    other = Audit()
    server = start_server(0, other)
    url = f"http://127.0.0.1:{server.sock.getsockname()[1]}/mcp"
    try:
        assert caller(whoami(kept_server.url, ALICE)) == "human.alice"
        assert caller(whoami(url, BOB)) == "human.bob"
    finally:
        server.stop()
    assert kept_server.audit.bearers[-1] == ALICE and set(other.bearers) == {BOB}
    assert opens == [kept_server.url, url]


def test_a_call_that_gets_no_answer_times_out(
    kept_server: KeptServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert caller(whoami(kept_server.url, ALICE)) == "human.alice"
    monkeypatch.setattr(mcp_client, "TIMEOUT_S", 0.3)
    start = time.monotonic()
    result = whoami(kept_server.url, ALICE, pause_s=30)
    assert result.is_error and "MCP call failed" in result.text
    assert time.monotonic() - start < 5
    assert caller(whoami(kept_server.url, BOB)) == "human.bob"


def test_calls_from_inside_a_running_event_loop_use_the_kept_session(
    kept_server: KeptServer, opens: list[str]
) -> None:
    async def inside() -> str:
        return caller(whoami(kept_server.url, ALICE))

    assert asyncio.run(inside()) == "human.alice"
    assert caller(whoami(kept_server.url, BOB)) == "human.bob"
    assert opens == [kept_server.url]


EXITS = """
import sys, threading, time
from lab.agent.mcp_client import ToolCall, call_tools
url, token, mode = sys.argv[1:]
call = lambda pause: call_tools(url, token, [ToolCall("whoami", {"pause_s": pause})])
assert not call(0)[0].is_error
if mode == "pending":  # a call still waiting for its answer when the process ends
    threading.Thread(target=call, args=(30,), daemon=True).start()
    time.sleep(0.3)
print("done", flush=True)
"""


@pytest.mark.parametrize("mode", ["idle", "pending"])
def test_process_exit_does_not_wait_on_the_kept_sessions(
    kept_server: KeptServer, mode: str
) -> None:
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", EXITS, kept_server.url, ALICE, mode],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "done"
    assert "Traceback" not in done.stderr
    # Start-up (the SDK's import) dominates; a hang on exit would take the 30 s pause.
    assert time.monotonic() - start < 20


def test_sessions_close_and_reopen_after_close_all(
    kept_server: KeptServer, opens: list[str]
) -> None:
    assert caller(whoami(kept_server.url, ALICE)) == "human.alice"
    SESSIONS.close_all()
    assert caller(whoami(kept_server.url, BOB)) == "human.bob"
    assert opens == [kept_server.url, kept_server.url]


def test_a_kept_session_ends_with_the_era_it_adopted(
    kept_server: KeptServer, opens: list[str]
) -> None:
    """Once the process forgets what the server said (its ttlMs ran out, or a JSON-RPC error
    cast doubt on it), the next call negotiates afresh, on a new session, as a new agent would."""
    assert caller(whoami(kept_server.url, ALICE)) == "human.alice"
    ERAS.forget(kept_server.url)
    recorder = Recorder()
    assert caller(whoami(kept_server.url, BOB, recorder)) == "human.bob"
    assert opens == [kept_server.url, kept_server.url]
    assert '"server/discover"' in recorder.exchanges[0].request_body


def test_a_session_that_cannot_open_in_time_fails_the_call_quietly(
    kept_server: KeptServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(mcp_sessions, "OPEN_TIMEOUT_S", 0.2)
    monkeypatch.setattr(mcp_client, "TIMEOUT_S", 0.5)  # the handshake's own request gives up
    kept_server.audit.stall_s = 1.0
    start = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        result = whoami(kept_server.url, ALICE)
        assert result.is_error and "TimeoutError" in result.text
        assert time.monotonic() - start < 5
        SESSIONS._thread.run(lambda: asyncio.sleep(1), 5)  # the keeper's late failure has landed
        gc.collect()
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]


@pytest.fixture
def listings(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Each listing the kept sessions took (from the shared store or the wire)."""
    taken: list[str] = []
    original = mcp_client.list_for_calls

    async def counting(client: object) -> mcp_client.Listed:
        taken.append("listed")
        return await original(client)  # type: ignore[arg-type]

    monkeypatch.setattr(mcp_client, "list_for_calls", counting)
    return taken


def test_a_kept_session_lists_the_tools_once_while_the_store_serves_that_listing(
    kept_server: KeptServer, listings: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SDK served the same listing from the shared store, as a deep copy, on every call."""
    for _ in range(3):
        assert caller(whoami(kept_server.url, ALICE)) == "human.alice"
    assert listings == ["listed"]
    kept = SESSIONS._kept[kept_server.url]
    assert kept.listed is not None and kept.listed.until is not None
    # The store's entry runs out (the server's ttlMs): the next call lists again.
    later = kept.listed.until + 1
    monkeypatch.setattr(mcp_client.time, "time", lambda: later)
    assert caller(whoami(kept_server.url, BOB)) == "human.bob"
    assert listings == ["listed", "listed"]


def test_an_evicted_listing_is_taken_again_by_the_kept_session(
    kept_server: KeptServer, listings: list[str]
) -> None:
    """A ``list_changed`` notification evicts the store's entry: the session lists afresh."""
    assert caller(whoami(kept_server.url, ALICE)) == "human.alice"
    asyncio.run(mcp_client.LISTINGS.clear())
    assert caller(whoami(kept_server.url, ALICE)) == "human.alice"
    assert listings == ["listed", "listed"]
