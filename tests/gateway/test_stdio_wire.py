"""``lab gateway --stdio`` against a misbehaving client (no lab needed: the transport is tested).

Malformed lines are answered (JSON-RPC 2.0 §5.1), a huge line is never held whole, a client that
never reads its stdout cannot make the gateway grow, and EOF or a stop signal ends it with 0.
"""

from __future__ import annotations

import json
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
    ("line", "code", "id_"),
    [
        (b"hello", -32700, None),
        (b"\xff\xfe\x00garbage", -32700, None),
        (b'{"jsonrpc":"2.0","id":5,"method":', -32700, None),
        (b"[1, 2]", -32600, None),
        # JSON-RPC 2.0 §5.1: id null only when it could not be read; this one could.
        (b'{"jsonrpc":"1.0","id":5,"method":"tools/list"}', -32600, 5),
    ],
)
def test_a_line_that_is_not_json_rpc_is_answered_with_id_null(
    env: dict[str, str], line: bytes, code: int, id_: int | None
) -> None:
    with StdioGateway(env) as gateway:
        gateway.initialize()
        gateway.write(line + b"\n")
        answer = gateway.answer(id_)  # type: ignore[arg-type]
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


#: (a line, the answer's id, code and words): what the HTTP side answers for the same message
#: (lab.mcpserver.envelope), each line sent on stdin in one session.
ENVELOPE_LINES: list[tuple[bytes, object, int, str]] = [
    (json.dumps({"jsonrpc": "2.0", "id": 7, "method": "x" * 100_000}).encode(), 7, -32601, ""),
    (
        json.dumps(
            {"jsonrpc": "2.0", "id": 8, "method": "tools/call", "params": {"name": "y" * 100_000}}
        ).encode(),
        8,
        -32602,
        "'name' is 100000 characters long",
    ),
    (b'{"jsonrpc":"2.0","id":1180591620717411303424,"method":"tools/list"}', None, -32600, "'id'"),
    (
        json.dumps({"jsonrpc": "2.0", "id": "z" * 100_000, "method": "tools/list"}).encode(),
        None,
        -32600,
        "not a string of 100000 characters",
    ),
    (b'{"jsonrpc":"2.0","id":9,"id":10,"method":"tools/list"}', None, -32700, "appears twice"),
    (
        b'{"jsonrpc":"2.0","id":11,"method":"tools/call","params":'
        b'{"name":"get_doc","arguments":{"id":NaN}}}',
        None,
        -32700,
        "NaN is not a JSON number",
    ),
    (b'{"jsonrpc":"2.0","id":12,"method":"tools/list","params":[1]}', 12, -32602, "JSON object"),
    (
        b'{"jsonrpc":"2.0","id":13,"method":"tools/call","params":{"name":"get_doc",'
        b'"arguments":[1]}}',
        13,
        -32602,
        "Invalid params for tools/call: 'arguments' must be a JSON object, not an array",
    ),
]


def test_stdin_lines_pass_the_envelope_check_of_the_http_side(env: dict[str, str]) -> None:
    """Sixth session's outsider battery: stdio lines were checked by the SDK's models only, so
    a 100 KB method name came back whole in -32601's ``data``, a 100 KB tool name was logged
    whole, ids past 2^53 or of 100 KB were echoed, a member named twice was read as its last
    value, ``NaN`` passed, and the SDK's -32602 said only "Invalid request parameters". Now
    every line passes :func:`lab.mcpserver.envelope.check` and bare params errors are worded
    as at the MCP server. An over-long notification is dropped unanswered. Shown failing with
    ``read_message`` and ``_worded`` back as they were (7 of the 8 lines)."""
    with StdioGateway(env) as gateway:
        gateway.initialize()
        for line, *_ in ENVELOPE_LINES:
            gateway.write(line + b"\n")
        gateway.write(json.dumps({"jsonrpc": "2.0", "method": "n" * 100_000}).encode() + b"\n")
        assert "result" in gateway.call("tools/list"), gateway.describe()
        answers = [json.loads(line) for line in gateway.stdout[1:-1]]
        gateway.close_stdin()
        assert gateway.wait() == 0, gateway.describe()
    found = []
    for (line, id_, code, words), answer in zip(ENVELOPE_LINES, answers, strict=True):
        error = answer.get("error", {})
        text = f"{error.get('message', '')} {error.get('data', '')}"
        if (answer.get("id"), error.get("code")) != (id_, code) or words not in text:
            found.append(f"{line[:60]!r}: {json.dumps(answer)[:200]}")
    assert not found, "\n".join(found)
    assert max(len(line) for line in gateway.stdout) < 2000
    assert max(len(line) for line in bytes(gateway.stderr).splitlines()) < 2000
