"""The agent's process-wide machinery in a forked child (issue #21's kept pool and MCP session).

A child made by ``fork`` inherits the parent's kept HTTP connections (their sockets are the
parent's too) and the kept MCP sessions, whose event loop thread does not exist in the child.
Reusing either would send the child's request on a connection the parent also uses (the two
processes' requests and answers interleave: a token or result can land in the wrong process),
or wait on a loop that never runs. The child must open its own connections and sessions, at
once, and leave the parent's working.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import pytest

from lab.agent import Agent, mcp_client
from lab.agent.mcp_client import ERAS, ToolCall, call_tools
from lab.config import Settings
from lab.serving import bind_socket
from tests.agent.kept_mcp import USERS, Audit
from tests.agent.test_connections import echo_app
from tests.agent.test_mcp_sessions import start_server
from tests.reliability.forking import in_forked_child

ALICE, BOB = sorted(USERS)


@pytest.fixture
def echo_url(serve: Callable[..., str]) -> Iterator[str]:
    sock: socket.socket = bind_socket("127.0.0.1", 0)
    yield serve(echo_app(), sock)


def test_a_forked_child_never_sends_on_the_parents_kept_connection(
    lab_settings: Settings, echo_url: str
) -> None:
    with Agent(lab_settings.endpoints, lab_settings) as parent:
        before = parent.http.get(f"{echo_url}/echo").json()["port"]

    def child() -> int:
        with Agent(lab_settings.endpoints, lab_settings) as agent:
            return int(agent.http.get(f"{echo_url}/echo").json()["port"])

    child_port = in_forked_child(child)
    with Agent(lab_settings.endpoints, lab_settings) as parent:
        after = parent.http.get(f"{echo_url}/echo").json()["port"]
    assert child_port != before  # its own TCP connection, not the parent's socket
    assert after == before  # the parent's kept connection still serves the parent


def test_a_forked_child_calls_tools_on_a_session_of_its_own() -> None:
    audit = Audit()
    server = start_server(0, audit)
    url = f"http://127.0.0.1:{server.sock.getsockname()[1]}/mcp"
    ERAS.forget(url)
    try:
        (first,) = call_tools(url, ALICE, [ToolCall("whoami", {})])
        assert first.data["caller"] == "human.alice"  # the parent now keeps a session

        def child() -> str | None:
            # Short budgets: a call waiting on the parent's loop fails here, not in 90 s.
            mcp_client.TIMEOUT_S = 3.0
            (result,) = call_tools(url, BOB, [ToolCall("whoami", {})])
            return None if result.is_error else str(result.data["caller"])

        assert in_forked_child(child) == "human.bob"
        (again,) = call_tools(url, ALICE, [ToolCall("whoami", {})])
        assert again.data["caller"] == "human.alice"  # the parent's session still works
    finally:
        server.stop()
