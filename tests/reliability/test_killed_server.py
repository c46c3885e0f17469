"""A server killed (-9) under the agent's kept MCP session and kept HTTP pool (issue #21).

The server runs in a child process so it can die the way a runtime does under ``kill -9``: its
sockets reset, calls in flight get no answer. Calls then fail with a clear error in bounded
time (never hang); once a server answers on the port again, the kept session and pool re-open
by themselves, also when the port now belongs to a different server.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from lab.agent import Agent, mcp_client
from lab.agent.mcp_client import ERAS, ToolCall, ToolResult, call_tools
from lab.config import Settings
from tests.agent.kept_mcp import USERS

ALICE, BOB = sorted(USERS)
ROOT = Path(__file__).resolve().parents[2]
#: Every wait here is bounded; a call in flight when the server dies must end well before it.
CALL_LIMIT_S = 10.0

SERVE = """
import sys
import uvicorn
from lab.serving import bind_socket, uvicorn_config
kind, port = sys.argv[1], int(sys.argv[2])
sock = bind_socket("127.0.0.1", port)
if kind == "mcp":
    from tests.agent.kept_mcp import Audit, create_kept_mcp_app
    app = create_kept_mcp_app(f"http://127.0.0.1:{port}/mcp", Audit())
else:
    from tests.agent.test_connections import echo_app
    app = echo_app()
uvicorn.Server(uvicorn_config(app)).run(sockets=[sock])
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ChildServer:
    """One server process on a fixed port; ``kill()`` is ``kill -9``."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, kind: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", SERVE, kind, str(self.port)], cwd=ROOT
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "the server process exited at start"
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        pytest.fail(f"no {kind} server answered on port {self.port} within 30 s")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
def child_server() -> Iterator[ChildServer]:
    server = ChildServer(free_port())
    try:
        yield server
    finally:
        server.kill()


def whoami(url: str, token: str, pause_s: float = 0.0) -> ToolResult:
    (result,) = call_tools(url, token, [ToolCall("whoami", {"pause_s": pause_s})])
    return result


def bounded(call: Callable[[], ToolResult]) -> tuple[ToolResult, float]:
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def test_calls_in_flight_when_the_mcp_server_is_killed_fail_clearly_and_the_session_reopens(
    child_server: ChildServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mcp_client, "TIMEOUT_S", 5.0)  # a hang would show as a timeout
    url = f"http://127.0.0.1:{child_server.port}/mcp"
    ERAS.forget(url)
    child_server.start("mcp")
    assert whoami(url, ALICE).data["caller"] == "human.alice"  # the session is now kept

    with ThreadPoolExecutor(max_workers=4) as pool:
        in_flight = [
            pool.submit(bounded, lambda t=token: whoami(url, t, pause_s=30))
            for token in (ALICE, BOB, ALICE, BOB)
        ]
        time.sleep(0.5)  # the calls are sent and waiting for their answers
        child_server.kill()
        outcomes = [future.result(CALL_LIMIT_S + 5) for future in in_flight]
    for result, took in outcomes:
        assert result.is_error
        assert "127.0.0.1" in result.text or "MCP" in result.text, result.text
        assert took < CALL_LIMIT_S  # a reset, not the whole budget waited out

    down, took = bounded(lambda: whoami(url, BOB))
    assert down.is_error and took < CALL_LIMIT_S, down.text

    child_server.start("mcp")
    back = whoami(url, BOB)
    assert not back.is_error, back.text
    assert back.data["caller"] == "human.bob"


def test_a_port_taken_over_by_another_server_is_a_clear_error_then_recovers(
    child_server: ChildServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mcp_client, "TIMEOUT_S", 5.0)
    url = f"http://127.0.0.1:{child_server.port}/mcp"
    ERAS.forget(url)
    child_server.start("mcp")
    assert whoami(url, ALICE).data["caller"] == "human.alice"
    child_server.kill()
    child_server.start("echo")  # the port now serves something else: /mcp is a 404 there

    wrong, took = bounded(lambda: whoami(url, ALICE))
    assert wrong.is_error and took < CALL_LIMIT_S
    assert "404" in wrong.text, wrong.text

    child_server.kill()
    child_server.start("mcp")
    again = whoami(url, ALICE)
    assert not again.is_error, again.text
    assert again.data["caller"] == "human.alice"


def test_the_kept_http_pool_reconnects_to_a_server_restarted_on_its_port(
    child_server: ChildServer, lab_settings: Settings
) -> None:
    child_server.start("echo")
    echo = f"http://127.0.0.1:{child_server.port}/echo"
    with Agent(lab_settings.endpoints, lab_settings) as agent:
        first = agent.http.get(echo)
        assert first.status_code == 200
        child_server.kill()  # its kept keep-alive connection is now dead
        child_server.start("echo")
        again = agent.http.get(echo)
    assert again.status_code == 200
    assert again.json()["port"] != first.json()["port"]  # a new connection, not the stale one
