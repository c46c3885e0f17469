"""The runtime process (``python -m lab.backends.embedded``): build every part's app and serve
each on the socket ``lab up`` bound for it, all in one event loop."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from lab.backends.embedded.logs import configure_logging
from lab.backends.embedded.ports import bind_part_sockets
from lab.backends.embedded.process import FDS_VARIABLE
from lab.backends.embedded.runtime_file import clear_runtime, read_runtime, write_runtime
from lab.config import ADMIN_PRINCIPAL, AGENT_PRINCIPAL, MCP_PRINCIPAL, Settings

if TYPE_CHECKING:
    import socket

    from starlette.applications import Starlette

#: Keys the backend makes sure exist before any part starts (contracts §1).
LAB_KEYS: tuple[str, ...] = (ADMIN_PRINCIPAL, MCP_PRINCIPAL, AGENT_PRINCIPAL)


def ensure_lab_keys(settings: Settings) -> None:
    """Create the admin, MCP server and agent keys (0600) if they are missing (contracts §1)."""
    from lab.oauth.jose import ensure_private_key

    for principal in LAB_KEYS:
        ensure_private_key(settings.key_file(principal))


#: part name -> (room for logs, factory building its app). The PDP serves both ZMS and ZTS.
PART_ROOMS: dict[str, str] = {
    "idp": "idp",
    "zms": "pdp",
    "zts": "pdp",
    "docapi_protected": "docapi",
    "docapi_unprotected": "docapi",
    "mcp": "mcpserver",
}


def _build_idp(settings: Settings) -> Starlette:
    from lab.idp.app import create_app

    return create_app(settings)


def _build_pdp(settings: Settings) -> Starlette:
    from lab.pdp.app import create_app

    return create_app(settings)


def _build_docapi(protected: bool) -> Callable[[Settings], Starlette]:
    def build(settings: Settings) -> Starlette:
        from lab.docapi.app import create_app

        return create_app(settings, protected=protected)

    return build


def _build_mcp(settings: Settings) -> Starlette:
    from lab.mcpserver.app import create_app

    return create_app(settings)


FACTORIES: dict[str, Callable[[Settings], Starlette]] = {
    "idp": _build_idp,
    "pdp": _build_pdp,
    "docapi_protected": _build_docapi(True),
    "docapi_unprotected": _build_docapi(False),
    "mcp": _build_mcp,
}


def unavailable_app(part: str, detail: str) -> Starlette:
    """Stands in for a part that failed to build: ``/healthz`` says why, everything else 503s."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def unavailable(request: Request) -> JSONResponse:
        return JSONResponse(
            {"status": "unavailable", "part": part, "detail": detail}, status_code=503
        )

    return Starlette(
        routes=[Route("/{path:path}", unavailable, methods=["GET", "POST", "PUT", "DELETE"])]
    )


#: Parts built in the background while the others already serve (see lab.backends.deferred):
#: the MCP server's SDK import is most of a warm `lab up` otherwise.
DEFERRED_PARTS = ("mcp",)

#: ...and started this long after the others serve, so the import (a second of CPU) does not
#: compete with their first answers, `lab up`'s health checks; a request for the part starts
#: it at once.
DEFERRED_BUILD_AFTER_S = 0.5


class WhenAllBuilt:
    """Runs ``action`` once, when the last of ``count`` parts reports built (any thread)."""

    def __init__(self, count: int, action: Callable[[], None]) -> None:
        self._left = count
        self._action = action
        self._lock = threading.Lock()

    def one_built(self) -> None:
        with self._lock:
            self._left -= 1
            last = self._left == 0
        if last:
            self._action()


