"""The gateway's stdio transport: MCP on stdin/stdout for the AI client that launched it.

The SDK's ``stdio_server`` reads a line of any length into memory, drops a line that is not
JSON-RPC without a word, and blocks in a worker thread it cannot leave, so SIGTERM, SIGINT or a
client that stopped reading its end left the gateway hanging. This transport keeps the SDK's
protocol (one JSON-RPC message per line, UTF-8, MCP "Transports: stdio") and adds bounds:

- a line longer than :data:`MAX_MESSAGE_BYTES` is dropped as it arrives (never held whole) and
  answered ``-32600``; a line that is not JSON is answered ``-32700 Parse error``, one that is
  JSON but not JSON-RPC ``-32600 Invalid Request``, both with ``id: null`` (JSON-RPC 2.0 §5.1);
- every line passes the same envelope check as a message POSTed to the gateway's HTTP
  endpoint or the MCP server (:mod:`lab.mcpserver.envelope`): ids beyond 2^53 or of 100 KB,
  a member named twice, ``NaN``, a lone surrogate, a method or tool name of 100 KB are answered
  as there, never echoed back or passed on to be logged;
- at most :data:`MAX_PENDING` requests are in flight: past that the gateway stops reading
  stdin until answers have been written, so a client that never reads stdout costs a pipe's
  worth of memory, not one task per request;
- the blocking reads and writes run in daemon threads abandoned on cancellation, so SIGTERM,
  SIGINT, SIGHUP or EOF on stdin ends the gateway at once with exit 0.

While serving, fd 0 reads ``/dev/null`` and fd 1 goes to stderr (as the SDK's transport does):
a stray ``print``, a warning or a browser launcher's output can never reach the protocol channel.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any

import anyio
from anyio import CancelScope
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.server.lowlevel import Server
from mcp.shared.message import SessionMessage
from mcp.types import (
    INVALID_REQUEST,
    PARSE_ERROR,
    ErrorData,
    JSONRPCError,
    JSONRPCMessage,
    JSONRPCNotification,
    JSONRPCRequest,
    JSONRPCResponse,
    jsonrpc_message_adapter,
)
from pydantic import ValidationError

from lab.gateway.threads import DaemonWorker
from lab.mcpserver import envelope

log = logging.getLogger("lab.gateway")

MAX_MESSAGE_BYTES = 4 * 1024 * 1024  # a tool call's arguments with a large document fit
MAX_PENDING = 32
READ_CHUNK = 64 * 1024
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class Oversized:
    """A line past the limit (dropped); what arrived of it is counted, not kept."""

    def __init__(self) -> None:
        self.size = 0


class LineSplitter:
    """Bytes in, whole lines out; a line over ``limit`` comes out as one :class:`Oversized`."""

    def __init__(self, limit: int = MAX_MESSAGE_BYTES) -> None:
        self.limit = limit
        self._buffer = bytearray()
        self._dropping: Oversized | None = None

    def feed(self, chunk: bytes) -> list[bytes | Oversized]:
        out: list[bytes | Oversized] = []
        while chunk:
            end = chunk.find(b"\n")
            piece, chunk = (chunk, b"") if end < 0 else (chunk[:end], chunk[end + 1 :])
            if self._dropping is not None:
                self._dropping.size += len(piece)
            elif len(self._buffer) + len(piece) > self.limit:
                self._dropping = Oversized()
                self._dropping.size = len(self._buffer) + len(piece)
                self._buffer.clear()
            else:
                self._buffer.extend(piece)
            if end >= 0:
                if self._dropping is not None:
                    out.append(self._dropping)
                    self._dropping = None
                else:
                    out.append(bytes(self._buffer))
                    self._buffer.clear()
        return out

    @property
    def partial(self) -> int:
        """Bytes of an unfinished last line (left over at EOF)."""
        return self._dropping.size if self._dropping is not None else len(self._buffer)


class Pending:
    """Requests read but not answered yet, at most ``limit`` of them."""

    def __init__(self, limit: int = MAX_PENDING) -> None:
        self._slots = anyio.Semaphore(limit)
        self._ids: dict[Any, int] = {}
        self._requests: dict[Any, JSONRPCRequest] = {}

    async def admit(self, request_id: Any, request: JSONRPCRequest | None = None) -> None:
        await self._slots.acquire()
        self._ids[request_id] = self._ids.get(request_id, 0) + 1
        if request is not None:
            self._requests[request_id] = request

    def request(self, request_id: Any) -> JSONRPCRequest | None:
        """The request still waiting for its answer under ``request_id``, if one was kept."""
        return self._requests.get(request_id)

    def settle(self, request_id: Any) -> None:
        """Answered, or cancelled by the client (no answer will come, MCP "Cancellation")."""
        count = self._ids.get(request_id)
        if not count:
            return
        if count == 1:
            del self._ids[request_id]
            self._requests.pop(request_id, None)
        else:
            self._ids[request_id] = count - 1
        self._slots.release()

    @property
    def count(self) -> int:
        return sum(self._ids.values())


@dataclass(frozen=True)
class Refused:
    """A line that holds no JSON-RPC message, and the answer owed to it."""

    answer: JSONRPCError


def read_message(line: bytes) -> JSONRPCMessage | Refused | None:
    """The JSON-RPC message a line holds, validated once, or why it holds none; None for a
    notification to drop unanswered (a method name no MCP method has)."""
    try:
        parsed = envelope.check(line)
    except envelope.Dropped:
        return None
    except envelope.Refusal as refusal:
        error = ErrorData.model_validate(refusal.error())
        return Refused(JSONRPCError(jsonrpc="2.0", id=refusal.id, error=error))
    try:  # the message check() parsed, not the line parsed a second time
        return jsonrpc_message_adapter.validate_python(parsed, by_name=False)
    except ValidationError:
        pass
    try:
        json.loads(line)
    except ValueError:  # not JSON, or not UTF-8
        return Refused(_error(PARSE_ERROR, "Parse error: the line is not JSON"))
    return Refused(_error(INVALID_REQUEST, "Invalid Request: not a JSON-RPC 2.0 message"))


def _error(code: int, message: str) -> JSONRPCError:
    return JSONRPCError(jsonrpc="2.0", id=None, error=ErrorData(code=code, message=message))


@contextlib.contextmanager
def claimed_std_fds() -> Iterator[tuple[int, int]]:
    """Private duplicates of fd 0 and 1 for the protocol; fd 0 reads /dev/null and fd 1 writes
    to stderr meanwhile. Restored on exit."""
    wire_in = fcntl.fcntl(0, fcntl.F_DUPFD_CLOEXEC, 3)
    wire_out = fcntl.fcntl(1, fcntl.F_DUPFD_CLOEXEC, 3)
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        os.dup2(null, 0)
        os.dup2(2, 1)
    finally:
        os.close(null)
    try:
        yield wire_in, wire_out
    finally:
        os.dup2(wire_in, 0)
        os.dup2(wire_out, 1)
        # Not closed: a reader thread abandoned at shutdown may still block on wire_in.


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


async def _read_loop(
    fd: int,
    messages: MemoryObjectSendStream[SessionMessage | Exception],
    answers: MemoryObjectSendStream[SessionMessage],
    pending: Pending,
) -> None:
    splitter = LineSplitter()
    reader = DaemonWorker("gateway stdin")
    async with messages, answers:
        while True:
            chunk = await reader.call(os.read, fd, READ_CHUNK)
            if not chunk:
                if splitter.partial:
                    log.warning(
                        "stdin closed in the middle of a message (%d bytes dropped)",
                        splitter.partial,
                    )
                return
            for line in splitter.feed(chunk):
                if isinstance(line, Oversized):
                    log.warning(
                        "dropped a %d-byte message (limit %d)", line.size, MAX_MESSAGE_BYTES
                    )
                    text = f"Invalid Request: message larger than {MAX_MESSAGE_BYTES} bytes"
                    await answers.send(SessionMessage(_error(INVALID_REQUEST, text)))
                    continue
                if not line.strip():
                    continue
                message = read_message(line)
                if message is None:
                    continue
                if isinstance(message, Refused):
                    text = message.answer.error.message
                    log.warning("stdin: %s (%d bytes)", text, len(line))
                    await answers.send(SessionMessage(message.answer))
                    continue
                if isinstance(message, JSONRPCRequest):
                    await pending.admit(message.id, message)
                elif isinstance(message, JSONRPCNotification) and (
                    message.method == "notifications/cancelled"
                ):
                    pending.settle((message.params or {}).get("requestId"))
                await messages.send(SessionMessage(message))


async def _write_loop(
    fd: int, answers: MemoryObjectReceiveStream[SessionMessage], pending: Pending
) -> None:
    writer = DaemonWorker("gateway stdout")
    async with answers:
        async for outgoing in answers:
            message = _worded(outgoing.message, pending)
            data = message.model_dump_json(by_alias=True, exclude_unset=True).encode() + b"\n"
            await writer.call(_write_all, fd, data)
            if isinstance(message, JSONRPCResponse | JSONRPCError) and message.id is not None:
                pending.settle(message.id)


def _worded(message: JSONRPCMessage, pending: Pending) -> JSONRPCMessage:
    """The SDK's bare -32602 "Invalid request parameters" reworded as the HTTP side words it
    (:func:`lab.mcpserver.envelope.params_problem`: the member, what it must be, what came)."""
    if not (
        isinstance(message, JSONRPCError)
        and message.error.message == envelope.SDK_PARAMS_MESSAGE
        and message.id is not None
    ):
        return message
    request = pending.request(message.id)
    if request is None:
        return message
    words = envelope.params_message({"method": request.method, "params": request.params})
    if words is None:
        return message
    error = ErrorData(code=message.error.code, message=words)
    return JSONRPCError(jsonrpc="2.0", id=message.id, error=error)


@contextlib.asynccontextmanager
async def stdio_streams(
    wire_in: int, wire_out: int
) -> AsyncIterator[
    tuple[
        MemoryObjectReceiveStream[SessionMessage | Exception],
        MemoryObjectSendStream[SessionMessage],
    ]
]:
    """The read and write streams ``Server.run`` takes, over the two protocol descriptors."""
    read_send, read_receive = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write_send, write_receive = anyio.create_memory_object_stream[SessionMessage](0)
    pending = Pending()
    async with anyio.create_task_group() as group:
        group.start_soon(_read_loop, wire_in, read_send, write_send.clone(), pending)
        group.start_soon(_write_loop, wire_out, write_receive, pending)
        async with write_send:
            yield read_receive, write_send


async def serve_stdio(
    server: Server[Any], watch: Callable[[], Coroutine[Any, Any, None]] | None = None
) -> None:
    """Serve one client on stdin/stdout until EOF on stdin or a stop signal (then return).

    ``watch`` runs beside the session (the gateway's lab watcher, which tells the client when to
    list the tools again through the SDK: :mod:`lab.gateway.changes`)."""
    options = server.create_initialization_options()
    with claimed_std_fds() as (wire_in, wire_out):
        async with anyio.create_task_group() as group:
            group.start_soon(_stop_on_signal, group.cancel_scope)
            async with (
                stdio_streams(wire_in, wire_out) as (read, write),
                anyio.create_task_group() as session,
            ):
                if watch is not None:
                    session.start_soon(watch)
                await server.run(read, write, options)
                session.cancel_scope.cancel()  # the watcher ends with the session
            group.cancel_scope.cancel()


async def _stop_on_signal(scope: CancelScope) -> None:
    with anyio.open_signal_receiver(*STOP_SIGNALS) as signals:
        async for signum in signals:
            log.info("stopping on %s", signal.Signals(signum).name)
            scope.cancel()
            return
