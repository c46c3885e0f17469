"""One MCP session per server URL per process, shared by every agent's tool calls.

Why: a new ``httpx2.AsyncClient``, TCP connection and SDK session per ``call_tools`` cost about
1.7 ms of a chain's 22, a third of it the SDK compiling the tool's output-schema validator once
per session (docs/dev/performance.md, "The chain, link by link"). Here one event loop in a
daemon thread holds, per server URL, one client (its keep-alive connections) and one entered SDK
``Client``; calls from any thread run on that loop.

What each call brings stays the call's own: the bearer token (every agent holds its own user's
token), the recorder and the refusal watcher travel in a context variable. The SDK's transport
carries the sending task's context to the task that POSTs (its context streams), where an
``httpx2.Auth`` and the client's event hooks read it. Nothing about a caller is stored on the
shared session; a request made outside any call carries no token and is recorded nowhere.

A session is kept only while the era it adopted is what the process still knows of the server
(:data:`lab.agent.mcp_client.ERAS`, bounded by the server's SEP-2549 ``ttlMs``): once the era
runs out or is forgotten, the next call opens a new session that negotiates as a fresh one
would. Handshake-era servers and servers without freshness hints get a session per batch, as
before (their sessions carry server-side state we would otherwise have to share).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import contextvars
import os
import threading
import time
from collections.abc import Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx2
import mcp_types
from mcp import Client

from lab.agent import mcp_client
from lab.agent.mcp_client import ERAS, RefusalWatcher, ToolCall, ToolResult, await_made
from lab.agent.recorder import Recorder
from lab.oauth.http import KEEPALIVE_EXPIRY_S

T = TypeVar("T")

#: A session unused this long is closed (its server may be gone; reopening is cheap).
IDLE_S = 30.0
#: Bounded: one kept session per MCP server URL, the least recently used closed first.
MAX_KEPT = 16
#: How long a kept session may take to open or to close.
OPEN_TIMEOUT_S = mcp_client.TIMEOUT_S
CLOSE_TIMEOUT_S = 2.0


@dataclass
class CallContext:
    """What one batch of calls sends and where its exchanges go; never stored on a session."""

    access_token: str | None
    recorder: Recorder | None
    watcher: RefusalWatcher
    #: HTTP requests this batch has sent (a failed attempt that sent none was never processed).
    sent: int = 0
    #: The first error the caller's own hooks (its recorder) raised; the caller gets it.
    hook_error: Exception | None = None
    hooks: dict[str, list[Callable[..., Any]]] = field(init=False)

    def __post_init__(self) -> None:
        empty: dict[str, list[Callable[..., Any]]] = {"request": [], "response": []}
        self.hooks = self.recorder.async_hooks() if self.recorder is not None else empty


CURRENT_CALL: contextvars.ContextVar[CallContext | None] = contextvars.ContextVar(
    "lab_mcp_current_call", default=None
)


class CallerBearer(httpx2.Auth):
    """``Authorization: Bearer`` with the token of the call this request belongs to (RFC 6750
    §2.1), read per request; a request outside any call carries none."""

    def auth_flow(
        self, request: httpx2.Request
    ) -> Generator[httpx2.Request, httpx2.Response, None]:
        call = CURRENT_CALL.get()
        if call is not None and call.access_token:
            request.headers["Authorization"] = f"Bearer {call.access_token}"
        yield request


async def _on_request(request: httpx2.Request) -> None:
    call = CURRENT_CALL.get()
    if call is None:
        return
    call.sent += 1
    await _run_callers_hooks(call, "request", request)


async def _on_response(response: httpx2.Response) -> None:
    call = CURRENT_CALL.get()
    if call is None:
        return
    await _run_callers_hooks(call, "response", response)
    await call.watcher.on_response(response)


async def _run_callers_hooks(call: CallContext, event: str, message: Any) -> None:
    """The caller's hooks; an error of theirs is the caller's alone. Raised here it would be a
    transport failure of the shared session: the SDK closes it, and every other agent's call
    in flight on it failed with "Connection closed". A network error stays what it is."""
    for hook in call.hooks[event]:
        try:
            await hook(message)
        except httpx2.HTTPError:
            raise
        except Exception as exc:  # noqa: BLE001 - handed to the caller after its batch
            if call.hook_error is None:
                call.hook_error = exc


def shared_http_client() -> httpx2.AsyncClient:
    """The HTTP client of a kept session: per-call bearer and hooks, every request timed out."""
    return httpx2.AsyncClient(
        auth=CallerBearer(),
        event_hooks={"request": [_on_request], "response": [_on_response]},
        timeout=mcp_client.TIMEOUT_S,
        verify=mcp_client.tls_context(),
        limits=httpx2.Limits(
            max_connections=100, max_keepalive_connections=20, keepalive_expiry=KEEPALIVE_EXPIRY_S
        ),
    )


class KeptSession:
    """One SDK session held open by a keeper task (anyio scopes are left by the task that
    entered them); calls from other tasks of the same loop run on it concurrently."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.client: Client | None = None
        self.http: httpx2.AsyncClient | None = None
        #: The ``DiscoverResult`` this session runs under, as ``ERAS`` held it when it opened.
        self.era: mcp_types.DiscoverResult | None = None
        self.poolable = False
        #: The listing this session absorbed last (``call_tool`` checks results against it).
        self.listed: mcp_client.Listed | None = None
        self.closed = False
        self.last_used = time.monotonic()
        #: Batches using this session now: one no longer kept closes when the last ends.
        self.users = 0
        self._closing = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def open(self, call: CallContext) -> None:
        """Open under ``call``: the handshake, if any, is that caller's request (its token, its
        recording); the keeper then speaks for no one."""
        opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        context = contextvars.copy_context()
        context.run(CURRENT_CALL.set, call)
        self._task = asyncio.get_running_loop().create_task(self._keep(opened), context=context)
        try:
            await asyncio.wait_for(asyncio.shield(opened), OPEN_TIMEOUT_S)
        except BaseException:
            # The keeper may still fail after we gave up on it: nobody will read that.
            opened.add_done_callback(lambda done: done.cancelled() or done.exception())
            await self.close()
            raise

    async def _keep(self, opened: asyncio.Future[None]) -> None:
        try:
            async with (
                shared_http_client() as http,
                mcp_client.mcp_session(http, self.url) as client,
            ):
                self.http = http
                mcp_client.learn_era(client, self.url)
                known, era = ERAS.get(self.url)
                self.era = era
                # Kept only under a modern era the process remembers, the one it runs under;
                # a handshake-era session (a session id, a GET stream) stays its opener's.
                self.poolable = (
                    known
                    and era is not None
                    and (era is client.session.discover_result or era is client.prior_discover)
                )
                self.client = client
                if self.poolable:
                    CURRENT_CALL.set(None)
                opened.set_result(None)
                await self._closing.wait()
        except BaseException as exc:  # noqa: BLE001 - handed to the opener, or the end of it
            if not opened.done():
                opened.set_exception(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            self.closed = True
            self.client = None

    def usable(self) -> bool:
        """Still open, and still under the era the process knows for this URL."""
        if self.closed or self._closing.is_set() or not self.poolable:
            return False
        known, era = ERAS.get(self.url)
        return known and era is self.era

    async def close(self) -> None:
        self._closing.set()
        task = self._task
        if task is None or task.done():
            self.closed = True
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), CLOSE_TIMEOUT_S)
        except Exception:  # noqa: BLE001 - closing is best effort (a timeout included)
            task.cancel()


