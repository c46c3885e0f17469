"""The agent's shared MCP session loop (lab.agent.mcp_sessions, issue #21) when one caller's
own callback fails: a recorder hook that raises runs on the loop thread, inside the session's
HTTP transport, next to every other agent's calls on the same session."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from lab.agent import mcp_client, mcp_sessions
from lab.agent.mcp_client import ERAS, ToolCall, ToolResult, call_tools
from lab.agent.mcp_sessions import SESSIONS, KeptSession
from lab.agent.recorder import Recorder
from lab.serving import ServerThread
from tests.agent.kept_mcp import USERS, Audit
from tests.agent.test_mcp_sessions import start_server

ALICE, BOB = sorted(USERS)


class BrokenRecorder(Recorder):
    """A caller's recorder with a bug: recording any answer raises."""

    def _record(self, response: Any) -> None:
        raise RuntimeError("recorder broke")


@pytest.fixture
def server_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setattr(mcp_client, "TIMEOUT_S", 5.0)  # a wedged call shows as a timeout
    server: ServerThread = start_server(0, Audit())
    url = f"http://127.0.0.1:{server.sock.getsockname()[1]}/mcp"
    ERAS.forget(url)
    try:
        yield url
    finally:
        server.stop()


def whoami(url: str, token: str, recorder: Recorder | None = None, pause_s: float = 0.0) -> Any:
    (result,) = call_tools(url, token, [ToolCall("whoami", {"pause_s": pause_s})], recorder)
    return result


def test_a_callers_raising_recorder_fails_only_that_caller(server_url: str) -> None:
    assert whoami(server_url, ALICE).data["caller"] == "human.alice"  # the session is kept
    with ThreadPoolExecutor(max_workers=4) as pool:
        others = [pool.submit(whoami, server_url, BOB, None, 0.5) for _ in range(3)]
        time.sleep(0.1)  # their calls are in flight on the shared session
        broken = pool.submit(whoami, server_url, ALICE, BrokenRecorder())
        results: list[ToolResult] = [future.result(30) for future in others]
    for result in results:  # the other agent's calls on the same session are untouched
        assert not result.is_error, result.text
        assert result.data["caller"] == "human.bob"
    # The caller whose recorder broke is told, in its own thread.
    with pytest.raises(RuntimeError, match="recording the MCP exchange failed.*recorder broke"):
        broken.result(30)
    assert whoami(server_url, BOB).data["caller"] == "human.bob"


def test_calls_in_flight_finish_when_their_session_is_replaced(
    server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[KeptSession] = []
    real_open = KeptSession.open

    async def recording(self: KeptSession, call: mcp_sessions.CallContext) -> None:
        opened.append(self)
        await real_open(self, call)

    monkeypatch.setattr(KeptSession, "open", recording)
    assert whoami(server_url, ALICE).data["caller"] == "human.alice"
    with ThreadPoolExecutor(max_workers=4) as pool:
        others = [pool.submit(whoami, server_url, BOB, None, 1.0) for _ in range(3)]
        time.sleep(0.3)  # in flight on the kept session
        ERAS.forget(server_url)  # its era ran out (the server's ttlMs): the next call replaces it
        assert whoami(server_url, ALICE).data["caller"] == "human.alice"
        results = [future.result(30) for future in others]
    for result in results:  # the replaced session served its calls to their end
        assert not result.is_error, result.text
        assert result.data["caller"] == "human.bob"
    assert len(opened) == 2
    assert opened[0].closed and not opened[1].closed  # the old one closed once unused


def test_calls_after_a_close_all_that_timed_out_open_a_new_session(
    server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert whoami(server_url, ALICE).data["caller"] == "human.alice"

    async def never_closes(self: KeptSession) -> None:
        await asyncio.sleep(3600)

    with monkeypatch.context() as patch:
        patch.setattr(KeptSession, "close", never_closes)
        SESSIONS.close_all()  # gives up after CLOSE_TIMEOUT_S and stops the loop anyway
    after = whoami(server_url, BOB)
    assert not after.is_error, after.text  # not a session of the stopped loop, waited out
    assert after.data["caller"] == "human.bob"
