"""Turning errors into responses, once per app (the starlette ``exception_handlers`` map).

Every part builds its Starlette app with :func:`exception_handlers`. Endpoints only raise
:class:`~lab.oauth.errors.OAuthError`; anything unexpected becomes a 500 JSON body carrying a
correlation id — the traceback goes to the log, never to the client.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from lab.oauth.errors import InvalidRequest, OAuthError, PayloadTooLarge

log = logging.getLogger("lab.http")

#: Largest request body any lab server reads (tokens are a few KB; documents are small).
MAX_BODY_BYTES = 64 * 1024

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


async def handle_oauth_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, OAuthError)
    headers = {**NO_STORE, **exc.headers()}
    return JSONResponse(exc.body(), status_code=exc.status_code, headers=headers)


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code in (204, 304):
        return Response(status_code=exc.status_code, headers=exc.headers)
    body = {"error": http_error_code(exc.status_code), "error_description": str(exc.detail)}
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    correlation_id = uuid.uuid4().hex[:12]
    log.exception("unexpected error %s on %s %s", correlation_id, request.method, request.url.path)
    body = {
        "error": "server_error",
        "error_description": f"internal error; correlation id {correlation_id}",
        "correlation_id": correlation_id,
    }
    return JSONResponse(body, status_code=500)


class HostCheck:
    """ASGI middleware for every part: refuse foreign ``Host`` headers, add ``nosniff``.

    DNS rebinding: a web page on ``evil.example`` that re-points its name at 127.0.0.1 can
    make the learner's browser send requests to the lab with ``Host: evil.example``. Only
    loopback names and the hosts of the lab's own endpoints are served (``/healthz`` answers
    any host, for kubelet probes that address the pod IP). Every response carries
    ``X-Content-Type-Options: nosniff`` so a JSON error body is never sniffed as HTML.
    """

    LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")

    def __init__(self, app: Any, allowed_hosts: Iterable[str] = ()) -> None:
        self.app = app
        self.allowed = {host.lower() for host in (*self.LOOPBACK, *allowed_hosts) if host}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != NOSNIFF[0]]
                message = {**message, "headers": [*headers, NOSNIFF]}
            await send(message)

        host = _host_header(scope)
        if scope.get("path") != "/healthz" and not self._allowed(host):
            log.info("refused request for Host %r (not a lab host)", host[:100])
            response = JSONResponse(
                {
                    "error": "invalid_request",
                    "error_description": "Host header does not name this lab server",
                },
                status_code=421,
            )
            await response(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)

    def _allowed(self, host: str) -> bool:
        if not host:
            return False
        name = host.lower()
        if name.startswith("["):
            name = name.split("]", 1)[0] + "]"
        elif name.count(":") == 1:
            name = name.split(":", 1)[0]
        return name in self.allowed


NOSNIFF = (b"x-content-type-options", b"nosniff")


def _host_header(scope: Any) -> str:
    for key, value in scope.get("headers") or []:
        if key == b"host":
            return str(value.decode("latin-1"))
    return ""


def harden(app: Any, settings: Any) -> None:
    """Put :class:`HostCheck` in front of a part's app (``settings``: :class:`lab.config.Settings`):
    loopback, the configured bind host and the hosts of the lab's endpoints are accepted."""
    hosts = endpoint_hosts(settings.endpoints.as_dict().values())
    app.add_middleware(HostCheck, allowed_hosts=[settings.host, *hosts])


def endpoint_hosts(urls: Iterable[str]) -> list[str]:
    """Host names (no port) of the lab's endpoint URLs, for :class:`HostCheck`."""
    from urllib.parse import urlsplit

    hosts = []
    for url in urls:
        hostname = urlsplit(url).hostname
        if hostname:
            hosts.append(f"[{hostname}]" if ":" in hostname else hostname)
    return hosts


def exception_handlers() -> dict[Any, Any]:
    return {
        OAuthError: handle_oauth_error,
        HTTPException: handle_http_exception,
        Exception: handle_unexpected,
    }


def http_error_code(status: int) -> str:
    """The ``error`` member of a JSON refusal with this HTTP status (not an OAuth endpoint's)."""
    return {
        400: "invalid_request",
        401: "unauthorized",
        403: "forbidden",
        404: "not_found",
        405: "method_not_allowed",
        413: "payload_too_large",
        415: "unsupported_media_type",
        421: "misdirected_request",
    }.get(status, "error")


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """Read at most ``limit`` bytes; a larger body is a 413, never a memory problem."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise PayloadTooLarge(f"request body exceeds {limit} bytes")
        except ValueError:
            raise InvalidRequest("Content-Length is not a number") from None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_form(request: Request, limit: int = MAX_BODY_BYTES) -> dict[str, str]:
    """Parse an ``application/x-www-form-urlencoded`` body (RFC 6749 §3.2).

    Repeated parameters are refused (RFC 6749 §3.1: "MUST NOT be included more than once"),
    except ``resource`` and ``audience`` which RFC 8693 lets repeat; the lab uses their first value.
    """
    from urllib.parse import parse_qsl

    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise InvalidRequest(
            "the token endpoint takes application/x-www-form-urlencoded bodies "
            f"(got {content_type or 'no content type'})",
            status=400,
        )
    raw = await read_body(request, limit)
    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise InvalidRequest("request body is not valid UTF-8") from None
    form: dict[str, str] = {}
    for key, value in pairs:
        if key in form and key not in ("resource", "audience"):
            raise InvalidRequest(f"parameter {key!r} is repeated")
        form.setdefault(key, value)
    return form


#: Deepest JSON nesting any lab server parses (real bodies are 3-4 levels deep).
MAX_JSON_DEPTH = 32


def json_depth_exceeds(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when ``text`` nests arrays/objects deeper than ``limit`` (brackets inside strings
    do not count). One linear pass, so a 10,000-level body is refused before ``json`` recurses."""
    depth = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > limit:
                return True
        elif char in "]}":
            depth -= 1
    return False


def _refuse_constant(name: str) -> Any:
    # RFC 8259 §6: NaN and Infinity are not JSON numbers; Python's json would accept them.
    raise ValueError(f"{name} is not a JSON number")


def parse_json_text(text: str) -> Any:
    """Strict JSON: bounded nesting, no NaN/Infinity; ValueError for anything else."""
    import json

    if json_depth_exceeds(text):
        raise ValueError(f"JSON nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise ValueError("JSON nests too deeply") from None


async def read_json(request: Request, limit: int = MAX_BODY_BYTES) -> Any:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise InvalidRequest(
            f"expected an application/json body (got {content_type or 'no content type'})",
            status=415,
        )
    raw = await read_body(request, limit)
    try:
        return parse_json_text(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise InvalidRequest("request body is not valid UTF-8") from None
    except ValueError:
        raise InvalidRequest("request body is not valid JSON") from None


def json_response(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return JSONResponse(data, status_code=status, headers=dict(headers or {}))