class LoopThread:
    """One event loop in a daemon thread, started on first use; process exit never waits on it
    beyond :data:`CLOSE_TIMEOUT_S` (an ``atexit`` hook closes the sessions, then the loop)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._thread is None or not self._thread.is_alive():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="lab-mcp-sessions", daemon=True
                )
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def in_loop_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def run(self, factory: Callable[[], Awaitable[T]], timeout_s: float) -> T:
        """Run a coroutine on the loop and wait for it, at most ``timeout_s``."""
        future = asyncio.run_coroutine_threadsafe(await_made(factory), self.loop())
        try:
            return future.result(timeout_s)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"MCP call did not finish within {timeout_s:.0f} s") from None

    def stop(self, before: Callable[[], Awaitable[None]]) -> None:
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None or not thread.is_alive():
            return
        # Exiting: never hang or fail on a session's close.
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(await_made(before), loop).result(CLOSE_TIMEOUT_S)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(CLOSE_TIMEOUT_S)


class SessionPool:
    """The kept sessions, touched only from the loop thread (no locks but the openers')."""

    def __init__(self) -> None:
        #: False: a new client, connection and session per batch, on a loop of its own (the
        #: path before sessions were kept; ``bench/chain_hops.py --ab`` compares the two).
        self.keep = True
        self._thread = LoopThread()
        self._kept: dict[str, KeptSession] = {}
        self._opening: dict[str, asyncio.Lock] = {}

    # -- from any thread ---------------------------------------------------------------------

    def call_tools(
        self,
        url: str,
        access_token: str | None,
        calls: Sequence[ToolCall],
        recorder: Recorder | None,
    ) -> list[ToolResult]:
        if not self.keep or self._thread.in_loop_thread():
            return mcp_client.run_sync(
                lambda: mcp_client.call_tools_async(url, access_token, calls, recorder)
            )
        call = CallContext(access_token, recorder, RefusalWatcher())
        budget = mcp_client.TIMEOUT_S * (len(calls) + 2)
        results = self._thread.run(lambda: self._call_tools(url, call, calls, budget), budget + 5)
        _raise_hook_error(call)
        return results

    def list_tools(
        self, url: str, access_token: str | None, recorder: Recorder | None
    ) -> list[dict[str, Any]]:
        if not self.keep or self._thread.in_loop_thread():
            return mcp_client.run_sync(
                lambda: mcp_client.list_tools_async(url, access_token, recorder)
            )
        call = CallContext(access_token, recorder, RefusalWatcher())
        budget = mcp_client.TIMEOUT_S * 2
        listing = self._thread.run(lambda: self._list_tools(url, call, budget), budget + 5)
        _raise_hook_error(call)
        return listing

    def close_all(self) -> None:
        """Close every kept session and stop the loop (at exit; a later call starts anew)."""
        self._thread.stop(self._close_all)
        # The loop has stopped: whatever its closing did not finish in time belongs to it, and
        # a later call on a new loop would wait on it until its budget ran out.
        self._kept = {}
        self._opening = {}

    def after_fork(self) -> None:
        """In a forked child: start from nothing. The parent's loop thread does not exist here
        (its sessions would wait for it until their time ran out, and its lock may be held by
        a thread that is gone); the kept sessions' connections are the parent's sockets. They
        are dropped unclosed: closing them would speak on the parent's connections."""
        self._thread = LoopThread()
        self._kept = {}
        self._opening = {}

    # -- on the loop ---------------------------------------------------------------------------

    async def _call_tools(
        self, url: str, call: CallContext, calls: Sequence[ToolCall], budget: float
    ) -> list[ToolResult]:
        CURRENT_CALL.set(call)
        results: list[ToolResult] = []
        try:
            async with asyncio.timeout(budget):
                return await self._attempt_calls(url, call, calls, results)
        except TimeoutError as exc:
            return results + mcp_client.failed_calls(url, exc, call.watcher, calls[len(results) :])

    async def _attempt_calls(
        self, url: str, call: CallContext, calls: Sequence[ToolCall], results: list[ToolResult]
    ) -> list[ToolResult]:
        for attempt in (1, 2):
            rest = calls[len(results) :]
            try:
                kept, reused = await self._session(url, call)
            except Exception as exc:  # noqa: BLE001 - a refused handshake is data too
                return results + mcp_client.failed_calls(url, exc, call.watcher, rest)
            sent_before = call.sent
            try:
                client = _client(kept)
                if kept.listed is None or not kept.listed.current():
                    kept.listed = await mcp_client.list_for_calls(client)
                await mcp_client.run_calls(client, rest, call.watcher, results)
            except asyncio.CancelledError:
                await self._discard(kept)  # out of time mid-call: its state is unknown
                raise
            except Exception as exc:  # noqa: BLE001 - transport and HTTP refusals are data
                refusal = call.watcher.last
                if refusal is None or refusal.http_status == 404:
                    await self._discard(kept)  # a 401/403 is an answer: the session is fine
                if attempt == 1 and reused and _never_processed(call, sent_before):
                    # The kept session had gone: the same call on a new one, whose failure (if
                    # any) is its own, not the gone session's 404.
                    call.watcher.last = None
                    continue
                return results + mcp_client.failed_calls(
                    url, exc, call.watcher, calls[len(results) :]
                )
            finally:
                await self._release(kept)
            return results
        raise AssertionError("unreachable: the second attempt always returns")

    async def _list_tools(self, url: str, call: CallContext, budget: float) -> list[dict[str, Any]]:
        CURRENT_CALL.set(call)
        async with asyncio.timeout(budget):
            kept, _ = await self._session(url, call)
            try:
                listing = await _client(kept).list_tools()
            except Exception:
                await self._discard(kept)
                raise
            finally:
                await self._release(kept)
        return mcp_client.tools_as_dicts(listing)

    async def _session(self, url: str, call: CallContext) -> tuple[KeptSession, bool]:
        """(session, reused): the kept one while usable, else a new one opened by this call."""
        await self._sweep()
        kept = self._kept.get(url)
        if kept is not None and kept.usable():
            return _use(kept), True
        lock = self._opening.setdefault(url, asyncio.Lock())
        async with lock:  # one opener per URL; a failed opening leaves the next its own try
            kept = self._kept.get(url)
            if kept is not None and kept.usable():
                return _use(kept), True
            if kept is not None:
                await self._discard(kept)
            kept = KeptSession(url)
            await kept.open(call)
            if kept.poolable:
                self._kept[url] = kept
            return _use(kept), False

    async def _release(self, kept: KeptSession) -> None:
        """After a batch: a session that is not kept (never poolable, or discarded) closes
        once no other batch is using it."""
        kept.users -= 1
        if self._kept.get(kept.url) is not kept and kept.users <= 0:
            await kept.close()

    async def _discard(self, kept: KeptSession) -> None:
        """No new batch gets ``kept``; it closes now, or when the batches using it end.
        Closing it under them (its era ran out, it sat idle, another caller's call failed
        on it) failed every other agent's call in flight with "Connection closed"."""
        if self._kept.get(kept.url) is kept:
            del self._kept[kept.url]
        if kept.users <= 0:
            await kept.close()

    async def _sweep(self) -> None:
        now = time.monotonic()
        stale = [
            kept
            for kept in self._kept.values()
            if kept.closed or now - kept.last_used > IDLE_S or not kept.usable()
        ]
        by_age = sorted(self._kept.values(), key=lambda kept: kept.last_used)
        stale.extend(by_age[: max(0, len(by_age) - MAX_KEPT + 1)])
        for kept in dict.fromkeys(stale):
            await self._discard(kept)

    async def _close_all(self) -> None:
        for kept in list(self._kept.values()):
            del self._kept[kept.url]
            await kept.close()  # at exit or on request: batches still running end too
        self._opening.clear()  # its locks belong to this loop


def _use(kept: KeptSession) -> KeptSession:
    kept.last_used = time.monotonic()
    kept.users += 1
    return kept


def _raise_hook_error(call: CallContext) -> None:
    """The caller's recorder failed: its record of the batch is incomplete, say so to it."""
    if call.hook_error is not None:
        raise RuntimeError(
            f"recording the MCP exchange failed: {call.hook_error!r}"
        ) from call.hook_error


def _client(kept: KeptSession) -> Client:
    if kept.client is None:
        raise RuntimeError(f"the MCP session to {kept.url} is closed")
    return kept.client


def _never_processed(call: CallContext, sent_before: int) -> bool:
    """The server never ran the call: nothing was sent (the kept session had closed), or the
    server answered 404 (it no longer knows the session or endpoint it was opened with)."""
    refusal = call.watcher.last
    if refusal is not None:
        return refusal.http_status == 404
    return call.sent == sent_before


#: This process's kept sessions.
SESSIONS = SessionPool()
atexit.register(SESSIONS.close_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=SESSIONS.after_fork)
