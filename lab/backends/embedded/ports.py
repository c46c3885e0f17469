"""Binding every part's port in the CLI, so a busy port is reported at once with its fix."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from lab.backends.base import BackendError
from lab.config import PORTS, Settings

if TYPE_CHECKING:
    import socket


def bind_part_sockets(settings: Settings) -> dict[str, socket.socket]:
    """Bind every part's port now: a busy port fails here with the setting that moves it."""
    sockets: dict[str, socket.socket] = {}
    try:
        for name, (variable, _default) in PORTS.items():
            if name == "idp" and settings.idp == "keycloak":
                continue  # Keycloak binds the IdP port itself
            sockets[name] = listen_socket(settings.host, settings.ports[name], variable)
    except BaseException:
        for sock in sockets.values():
            sock.close()
        raise
    return sockets


#: How long a fresh start retries the ports a crashed runtime held (the kernel may keep them a
#: moment: connections the dead process had open close on its behalf).
CRASHED_PORTS_GRACE_S = 5.0


def bind_after_crash(settings: Settings) -> dict[str, socket.socket]:
    """``bind_part_sockets``, retried briefly: after a crash (``kill -9``, OOM) the dead
    runtime's ports can stay taken for a moment, and ``lab up`` must still recover."""
    deadline = time.monotonic() + CRASHED_PORTS_GRACE_S
    while True:
        try:
            return bind_part_sockets(settings)
        except BackendError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.1)


def listen_socket(host: str, port: int, variable: str) -> socket.socket:
    """What ``lab.serving.bind_socket`` does, without importing uvicorn into the CLI (~0.1 s)."""
    import errno
    import socket as socket_module

    family = socket_module.AF_INET6 if ":" in host else socket_module.AF_INET
    sock = socket_module.socket(family, socket_module.SOCK_STREAM)
    sock.setsockopt(socket_module.SOL_SOCKET, socket_module.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise BackendError(
                f"port {port} on {host} is already in use",
                f"stop whatever holds it, or set {variable} to another port "
                f"(e.g. `export {variable}={_suggest_port(port)}`)",
            ) from None
        raise BackendError(
            f"cannot listen on {host}:{port}: {exc.strerror}", "check LAB_HOST"
        ) from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def free_port(host: str) -> int:
    """A port the kernel reports free now (for Keycloak, which binds its own port)."""
    sock = listen_socket(host, 0, "LAB_IDP_PORT")
    try:
        return int(sock.getsockname()[1])
    finally:
        sock.close()


def _suggest_port(port: int) -> int:
    return port + 10000 if port < 55535 else port - 10000
