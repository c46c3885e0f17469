"""The agent's process-wide machinery in a forked child (issue #21's kept pool and MCP session).

A child made by ``fork`` inherits the parent's kept HTTP connections (their sockets are the
parent's too) and the kept MCP sessions, whose event loop thread does not exist in the child.
Reusing either would send the child's request on a connection the parent also uses (the two
processes' requests and answers interleave: a token or result can land in the wrong process),
or wait on a loop that never runs. The child must open its own connections and sessions, at
once, and leave the parent's working.
"""

from __future__ import annotations

import json
import os
import select
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from lab.agent import Agent, mcp_client
from lab.agent.mcp_client import ERAS, ToolCall, call_tools
from lab.config import Settings
from lab.serving import bind_socket
from tests.agent.kept_mcp import USERS, Audit
from tests.agent.test_connections import echo_app
from tests.agent.test_mcp_sessions import start_server

ALICE, BOB = sorted(USERS)
#: Every wait on the child is bounded: a hang is a failure, not a stuck test run.
CHILD_LIMIT_S = 20.0


def in_forked_child(work: Callable[[], Any]) -> Any:
    """``work()`` in a forked child; its JSON answer, or a failure if it hangs or raises."""
    if not hasattr(os, "fork"):
        if os.environ.get("CI") == "true":
            pytest.fail("os.fork is missing on a CI machine")
        pytest.skip("this platform has no fork")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 0
        try:
            answer = json.dumps({"value": work()})
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            answer, code = json.dumps({"error": repr(exc)}), 1
        os.write(write_end, answer.encode())
        os._exit(code)
    os.close(write_end)
    chunks: list[bytes] = []
    deadline = time.monotonic() + CHILD_LIMIT_S
    try:
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([read_end], [], [], left)
            if not ready:
                break
            chunk = os.read(read_end, 65536)
            if not chunk:
                break
            chunks.append(chunk)
        finished, _ = os.waitpid(pid, os.WNOHANG)
        if finished == 0 and not chunks:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail(f"the forked child did not finish within {CHILD_LIMIT_S:.0f} s")
        if finished == 0:
            os.waitpid(pid, 0)
    finally:
        os.close(read_end)
    answer = json.loads(b"".join(chunks))
    assert "error" not in answer, answer["error"]
    return answer["value"]


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
