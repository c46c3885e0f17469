"""HTTP clients for calls between the parts.

Building an ``httpx`` client loads the CA bundle, which costs tens of milliseconds: doing it
per request made every MCP tool call ~60 ms slower (two clients per call). Every client the
lab builds shares one TLS context instead; the lab's own calls are plain http on loopback,
but a learner may point a part at an https URL, so verification stays on.
"""

from __future__ import annotations

import functools
import ssl
from typing import Any

import httpx


@functools.cache
def tls_context() -> ssl.SSLContext:
    return httpx.create_ssl_context()


def client(**options: Any) -> httpx.Client:
    options.setdefault("verify", tls_context())
    return httpx.Client(**options)


def async_client(**options: Any) -> httpx.AsyncClient:
    options.setdefault("verify", tls_context())
    return httpx.AsyncClient(**options)


def get(url: str, **options: Any) -> httpx.Response:
    """A one-off GET without building (and throwing away) a fresh TLS context."""
    with client(timeout=options.pop("timeout", 5.0)) as http:
        return http.get(url, **options)
