"""Where a client gets tokens for an MCP server: RFC 9728, then RFC 8414 (MCP authorization,
2025-11-25, "Authorization Server Discovery").

1. An unauthenticated MCP request; the 401's ``WWW-Authenticate`` may carry ``resource_metadata``
   (RFC 9728 §5.1) and ``scope`` (RFC 6750 §3).
2. The protected-resource metadata from that URL, else from the well-known URIs (RFC 9728 §3.1:
   path-inserted first, then the root); its ``resource`` must be the server's URL (§3.3).
3. The authorization server's metadata (RFC 8414 §3.1 path-inserted, then the OpenID Connect
   forms); its ``issuer`` must be the one we asked about (§3.3). It names the token endpoint and
   the client authentication methods it accepts.

Nothing here knows an endpoint path of the lab: every URL comes from the server or the caller.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

MCP_PROTOCOL_VERSION = "2025-11-25"

#: RFC 8414 §2: "If omitted, the default is client_secret_basic."
DEFAULT_AUTH_METHODS = ("client_secret_basic",)

_PARAM = re.compile(r'([A-Za-z0-9_\-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,]+)')


class DiscoveryError(RuntimeError):
    """The chain of metadata broke: says which document and why."""


@dataclass(frozen=True)
class Challenge:
    """What the MCP server said to a request without credentials."""

    status: int
    resource_metadata: str | None = None
    scope: str | None = None
    error: str | None = None
    header: str = ""


@dataclass(frozen=True)
class AuthorizationServer:
    """RFC 8414 metadata, reduced to what a token client needs."""

    issuer: str
    token_endpoint: str
    auth_methods: tuple[str, ...] = DEFAULT_AUTH_METHODS
    grant_types: tuple[str, ...] = ()
    scopes_supported: tuple[str, ...] = ()
    metadata_url: str = ""
    metadata: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class Discovery:
    """The MCP server's resource identifier and the authorization server that issues for it."""

    resource: str
    resource_metadata_url: str
    authorization_server: AuthorizationServer
    scopes_supported: tuple[str, ...] = ()
    challenge: Challenge | None = None

    @property
    def scope_hint(self) -> str | None:
        """MCP "Scope Selection Strategy": the challenge's ``scope``, else the PRM's list."""
        if self.challenge is not None and self.challenge.scope:
            return self.challenge.scope
        return " ".join(self.scopes_supported) or None


def parse_bearer_challenge(header: str) -> dict[str, str]:
    """The auth-params of a ``Bearer`` challenge (RFC 6750 §3), names lower-cased."""
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return {}
    params: dict[str, str] = {}
    for name, raw in _PARAM.findall(rest):
        value = raw[1:-1].replace('\\"', '"').replace("\\\\", "\\") if raw[:1] == '"' else raw
        params.setdefault(name.lower(), value)
    return params


def probe(http: httpx.Client, mcp_url: str) -> Challenge:
    """An MCP ``initialize`` without credentials; a protected server answers 401 (MCP auth §2.1)."""
    body = {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {
            "protocolVersion": MCP_PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "lab-agent-discovery", "version": "1"},
        },
    }
    headers = {"Accept": "application/json, text/event-stream"}
    response = http.post(mcp_url, json=body, headers=headers)
    header = response.headers.get("www-authenticate", "")
    params = parse_bearer_challenge(header)
    return Challenge(
        status=response.status_code,
        resource_metadata=params.get("resource_metadata"),
        scope=params.get("scope"),
        error=params.get("error"),
        header=header,
    )


def protected_resource_metadata_urls(resource: str) -> list[str]:
    """RFC 9728 §3.1: the path-inserted well-known URI, then the root one (MCP auth §2.3.1)."""
    parts = urlsplit(resource)
    path = parts.path.rstrip("/")
    urls = []
    if path:
        urls.append(_at(parts, f"/.well-known/oauth-protected-resource{path}"))
    urls.append(_at(parts, "/.well-known/oauth-protected-resource"))
    return urls


def authorization_server_metadata_urls(issuer: str) -> list[str]:
    """RFC 8414 §3.1 then OpenID Connect Discovery, in the order MCP auth §2.3.3 gives."""
    parts = urlsplit(issuer)
    path = parts.path.rstrip("/")
    if not path:
        return [
            _at(parts, "/.well-known/oauth-authorization-server"),
            _at(parts, "/.well-known/openid-configuration"),
        ]
    return [
        _at(parts, f"/.well-known/oauth-authorization-server{path}"),
        _at(parts, f"/.well-known/openid-configuration{path}"),
        _at(parts, f"{path}/.well-known/openid-configuration"),
    ]


