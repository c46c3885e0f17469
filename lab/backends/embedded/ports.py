"""Binding every part's port in the CLI, so a busy port is reported at once with its fix."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from lab.backends.base import BackendError
from lab.config import PORTS, Settings

if TYPE_CHECKING:
    import socket


class PortBusy(BackendError):
    """The port is already in use (``port`` says which)."""

    def __init__(self, message: str, fix: str, port: int) -> None:
        super().__init__(message, fix)
        self.port = port


def bind_part_sockets(settings: Settings) -> dict[str, socket.socket]:
    """Bind every part's port now: a busy port fails here with the setting that moves it."""
    sockets: dict[str, socket.socket] = {}
    try:
        for name, (variable, _default) in PORTS.items():
            if name == "idp" and settings.idp == "keycloak":
                continue  # Keycloak binds the IdP port itself
            sockets[name] = listen_socket(settings.host, settings.ports[name], variable)
    except PortBusy as exc:
        for sock in sockets.values():
            sock.close()
        holder = lab_runtime_on_port(exc.port, settings)
        if holder is not None:
            raise BackendError(exc.message, holder) from None
        raise
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


def lab_runtime_on_port(port: int, settings: Settings) -> str | None:
    """The fix when the process on ``port`` is a lab runtime: the usual "stop whatever holds
    it" leaves a learner stuck when that is their own lab whose ``runtime.json`` is gone (it
    was deleted, or LAB_HOME changed), since `lab down` no longer sees it. Linux only (/proc);
    None when no lab runtime this user can see uses the port."""
    home = settings.home.absolute()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if b"lab.backends.embedded" not in (proc / "cmdline").read_bytes():
                continue
            environ = dict(
                item.split("=", 1)
                for item in (proc / "environ").read_bytes().decode(errors="replace").split("\0")
                if "=" in item
            )
            cwd = Path(os.readlink(proc / "cwd"))
        except (OSError, ValueError):
            continue
        theirs = cwd / (environ.get("LAB_HOME") or ".lab")
        if port not in _ports_of(environ).values():
            continue
        pid = proc.name
        if theirs == home:
            return (
                f"it is this LAB_HOME's own lab (pid {pid}), whose runtime.json is gone: "
                f"stop it with `kill {pid}`, then `lab up`"
            )
        if _records_pid(theirs / "runtime.json", int(pid)):
            return f"a lab from another LAB_HOME holds it: `LAB_HOME={theirs} lab down` stops it"
        return (
            f"a lab from LAB_HOME {theirs} holds it (pid {pid}) and its runtime.json is gone: "
            f"stop it with `kill {pid}`"
        )
    return None


def _records_pid(runtime_file: Path, pid: int) -> bool:
    import json

    try:
        return bool(json.loads(runtime_file.read_text()).get("pid") == pid)
    except (OSError, ValueError, AttributeError):
        return False


def _ports_of(environ: dict[str, str]) -> Mapping[str, int]:
    """The ports a runtime started with ``environ`` serves (none if its settings do not read)."""
    from lab.config import SettingsError

    try:
        return Settings.from_env(environ).ports
    except SettingsError:
        return {}


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
            raise PortBusy(
                f"port {port} on {host} is already in use",
                f"stop whatever holds it, or set {variable} to another port "
                f"(e.g. `export {variable}={_suggest_port(port)}`)",
                port,
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
