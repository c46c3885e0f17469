"""A part that serves while its app is still being built (the MCP server's SDK import).

Importing the official ``mcp`` SDK (pydantic models, anyio, the auth stack) is 0.5-0.6 s of a
warm ``lab up`` that should take under 0.5 s in all (issue #21). :class:`DeferredApp` takes the
part's socket at once and builds the real app in a background thread while the other parts
serve: ``/healthz`` answers straight away, every other request waits for the real app (nothing
is refused, at most delayed by what is left of the import), and the real app's lifespan runs in
the serving loop once it is built. A build that fails leaves the part's usual stand-in
(:func:`lab.backends.embedded.runtime.unavailable_app`), which says why on ``/healthz``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("lab.embedded")

#: How long a request waits for the part to finish building before it gets a 503.
READY_TIMEOUT_S = 30.0


class DeferredApp:
    def __init__(
        self,
        part: str,
        build: Callable[[], ASGIApp],
        fallback: Callable[[str, str], ASGIApp],
        on_built: Callable[[], None] | None = None,
    ) -> None:
        self.part = part
        self._build = build
        self._fallback = fallback
        #: Run in the build thread once the app (or its stand-in) is in place.
        self._on_built = on_built
        self._app: ASGIApp | None = None
        self._built = threading.Event()
        self._started: asyncio.Event | None = None  # created in the serving loop
        self._thread = threading.Thread(target=self._run_build, name=f"build-{part}", daemon=True)
        self._start_lock = threading.Lock()
        self._build_started = False

    def start_building(self, after_s: float = 0.0) -> None:
        """Build now, or ``after_s`` from now; a request for the part (not its ``/healthz``)
        starts the build at once if it has not started yet."""
        if after_s <= 0:
            self._start_once()
            return
        timer = threading.Timer(after_s, self._start_once)
        timer.daemon = True
        timer.start()

    def _start_once(self) -> None:
        with self._start_lock:
            if self._build_started:
                return
            self._build_started = True
        self._thread.start()

    def _run_build(self) -> None:
        started = time.perf_counter()
        try:
            self._app = self._build()
        except Exception as exc:  # noqa: BLE001 - one broken part must not take the others down
            log.exception("part %s failed to start", self.part)
            self._app = self._fallback(self.part, f"{type(exc).__name__}: {exc}")
        log.info("built %s in the background in %.0f ms", self.part, _ms(started))
        self._built.set()
        if self._on_built is not None:
            try:
                self._on_built()
            except Exception:  # noqa: BLE001 - the part is built and serves whatever this does
                log.exception("after building %s", self.part)

    @property
    def app(self) -> ASGIApp | None:
        """The real app once built (tests and tools that need it)."""
        return self._app if self._built.is_set() else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        started = self._started_event()
        if not started.is_set():
            if scope["type"] == "http" and scope.get("path") == "/healthz":
                await _json(
                    send, 200, b'{"status":"ok","part":"%s","building":true}' % (self.part.encode())
                )
                return
            self._start_once()  # someone needs the part now
            try:
                await asyncio.wait_for(started.wait(), READY_TIMEOUT_S)
            except TimeoutError:
                await _json(send, 503, b'{"error":"temporarily_unavailable"}')
                return
        assert self._app is not None
        await self._app(scope, receive, send)

    def _started_event(self) -> asyncio.Event:
        if self._started is None:
            self._started = asyncio.Event()
        return self._started

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Report started at once; run the real app's lifespan when it is built."""
        message = await receive()
        assert message["type"] == "lifespan.startup"
        started = self._started_event()
        await send({"type": "lifespan.startup.complete"})
        while not self._built.is_set():  # polled: a thread-side wait would hold a pool thread
            await asyncio.sleep(0.01)
        assert self._app is not None
        inbox: asyncio.Queue[Message] = asyncio.Queue()
        outbox: asyncio.Queue[Message] = asyncio.Queue()
        app = self._app

        async def run_inner() -> None:
            await app(scope, inbox.get, _put(outbox))

        inner: asyncio.Task[None] = asyncio.create_task(run_inner())
        await inbox.put({"type": "lifespan.startup"})
        reply = await _next(outbox, inner)
        if reply is not None and reply["type"] != "lifespan.startup.complete":
            log.error("part %s failed its start-up: %s", self.part, reply.get("message"))
        started.set()
        message = await receive()  # lifespan.shutdown, when the server stops
        await inbox.put({"type": "lifespan.shutdown"})
        await _next(outbox, inner)
        inner.cancel()
        await send({"type": "lifespan.shutdown.complete"})


def _put(queue: asyncio.Queue[Message]) -> Send:
    async def send(message: Message) -> None:
        await queue.put(message)

    return send


async def _next(outbox: asyncio.Queue[Message], inner: asyncio.Task[Any]) -> Message | None:
    """The app's next lifespan message, or None if it returned without one (no lifespan)."""
    getter = asyncio.ensure_future(outbox.get())
    done, _ = await asyncio.wait({getter, inner}, return_when=asyncio.FIRST_COMPLETED)
    if getter in done:
        return getter.result()
    getter.cancel()
    return None


async def _json(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"cache-control", b"no-store")],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