def build_apps(
    settings: Settings,
    deferred: tuple[str, ...] = (),
    when_built: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """One app per port; a failed part is logged and replaced by :func:`unavailable_app`.

    Parts named in ``deferred`` start building in a background thread and are served by a
    :class:`~lab.backends.deferred.DeferredApp` meanwhile. ``when_built`` runs once every part
    is built, deferred ones included (before this returns when none is deferred)."""
    import logging

    log = logging.getLogger("lab.embedded")
    built: dict[str, Any] = {}
    later = []
    count = sum(1 for key in FACTORIES if key in deferred)
    all_built = WhenAllBuilt(count, when_built) if when_built is not None and count else None
    for key, factory in FACTORIES.items():
        if key == "idp" and settings.idp == "keycloak":
            continue  # real Keycloak serves the IdP port
        if key in deferred:
            from lab.backends.deferred import DeferredApp

            app = DeferredApp(
                key,
                functools.partial(factory, settings),
                unavailable_app,
                on_built=all_built.one_built if all_built is not None else None,
            )
            built[key] = app
            later.append(app)
            continue
        started = time.perf_counter()
        try:
            built[key] = factory(settings)
        except Exception as exc:  # noqa: BLE001 - one broken part must not take the others down
            log.exception("part %s failed to start", key)
            built[key] = unavailable_app(key, f"{type(exc).__name__}: {exc}")
        log.info("built %s in %.0f ms", key, (time.perf_counter() - started) * 1000)
    if when_built is not None and not count:
        when_built()
    for app in later:
        app.start_building(after_s=DEFERRED_BUILD_AFTER_S)
    apps = {
        "idp": built.get("idp"),
        "zms": built["pdp"],
        "zts": built["pdp"],
        "docapi_protected": built["docapi_protected"],
        "docapi_unprotected": built["docapi_unprotected"],
        "mcp": built["mcp"],
    }
    return {name: app for name, app in apps.items() if app is not None}


def inherited_sockets(settings: Settings) -> dict[str, socket.socket]:
    """The listening sockets ``lab up`` bound for us, or fresh ones when run by hand."""
    import socket as socket_module

    raw = os.environ.get(FDS_VARIABLE)
    if not raw:
        return bind_part_sockets(settings)
    fds = json.loads(raw)
    return {name: socket_module.socket(fileno=int(fd)) for name, fd in fds.items()}


async def serve_all(apps: Mapping[str, Any], sockets: Mapping[str, socket.socket]) -> None:
    """One uvicorn server per socket in this event loop; SIGTERM/SIGINT stop them all."""
    import asyncio
    import logging

    import uvicorn

    from lab.serving import uvicorn_config

    class QuietServer(uvicorn.Server):
        # Each server would install (and restore) process-wide signal handlers; we own them.
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    servers: list[uvicorn.Server] = []
    seen: set[int] = set()
    for app in apps.values():
        config = uvicorn_config(app, log_level="warning")
        if id(app) in seen:
            config.lifespan = "off"  # the PDP app is served twice; start its lifespan once
        seen.add(id(app))
        servers.append(QuietServer(config))

    loop = asyncio.get_running_loop()

    def stop_all() -> None:
        for server in servers:
            server.should_exit = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop_all)
    tasks = [
        asyncio.create_task(server.serve(sockets=[sockets[name]]), name=name)
        for server, name in zip(servers, apps, strict=True)
    ]
    log = logging.getLogger("lab.embedded")
    for task in asyncio.as_completed(tasks):
        try:
            await task
        except Exception:  # noqa: BLE001 - a crashed server shows as unhealthy in `lab status`
            log.exception("a part's server stopped with an error")


def main() -> None:
    from lab.startup import skip_httpx_cli

    skip_httpx_cli()  # before any part imports httpx
    import asyncio
    import logging

    from lab.homefiles import owner_only_umask

    owner_only_umask()  # keys, stores and logs under $LAB_HOME are owner-only from the start
    settings = Settings.from_env()
    configure_logging(settings)
    log = logging.getLogger("lab.embedded")
    started = time.perf_counter()
    in_foreground = FDS_VARIABLE not in os.environ  # run by hand, not by `lab up`
    sockets = inherited_sockets(settings)
    if in_foreground:
        ports = {**settings.ports, **{n: sock.getsockname()[1] for n, sock in sockets.items()}}
        settings = replace(settings, home=settings.home.resolve(), ports=ports)
        write_runtime(settings, os.getpid(), settings.endpoints)  # so `lab status` sees it
    ensure_lab_keys(settings)

    def freeze() -> None:
        from lab.startup import freeze_start_up_heap

        started = time.perf_counter()
        frozen = freeze_start_up_heap()
        log.info(
            "start-up heap frozen: %d objects out of the collector's passes (%.0f ms)",
            frozen,
            (time.perf_counter() - started) * 1000,
        )

    apps = build_apps(settings, deferred=DEFERRED_PARTS, when_built=freeze)
    log.info(
        "runtime %s ready to serve after %.0f ms",
        os.getpid(),
        (time.perf_counter() - started) * 1000,
    )
    try:
        asyncio.run(serve_all(apps, sockets))
    finally:
        runtime = read_runtime(settings)
        if runtime is not None and runtime.get("pid") == os.getpid():
            clear_runtime(settings)
        log.info("runtime %s stopped", os.getpid())