def _at(parts: Any, path: str) -> str:
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _get_json(http: httpx.Client, url: str) -> dict[str, Any] | None:
    try:
        response = http.get(url, headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:
        raise DiscoveryError(f"{url} is unreachable: {exc.__class__.__name__}: {exc}") from None
    if response.status_code != 200:
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def fetch_protected_resource_metadata(
    http: httpx.Client, mcp_url: str, hinted: str | None = None
) -> tuple[str, dict[str, Any]]:
    """The PRM document and where it was found; the hinted URL (from the 401) comes first."""
    candidates = ([hinted] if hinted else []) + protected_resource_metadata_urls(mcp_url)
    for url in candidates:
        document = _get_json(http, url)
        if document is not None:
            return url, document
    raise DiscoveryError(
        f"no protected resource metadata for {mcp_url} (tried {', '.join(candidates)})"
    )


def same_resource(a: str, b: str) -> bool:
    """RFC 9728 §3.3 compares identifiers; scheme and host are case-insensitive (RFC 3986 §6.2.2.1),
    and a trailing slash on an otherwise equal URL is tolerated."""
    pa, pb = urlsplit(a), urlsplit(b)
    return (
        pa.scheme.lower() == pb.scheme.lower()
        and pa.netloc.lower() == pb.netloc.lower()
        and pa.path.rstrip("/") == pb.path.rstrip("/")
        and pa.query == pb.query
    )


def fetch_authorization_server(http: httpx.Client, issuer: str) -> AuthorizationServer:
    """RFC 8414 metadata of ``issuer``; the document must name that same issuer (§3.3)."""
    tried = authorization_server_metadata_urls(issuer)
    for url in tried:
        document = _get_json(http, url)
        if document is None:
            continue
        if str(document.get("issuer", "")).rstrip("/") != issuer.rstrip("/"):
            raise DiscoveryError(
                f"{url} names issuer {document.get('issuer')!r}, not {issuer!r} (RFC 8414 §3.3)"
            )
        token_endpoint = document.get("token_endpoint")
        if not isinstance(token_endpoint, str) or not token_endpoint:
            raise DiscoveryError(f"{url} has no token_endpoint")
        return AuthorizationServer(
            issuer=str(document["issuer"]),
            token_endpoint=token_endpoint,
            auth_methods=_strings(document.get("token_endpoint_auth_methods_supported"))
            or DEFAULT_AUTH_METHODS,
            grant_types=_strings(document.get("grant_types_supported")),
            scopes_supported=_strings(document.get("scopes_supported")),
            metadata_url=url,
            metadata=document,
        )
    raise DiscoveryError(
        f"no authorization server metadata for {issuer} (tried {', '.join(tried)})"
    )


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def choose_issuer(listed: list[str], pinned: str | None, metadata_url: str) -> str:
    """The AS to use. A pinned issuer (SEP-990: the client is provisioned for one AS) must be
    listed, so a resource server cannot send the client's credentials and ID-JAG elsewhere."""
    if pinned is None:
        if not listed:
            raise DiscoveryError(f"{metadata_url} lists no authorization_servers")
        return listed[0]
    for issuer in listed:
        if issuer.rstrip("/") == pinned.rstrip("/"):
            return issuer
    raise DiscoveryError(
        f"{metadata_url} lists authorization servers {listed}, "
        f"not the one this client is configured for ({pinned})"
    )


def discover(http: httpx.Client, mcp_url: str, *, issuer: str | None = None) -> Discovery:
    """From the MCP server's URL to its authorization server's token endpoint."""
    try:
        challenge = probe(http, mcp_url)
    except httpx.HTTPError as exc:
        raise DiscoveryError(
            f"the MCP server at {mcp_url} is unreachable: {exc.__class__.__name__}: {exc}"
        ) from None
    prm_url, prm = fetch_protected_resource_metadata(http, mcp_url, challenge.resource_metadata)
    resource = prm.get("resource")
    if not isinstance(resource, str) or not same_resource(resource, mcp_url):
        raise DiscoveryError(
            f"{prm_url} is for resource {resource!r}, not {mcp_url!r} (RFC 9728 §3.3)"
        )
    listed = [str(s) for s in prm.get("authorization_servers") or [] if isinstance(s, str)]
    chosen = choose_issuer(listed, issuer, prm_url)
    return Discovery(
        resource=resource,
        resource_metadata_url=prm_url,
        authorization_server=fetch_authorization_server(http, chosen),
        scopes_supported=_strings(prm.get("scopes_supported")),
        challenge=challenge,
    )


#: How long a process reuses what it discovered about an MCP server (RFC 9728/8414 metadata
#: is static configuration; a restart on other ports is another URL, hence another key).
DISCOVERY_TTL_S = 300.0


class DiscoveryCache:
    """Successful discoveries by (MCP server URL, pinned issuer), for :data:`DISCOVERY_TTL_S`:
    a new agent in the same process does not repeat the three metadata round trips.
    Failures are never kept. Thread-safe; bounded."""

    def __init__(
        self, ttl_s: float = DISCOVERY_TTL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._found: dict[tuple[str, str | None], tuple[float, Discovery]] = {}

    def get(self, mcp_url: str, issuer: str | None) -> Discovery | None:
        with self._lock:
            entry = self._found.get((mcp_url, issuer))
            if entry is None or entry[0] <= self._clock():
                self._found.pop((mcp_url, issuer), None)
                return None
            return entry[1]

    def put(self, mcp_url: str, issuer: str | None, found: Discovery) -> None:
        with self._lock:
            if (mcp_url, issuer) not in self._found and len(self._found) >= 64:
                self._found.pop(next(iter(self._found)))
            self._found[(mcp_url, issuer)] = (self._clock() + self.ttl_s, found)

    def clear(self) -> None:
        with self._lock:
            self._found.clear()


#: This process's discoveries (``lab.agent.Agent`` reads and fills it).
DISCOVERIES = DiscoveryCache()


def discover_cached(
    http: httpx.Client,
    mcp_url: str,
    *,
    issuer: str | None = None,
    cache: DiscoveryCache = DISCOVERIES,
) -> Discovery:
    """:func:`discover`, unless this process found the same server's metadata recently."""
    found = cache.get(mcp_url, issuer)
    if found is None:
        found = discover(http, mcp_url, issuer=issuer)
        cache.put(mcp_url, issuer, found)
    return found
