"""Shared fixtures: real servers on loopback, a fresh $LAB_HOME per test, real keys.

Fixtures over mocks: a part under test is served by uvicorn on a pre-bound port-0 socket, so
it knows its own URL before it starts (issuers and resource URLs contain the port).
"""

from __future__ import annotations

import signal
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from lab.config import PORTS, Settings
from lab.serving import ServerThread, bind_socket


def pytest_addoption(parser: pytest.Parser) -> None:
    # Mutation runs (tests/mutate.py) re-run the same PDP tests hundreds of times; there the
    # three loopback servers' start and stop cost more than the checks themselves.
    parser.addoption(
        "--pdp-in-process",
        action="store_true",
        help="the PDP fixtures call the PDP app in-process (starlette TestClient) instead of "
        "serving it on loopback sockets (used by python -m tests.mutate)",
    )


def pytest_configure(config: pytest.Config) -> None:
    # `timeout`, CI runners and `kill` stop a run with SIGTERM, whose default action ends the
    # process at once: no fixture teardown, so every lab a test started (`lab up` runs detach,
    # Keycloak is a separate Java process) kept running. Turned into KeyboardInterrupt, pytest
    # unwinds as on Ctrl-C: fixtures and config cleanups run, and each stack is taken down.
    if threading.current_thread() is threading.main_thread() and (
        signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    ):
        signal.signal(signal.SIGTERM, _interrupt_on_sigterm)


def _interrupt_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture
def lab_home(tmp_path: Path) -> Path:
    home = tmp_path / "lab-home"
    home.mkdir()
    return home


@pytest.fixture
def reserved_sockets() -> Iterator[dict[str, socket.socket]]:
    """One bound loopback socket per part, on free ports; closed after the test."""
    socks = {name: bind_socket("127.0.0.1", 0) for name in PORTS}
    try:
        yield socks
    finally:
        for sock in socks.values():
            sock.close()


@pytest.fixture
def lab_settings(lab_home: Path, reserved_sockets: dict[str, socket.socket]) -> Settings:
    """Settings whose ports are the reserved sockets' ports, state under a temp $LAB_HOME."""
    ports = {name: sock.getsockname()[1] for name, sock in reserved_sockets.items()}
    return replace(Settings(), home=lab_home, ports=ports, policy_refresh_s=0.0)


@pytest.fixture
def serve() -> Iterator[Callable[..., str]]:
    """``serve(app, sock)`` runs the app on that socket for the test; returns its URL.

    All servers are told to exit first and then joined, so a test with three parts waits for
    one shutdown tick, not three in a row (this was most of the PDP tests' time)."""
    servers: list[ServerThread] = []

    def start(app: object, sock: socket.socket) -> str:
        server = ServerThread(app, sock)
        server.start()
        servers.append(server)
        return server.url

    try:
        yield start
    finally:
        for server in servers:
            server.request_stop()
        for server in reversed(servers):
            server.stop()
