"""HTTP clients for calls between the parts.

Building an ``httpx`` client loads the CA bundle, which costs tens of milliseconds: doing it
per request made every MCP tool call ~60 ms slower (two clients per call). Every client the
lab builds shares one TLS context instead; the lab's own calls are plain http on loopback,
but a learner may point a part at an https URL, so verification stays on.

Every client also retries a failed *connection* once (httpx transport ``retries``: only connect
errors, so no request is ever sent twice) with a short connect timeout: a part that restarts (the
PDP after a providers change) or a forwarder that is being re-established costs one quick retry,
not a failed step.

Inside a kind pod the parts' URLs name the learner-facing host (a workshop room's listen address,
e.g. ``http://192.168.1.20:20011/zts/v1``), which is the instructor's machine, not the pod. The pod
entry point (``lab.backends.pod``) calls :func:`route_to_loopback` with that host: requests for it
then go to the same port on the pod's own 127.0.0.1, where the pod's forwarders answer, while the
URL (and ``Host`` header) stay the learner-facing ones the tokens and the host check name.
"""

from __future__ import annotations

import asyncio
import functools
import os
import ssl
import weakref
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import httpx

#: Connection attempts after the first one that failed to connect (never a resent request).
CONNECT_RETRIES = 1
#: Longest wait for a TCP connection, whatever the request's own timeout (all parts are local).
CONNECT_TIMEOUT_S = 3.0
#: Hosts whose requests go to 127.0.0.1 at the same port (see the module docstring).
_LOOPBACK_ALIASES: set[str] = set()


if TYPE_CHECKING:
    from lab.oauth.jose import SigningKey


class AdminAssertionAuth(httpx.Auth):
    """httpx auth that signs a fresh principal assertion for every request (single use)."""

    def __init__(self, principal: str, key: SigningKey, audience: str) -> None:
        self.principal, self.key, self.audience = principal, key, audience

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        from lab.oauth.admin import make_admin_assertion

        token = make_admin_assertion(self.principal, self.key, self.audience)
        request.headers["Authorization"] = f"Bearer {token}"
        yield request


@functools.cache
def tls_context() -> ssl.SSLContext:
    return httpx.create_ssl_context()


def route_to_loopback(host: str) -> None:
    """From now on, send this process's requests for ``host`` to 127.0.0.1 (a pod's forwarders)."""
    _LOOPBACK_ALIASES.add(host.strip("[]").lower())


def loopback_aliases() -> frozenset[str]:
    return frozenset(_LOOPBACK_ALIASES)


def _to_loopback(request: httpx.Request) -> None:
    if _LOOPBACK_ALIASES and request.url.host.lower() in _LOOPBACK_ALIASES:
        # Only the connection target changes: the Host header was set from the original URL.
        request.url = request.url.copy_with(host="127.0.0.1")


class _Transport(httpx.HTTPTransport):
    def handle_request(self, request: httpx.Request) -> httpx.Response:
        _to_loopback(request)
        return super().handle_request(request)


class _AsyncTransport(httpx.AsyncHTTPTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        _to_loopback(request)
        return await super().handle_async_request(request)


def _options(options: dict[str, Any]) -> dict[str, Any]:
    options.setdefault("verify", tls_context())
    timeout = options.get("timeout", 5.0)
    if isinstance(timeout, int | float):
        options["timeout"] = httpx.Timeout(timeout, connect=min(float(timeout), CONNECT_TIMEOUT_S))
    return options


def _transport_options(options: dict[str, Any]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"verify": options["verify"], "retries": CONNECT_RETRIES}
    if "limits" in options:
        kwargs["limits"] = options["limits"]
    return kwargs


def client(**options: Any) -> httpx.Client:
    options = _options(options)
    if "transport" not in options:
        options["transport"] = _Transport(**_transport_options(options))
    return httpx.Client(**options)


def async_client(**options: Any) -> httpx.AsyncClient:
    options = _options(options)
    if "transport" not in options:
        options["transport"] = _AsyncTransport(**_transport_options(options))
    return httpx.AsyncClient(**options)


def get(url: str, **options: Any) -> httpx.Response:
    """A one-off GET without building (and throwing away) a fresh TLS context."""
    with client(timeout=options.pop("timeout", 5.0)) as http:
        return http.get(url, **options)


#: Seconds an idle pooled connection is kept; below uvicorn's ``timeout_keep_alive`` (5 s).
KEEPALIVE_EXPIRY_S = 2.0


class SharedAsyncClient:
    """One long-lived ``AsyncClient`` per event loop, for a part's calls to the other parts.

    A client per call meant a new TCP connection (and connection-pool set-up) for every internal
    request: the MCP server made two per tool call. Keep-alive connections are reused instead.
    An ``AsyncClient`` belongs to the loop it first ran in, so each loop gets its own (tests
    serve the same app from several loops); a loop that ends takes its entry with it.
    """

    def __init__(self, **options: Any) -> None:
        # Drop an idle connection before the server does: uvicorn closes keep-alive connections
        # after 5 s, httpx keeps them 5 s too, and a request sent on a connection the server is
        # closing fails with an empty ReadError (seen as "the PDP could not be reached: ").
        options.setdefault("limits", httpx.Limits(keepalive_expiry=KEEPALIVE_EXPIRY_S))
        self._options = options
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient]
        self._clients = weakref.WeakKeyDictionary()

    def get(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        current = self._clients.get(loop)
        if current is None or current.is_closed:
            current = async_client(**self._options)
            self._clients[loop] = current
        return current

    async def aclose(self) -> None:
        """Close this loop's client (a part's shutdown)."""
        current = self._clients.pop(asyncio.get_running_loop(), None)
        if current is not None:
            await current.aclose()


class KeptTransport(httpx.BaseTransport):
    """A connection pool that outlives the clients built on it (``client(transport=...)``):
    closing a client leaves the pool open for the next one. Idle connections are dropped after
    :data:`KEEPALIVE_EXPIRY_S`, before the server would drop them; one the server closed is
    noticed before reuse (httpcore checks that an idle socket is still quiet)."""

    def __init__(self, **options: Any) -> None:
        options.setdefault("limits", httpx.Limits(keepalive_expiry=KEEPALIVE_EXPIRY_S))
        self._options = _transport_options(_options(options))
        self._pool = _Transport(**self._options)
        _KEPT.add(self)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._pool.handle_request(request)

    def _after_fork(self) -> None:
        """In a forked child: a pool of its own. The inherited one holds the parent's sockets
        (a request on one would interleave with the parent's on the same connection, and its
        answer could be read by either process) and maybe a lock some parent thread held at
        the fork; it is dropped unclosed, since closing could speak on the parent's
        connections (a TLS close_notify)."""
        self._pool = _Transport(**self._options)

    def close(self) -> None:
        """A client's close: the pool stays (``shutdown`` closes it)."""

    def shutdown(self) -> None:
        self._pool.close()


#: Every live kept pool, renewed in a forked child (``os.register_at_fork``).
_KEPT: weakref.WeakSet[KeptTransport] = weakref.WeakSet()


def _renew_kept_pools() -> None:
    for transport in list(_KEPT):
        transport._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_renew_kept_pools)
