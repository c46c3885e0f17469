"""``lab gateway --stdio`` against a misbehaving client (no lab needed: the transport is tested).

Malformed lines are answered (JSON-RPC 2.0 §5.1), a huge line is never held whole, a client that
never reads its stdout cannot make the gateway grow, and EOF or a stop signal ends it with 0.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from lab.gateway.stdio import LineSplitter, Oversized, Pending
from tests.gateway.stdio_wire import StdioGateway, lab_env, tool_text

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/<pid>/status")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return lab_env(tmp_path / "home")


def test_splitter_drops_an_oversized_line_without_keeping_it() -> None:
    splitter = LineSplitter(limit=10)
    assert splitter.feed(b"short\nlonger") == [b"short"]
    assert splitter.feed(b"-than-ten") == []
    assert splitter.partial == len(b"longer-than-ten")
    assert len(splitter._buffer) == 0  # noqa: SLF001 - the point: nothing of it is kept
    out = splitter.feed(b"-still\nok\n")
    assert isinstance(out[0], Oversized) and out[0].size == len(b"longer-than-ten-still")
    assert out[1:] == [b"ok"]


async def test_pending_admits_up_to_its_limit_and_settles_each_id_once() -> None:
    import anyio

    pending = Pending(limit=2)
    await pending.admit(1)
    await pending.admit("a")
    with anyio.move_on_after(0.2) as waited:
        await pending.admit(3)
    assert waited.cancelled_caught  # full: the reader would stop reading stdin here
    pending.settle(1)
    pending.settle(1)  # an answer after a cancellation frees nothing twice
    await pending.admit(3)
    assert pending.count == 2


@pytest.mark.parametrize(
    ("line", "code"),
    [
        (b"hello", -32700),
        (b"\xff\xfe\x00garbage", -32700),
        (b'{"jsonrpc":"2.0","id":5,"method":', -32700),
        (b"[1, 2]", -32600),
        (b'{"jsonrpc":"1.0","id":5,"method":"tools/list"}', -32600),
    ],
)
def test_a_line_that_is_not_json_rpc_is_answered_with_id_null(
    env: dict[str, str], line: bytes, code: int
) -> None:
    with StdioGateway(env) as gateway:
        gateway.initialize()
        gateway.write(line + b"\n")
        answer = gateway.answer(None)  # type: ignore[arg-type]
        assert answer["error"]["code"] == code, answer
        listed = gateway.call("tools/list")  # the session goes on
        assert "result" in listed, listed
        gateway.close_stdin()
        assert gateway.wait() == 0, gateway.describe()
        gateway.assert_stdout_is_only_json_rpc()


@linux_only
def test_a_huge_line_is_refused_without_holding_it(env: dict[str, str]) -> None:
    size = 48 * 1024 * 1024
    with StdioGateway(env) as gateway:
        gateway.initialize()
        before = gateway.peak_memory_kb()
        chunk = b'{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"x":"' + b"x" * 65000
        for _ in range(size // len(chunk)):
            gateway.write(chunk)
        gateway.write(b'"}}\n')
        answer = gateway.answer(None)  # type: ignore[arg-type]
        assert answer["error"]["code"] == -32600 and "larger than" in answer["error"]["message"]
        assert "result" in gateway.call("tools/list")
        grown_mb = (gateway.peak_memory_kb() - before) / 1024
        assert grown_mb < 16, f"the gateway grew {grown_mb:.0f} MB reading a 48 MB line"
        gateway.close_stdin()
        assert gateway.wait() == 0, gateway.describe()


def test_eof_in_the_middle_of_a_message_exits_0(env: dict[str, str]) -> None:
    with StdioGateway(env) as gateway:
        gateway.initialize()
        gateway.write(b'{"jsonrpc":"2.0","id":9,"method":"tools/li')
        gateway.close_stdin()
        assert gateway.wait() == 0, gateway.describe()
        assert b"Traceback" not in gateway.stderr, gateway.describe()


def test_a_closed_stdin_before_anything_exits_0(env: dict[str, str]) -> None:
    with StdioGateway(env) as gateway:
        gateway.close_stdin()
        assert gateway.wait() == 0, gateway.describe()
        assert gateway.stdout == []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_stop_signal_ends_the_gateway_with_0(env: dict[str, str], signum: int) -> None:
    with StdioGateway(env) as gateway:
        gateway.initialize()  # stdin stays open: the gateway is blocked reading it
        gateway.signal(signum)
        assert gateway.wait() == 0, gateway.describe()
        assert b"Traceback" not in gateway.stderr, gateway.describe()


@linux_only
def test_a_client_that_never_reads_stdout_cannot_make_the_gateway_grow(
    env: dict[str, str],
) -> None:
    """The gateway stops reading stdin once its answers back up: the client's writes block
    (pipe semantics), and a stop signal still ends the gateway though its writer is stuck."""
    call = b'{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"list_docs"}}\n'
    init = (
        b'{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":'
        b'"2025-06-18","capabilities":{},"clientInfo":{"name":"deaf","version":"0"}}}\n'
        b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n'
    )
    total = 20_000
    with StdioGateway(env, read_stdout=False) as gateway:
        sent = [0]

        def flood() -> None:
            try:
                gateway.write(init)
                for n in range(1, total + 1):
                    gateway.write(call % n)
                    sent[0] = n
            except (BrokenPipeError, ValueError, OSError):
                return

        threading.Thread(target=flood, daemon=True).start()
        time.sleep(8)
        assert sent[0] < total, "the gateway kept reading requests it could not answer"
        assert gateway.peak_memory_kb() < 400 * 1024, gateway.describe()
        gateway.signal(signal.SIGTERM)
        assert gateway.wait() == 0, gateway.describe()


def test_a_tool_call_answer_is_json_rpc_only_on_stdout(env: dict[str, str]) -> None:
    with StdioGateway(env) as gateway:
        gateway.initialize()
        called = gateway.call("tools/call", {"name": "list_docs", "arguments": {}})
        assert "`lab up`" in tool_text(called)
        gateway.close_stdin()
        assert gateway.wait() == 0
        gateway.assert_stdout_is_only_json_rpc()
        assert b"lab up" in gateway.stderr  # the log went to stderr
