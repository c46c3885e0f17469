"""Serving ASGI apps on loopback: bind first (so a part knows its URL), then run uvicorn.

Used by the embedded backend (many servers, one event loop) and by tests (one server in a
thread). A busy port is a :class:`PortInUse` naming the port and the setting that moves it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn


class PortInUse(OSError):
    def __init__(self, host: str, port: int, variable: str | None) -> None:
        hint = f"; set {variable} to another port" if variable else ""
        super().__init__(f"port {port} on {host} is already in use{hint}")
        self.host = host
        self.port = port
        self.variable = variable


def bind_socket(host: str, port: int, variable: str | None = None) -> socket.socket:
    """Bind a listening TCP socket; port 0 picks a free one (read it from ``getsockname``)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit TCP_NODELAY (Linux). Without it uvicorn's h11 writer sends
    # headers and body as two segments and Nagle + delayed ACK add ~40 ms to every response.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(host, port, variable) from None
        raise
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def uvicorn_config(app: Any, log_level: str = "warning") -> uvicorn.Config:
    return uvicorn.Config(
        app,
        log_level=log_level,
        access_log=False,
        lifespan="on",
        server_header=False,
        date_header=False,
        timeout_graceful_shutdown=2,
    )


class ServerThread:
    """Run one app on a pre-bound socket in a background thread (tests, small tools)."""

    def __init__(self, app: Any, sock: socket.socket) -> None:
        self.sock = sock
        host, port = sock.getsockname()[:2]
        self.url = f"http://{host}:{port}"
        self.server = uvicorn.Server(uvicorn_config(app))
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.run(self.server.serve(sockets=[self.sock]))

    def start(self, timeout_s: float = 10.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"server on {self.url} did not start")
            time.sleep(0.005)

    def request_stop(self) -> None:
        """Ask the server to exit without waiting (stopping several at once overlaps their
        shutdown ticks instead of paying uvicorn's ~0.1 s tick once per server)."""
        self.server.should_exit = True

    def stop(self) -> None:
        self.request_stop()
        self.thread.join(timeout=10)
        self.sock.close()


@contextlib.contextmanager
def serve_in_thread(app: Any, sock: socket.socket) -> Iterator[str]:
    server = ServerThread(app, sock)
    server.start()
    try:
        yield server.url
    finally:
        server.stop()
