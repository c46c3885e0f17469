"""Entry point of the lab image: ``python -m lab.backends.pod pdp|docapi|mcpserver``.

One image, three Deployments (manifests/). Each pod serves one part on ``0.0.0.0`` at the same
port numbers the learner uses, with the learner-facing URLs in its settings: the ZTS issuer stays
``http://127.0.0.1:8443/zts/v1``, the MCP resource stays ``http://127.0.0.1:8101/mcp``, exactly as
on the embedded backend, so tokens minted on kind look the same.

The catch: parts also *call* each other at those URLs (contracts §0: the document API fetches
``endpoints.zts_jwks``, the MCP server exchanges tokens at ``endpoints.zts_token``), and inside a
pod 127.0.0.1 is the pod itself. Rather than teach every part a second, internal URL, each pod
runs a tiny TCP forwarder on 127.0.0.1 for every port it does not serve, to the in-cluster
Service that does (``LAB_POD_FORWARD=8443=lab-pdp:8443,…``). Identity URLs and reachability stay
one and the same, which is what the learner reads in the tokens.

When the learner-facing host is not loopback (a workshop room's listen address, ``LAB_HOST``),
the URLs name the instructor's machine. ``LAB_POD_LOOPBACK_HOST`` names that host, and the pod's
HTTP clients send its requests to the same port on the pod's own 127.0.0.1 (lab.oauth.http), so
the forwarders still carry them while ``iss``/``aud`` stay what the learner's ``lab`` reaches.

A forwarder connects upstream with a timeout and retries once: a part that is restarting (the PDP
after a providers change) should cost a short wait, not a hung or refused call.

Start-up also copies the service keys from the Secret mount (read-only, owned by root) into the
pod's own ``$LAB_HOME/keys`` with mode 0600, and (PDP only) the providers file from the
ConfigMap mount, so a PDP restart reads the providers the backend just wrote (as Athenz's ZTS
reads ``athenz.zts.…providers`` at start).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.config import Settings

log = logging.getLogger("lab.backends.pod")

#: Inside a pod the part must answer the Service, so it listens on every interface.
POD_BIND_HOST = "0.0.0.0"  # noqa: S104 - in a pod network namespace, reached only via Services

#: Part entry point -> the settings port keys it serves (PDP: one app on both ports, contracts §3).
PART_PORTS: dict[str, tuple[str, ...]] = {
    "pdp": ("zms", "zts"),
    "docapi": ("docapi_protected", "docapi_unprotected"),
    "mcpserver": ("mcp",),
}

FORWARD_VARIABLE = "LAB_POD_FORWARD"
KEYS_VARIABLE = "LAB_POD_KEYS"
PROVIDERS_VARIABLE = "LAB_POD_PROVIDERS"
LOOPBACK_HOST_VARIABLE = "LAB_POD_LOOPBACK_HOST"
#: Upstream connect of a forwarder: each attempt's limit, attempts, pause between them.
UPSTREAM_CONNECT_TIMEOUT_S = 3.0
UPSTREAM_CONNECT_ATTEMPTS = 2
UPSTREAM_RETRY_PAUSE_S = 0.5
#: Only for running the entry point outside a pod (tests, a laptop): e.g. ``127.0.0.1``.
BIND_VARIABLE = "LAB_POD_BIND"


@dataclass(frozen=True)
class Forward:
    """Loopback ``listen_port`` in this pod -> ``host:port`` (a Service, or Keycloak)."""

    listen_port: int
    host: str
    port: int


def parse_forwards(spec: str) -> list[Forward]:
    """``"8443=lab-pdp:8443,9090=idjag-lab-keycloak:8080"`` -> forwards; raises on a bad rule."""
    forwards = []
    for rule in filter(None, (r.strip() for r in spec.split(","))):
        try:
            listen, target = rule.split("=", 1)
            host, port = target.rsplit(":", 1)
            forwards.append(Forward(int(listen), host, int(port)))
        except ValueError:
            raise ValueError(
                f"{FORWARD_VARIABLE}: bad rule {rule!r}, expected <port>=<host>:<port>"
            ) from None
    return forwards


def forwards_for(part: str, settings: Settings, forwards: list[Forward]) -> list[Forward]:
    """The forwards this pod needs: every rule except for the ports it serves itself."""
    own = {settings.ports[name] for name in PART_PORTS[part]}
    return [f for f in forwards if f.listen_port not in own]


# --------------------------------------------------------------------------------------------
# Files from the Secret and ConfigMap mounts


def install_keys(source: Path, keys_dir: Path) -> list[Path]:
    """Copy key files into ``keys_dir`` with mode 0600 (private keys never world-readable)."""
    keys_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(keys_dir, 0o700)
    written = []
    for path in sorted(source.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue  # Secret volumes hold ..data symlink farms beside the real names
        target = keys_dir / path.name
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(path.read_bytes())
        os.chmod(target, 0o600)
        written.append(target)
    return written


def install_providers(source: Path, target: Path) -> None:
    if source.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)


# --------------------------------------------------------------------------------------------
# Apps


def part_apps(part: str, settings: Settings) -> dict[str, Any]:
    """Settings port key -> ASGI app, imported lazily (a pod loads only its own part)."""
    if part == "pdp":
        from lab.pdp.app import create_app as create_pdp

        app = create_pdp(settings)
        return {"zms": app, "zts": app}
    if part == "docapi":
        from lab.docapi.app import create_app as create_docapi

        return {
            "docapi_protected": create_docapi(settings, protected=True),
            "docapi_unprotected": create_docapi(settings, protected=False),
        }
    if part == "mcpserver":
        from lab.mcpserver.app import create_app as create_mcp

        return {"mcp": create_mcp(settings)}
    raise ValueError(f"unknown part {part!r}; expected one of {', '.join(PART_PORTS)}")


def bind_part(part: str, settings: Settings, host: str = POD_BIND_HOST) -> dict[str, socket.socket]:
    from lab.serving import bind_socket

    return {
        name: bind_socket(host, settings.ports[name], settings.port_variable(name))
        for name in PART_PORTS[part]
    }


# --------------------------------------------------------------------------------------------
# Forwarder


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        with contextlib.suppress(ConnectionError, OSError):
            writer.close()


def _forward_handler(
    forward: Forward,
) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await connect_upstream(forward)
        except (OSError, TimeoutError) as exc:
            log.warning(
                "forward 127.0.0.1:%d -> %s:%d failed: %s",
                forward.listen_port,
                forward.host,
                forward.port,
                exc or type(exc).__name__,
            )
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    return handle


async def connect_upstream(
    forward: Forward,
    attempts: int = UPSTREAM_CONNECT_ATTEMPTS,
    timeout_s: float = UPSTREAM_CONNECT_TIMEOUT_S,
    pause_s: float = UPSTREAM_RETRY_PAUSE_S,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to the forward's target, each attempt bounded; the last failure is raised."""
    for attempt in range(1, attempts + 1):
        try:
            return await asyncio.wait_for(
                asyncio.open_connection(forward.host, forward.port), timeout_s
            )
        except (OSError, TimeoutError):
            if attempt == attempts:
                raise
            await asyncio.sleep(pause_s)
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


