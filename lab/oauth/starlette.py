"""Turning errors into responses, once per app (the starlette ``exception_handlers`` map).

Every part builds its Starlette app with :func:`exception_handlers`. Endpoints only raise
:class:`~lab.oauth.errors.OAuthError`; anything unexpected becomes a 500 JSON body carrying a
correlation id — the traceback goes to the log, never to the client.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
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
    body = {"error": _http_error_code(exc.status_code), "error_description": str(exc.detail)}
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


def exception_handlers() -> dict[Any, Any]:
    return {
        OAuthError: handle_oauth_error,
        HTTPException: handle_http_exception,
        Exception: handle_unexpected,
    }


def _http_error_code(status: int) -> str:
    return {
        400: "invalid_request",
        401: "unauthorized",
        403: "forbidden",
        404: "not_found",
        405: "method_not_allowed",
        413: "payload_too_large",
        415: "unsupported_media_type",
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


async def read_json(request: Request, limit: int = MAX_BODY_BYTES) -> Any:
    import json

    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise InvalidRequest(
            f"expected an application/json body (got {content_type or 'no content type'})",
            status=415,
        )
    raw = await read_body(request, limit)
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequest("request body is not valid JSON") from None


def json_response(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return JSONResponse(data, status_code=status, headers=dict(headers or {}))