async def start_forwarders(
    forwards: list[Forward], host: str = "127.0.0.1"
) -> list[asyncio.Server]:
    """Listen on ``host:listen_port`` for each forward (port 0 in tests picks a free one)."""
    return [await asyncio.start_server(_forward_handler(f), host, f.listen_port) for f in forwards]


# --------------------------------------------------------------------------------------------
# Serving


async def serve(
    apps: Mapping[str, Any],
    sockets: Mapping[str, socket.socket],
    forwards: list[Forward],
    log_level: str = "info",
    stop: asyncio.Event | None = None,
) -> None:
    """Serve each app on its socket and run the forwarders until ``stop`` is set (or SIGTERM)."""
    import uvicorn

    from lab.serving import uvicorn_config

    stop = stop or asyncio.Event()
    servers = []
    for name, app in apps.items():
        server = uvicorn.Server(uvicorn_config(app, log_level=log_level))
        # Several servers share one loop: signals go to ``stop`` (below), not to each server.
        server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
        servers.append((server, sockets[name]))
    forwarders = await start_forwarders(forwards)
    tasks = [asyncio.create_task(s.serve(sockets=[sock])) for s, sock in servers]
    try:
        await stop.wait()
    finally:
        for server, _sock in servers:
            server.should_exit = True
        await asyncio.gather(*tasks, return_exceptions=True)
        for forwarder in forwarders:
            forwarder.close()
            await forwarder.wait_closed()


def prepare(part: str, settings: Settings, env: Mapping[str, str]) -> list[Forward]:
    """Install keys/providers from the mounts and work out this pod's forwards."""
    settings.home.mkdir(parents=True, exist_ok=True)
    keys_source = env.get(KEYS_VARIABLE)
    if keys_source and Path(keys_source).is_dir():
        install_keys(Path(keys_source), settings.keys_dir)
    providers_source = env.get(PROVIDERS_VARIABLE)
    if part == "pdp" and providers_source:
        install_providers(Path(providers_source), settings.providers_file)
    loopback_host = env.get(LOOPBACK_HOST_VARIABLE)
    if loopback_host:
        from lab.oauth import http as lab_http

        lab_http.route_to_loopback(loopback_host)
    return forwards_for(part, settings, parse_forwards(env.get(FORWARD_VARIABLE, "")))


async def _main_async(part: str, settings: Settings, env: Mapping[str, str]) -> None:
    forwards = prepare(part, settings, env)
    sockets = bind_part(part, settings, env.get(BIND_VARIABLE, POD_BIND_HOST))
    apps = part_apps(part, settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info(
        "serving %s on %s, forwarding %s",
        part,
        {n: settings.ports[n] for n in sockets},
        [f.listen_port for f in forwards],
    )
    await serve(apps, sockets, forwards, settings.log_level, stop)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.backends.pod")
    parser.add_argument("part", choices=sorted(PART_PORTS))
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    logging.basicConfig(
        level=settings.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    asyncio.run(_main_async(args.part, settings, os.environ))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
