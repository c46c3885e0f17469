"""Turning errors into responses, once per app (the starlette ``exception_handlers`` map).

Every part builds its Starlette app with :func:`exception_handlers`. Endpoints only raise
:class:`~lab.oauth.errors.OAuthError`; anything unexpected becomes a 500 JSON body carrying a
correlation id — the traceback goes to the log, never to the client.
"""

from __future__ import annotations

import enum
import logging
import uuid
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl

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
    """ASGI middleware for every part: refuse malformed header sets (:func:`header_problem`) and
    foreign ``Host`` headers, add ``nosniff``.

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

        malformed = header_problem(scope.get("headers") or [])
        if malformed is not None:
            log.info("refused request with malformed headers: %s", malformed)
            body = {"error": "invalid_request", "error_description": malformed}
            await JSONResponse(body, status_code=400)(scope, receive, send_with_headers)
            return
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

#: Headers that carry one value: sent twice, which one counts differs between parsers (a proxy
#: may check one ``Authorization`` and the lab use the other), so the request is refused.
SINGLE_VALUED = frozenset(
    {
        b"authorization",
        b"host",
        b"content-type",
        b"content-length",
        b"x-correlation-id",
        b"dpop",
        b"mcp-protocol-version",
        b"mcp-session-id",
        b"origin",
        b"x-lab-token",
    }
)
#: Control characters a field value may not hold (RFC 9110 §5.5: only VCHAR, obs-text, SP and
#: HTAB); h11 lets them through, and a value reaches logs and the audit trail.
_HEADER_CONTROLS = bytes([*range(0x09), *range(0x0A, 0x20), 0x7F])


def header_problem(headers: list[tuple[bytes, bytes]]) -> str | None:
    """Why an ASGI header list is refused (a control character in a value, a single-valued
    header sent twice), or None. Two C-level passes: about a microsecond a request."""
    values = b"\t".join([value for _, value in headers])
    if len(values.translate(None, _HEADER_CONTROLS)) != len(values):
        for name, value in headers:
            odd = next((byte for byte in value if byte in _HEADER_CONTROLS), None)
            if odd is not None:
                return (
                    f"header {name.decode('latin-1')[:40]} contains the control character "
                    f"U+{odd:04X} (RFC 9110 §5.5)"
                )
    if len({name for name, _ in headers}) != len(headers):
        seen: set[bytes] = set()
        for name, _ in headers:
            if name in seen and name in SINGLE_VALUED:
                return f"header {name.decode('latin-1')} is sent more than once"
            seen.add(name)
    return None


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


class Repeats(enum.Enum):
    """What a parameter sent more than once means: one rule, chosen per endpoint by what the
    endpoint is (Keycloak 26 draws the same line; the lab's embedded IdP stands in for it)."""

    #: 400 ``invalid_request`` naming it: RFC 6749 §3.1 ("MUST NOT be included more than
    #: once") for the authorization and token endpoints, and every lab API. Keycloak refuses
    #: "duplicated parameter" at auth, token, introspect and userinfo alike.
    REFUSE = "refuse"
    #: The first value counts, the rest are ignored: Keycloak's RP-initiated logout and login
    #: form read ``@QueryParam`` / ``MultivaluedMap.getFirst`` (its JAX-RS runtime takes the
    #: first of a repeated parameter), so a client sees the same answer from either IdP.
    FIRST = "first"


class RepeatedParameter(InvalidRequest):
    """A parameter sent more than once where :attr:`Repeats.REFUSE` applies: apart from the
    rest of a malformed request because userinfo answers it with a bearer challenge."""


#: RFC 8693 §2.1 lets ``resource`` and ``audience`` repeat in a token request; the lab uses
#: their first value.
REPEATABLE_FORM_PARAMETERS = frozenset({"resource", "audience"})


def one_value_each(
    pairs: Iterable[tuple[str, str]],
    repeats: Repeats = Repeats.REFUSE,
    may_repeat: frozenset[str] = frozenset(),
    where: str = "parameter",
) -> dict[str, str]:
    """Name -> value, under ``repeats`` for a name sent twice (the first value is kept for a
    name in ``may_repeat`` either way); :class:`RepeatedParameter` naming a refused repeat."""
    params: dict[str, str] = {}
    for name, value in pairs:
        if name in params:
            if repeats is Repeats.REFUSE and name not in may_repeat:
                raise RepeatedParameter(f"{where} {name[:40]!r} is repeated")
            continue
        params[name] = value
    return params


async def read_form(
    request: Request, limit: int = MAX_BODY_BYTES, repeats: Repeats = Repeats.REFUSE
) -> dict[str, str]:
    """Parse an ``application/x-www-form-urlencoded`` body (RFC 6749 §3.2), a repeated
    parameter under ``repeats`` (``resource`` and ``audience`` may repeat: RFC 8693)."""
    return one_value_each(await form_pairs(request, limit), repeats, REPEATABLE_FORM_PARAMETERS)


async def form_pairs(request: Request, limit: int = MAX_BODY_BYTES) -> list[tuple[str, str]]:
    """An ``application/x-www-form-urlencoded`` body's ``(name, value)`` pairs in order,
    repeats included (:func:`read_form` applies the rule for repeats)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise InvalidRequest(
            "the token endpoint takes application/x-www-form-urlencoded bodies "
            f"(got {content_type or 'no content type'})",
            status=400,
        )
    raw = await read_body(request, limit)
    try:
        return parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise InvalidRequest("request body is not valid UTF-8") from None


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


class NotAJsonNumber(ValueError):
    """NaN or Infinity: not JSON numbers (RFC 8259 §6), though Python's json reads them."""


def refuse_constant(name: str) -> Any:
    """``json.loads``' ``parse_constant``: refuses NaN, Infinity and -Infinity."""
    raise NotAJsonNumber(f"{name} is not a JSON number (RFC 8259 §6)")


class DuplicateMember(ValueError):
    """An object names a member twice (RFC 8259 §4: names SHOULD be unique)."""


def unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads``' ``object_pairs_hook``: an object, or DuplicateMember naming the member
    sent twice."""
    members = dict(pairs)
    if len(members) != len(pairs):
        names = [name for name, _ in pairs]
        twice = next(name for index, name in enumerate(names) if name in names[:index])
        # Which of two values counts differs between parsers: refused, never guessed.
        raise DuplicateMember(f"member {twice[:100]!r} appears twice in one object")
    return members


def parse_json_text(text: str) -> Any:
    """Strict JSON: bounded nesting, no NaN/Infinity, no member named twice; ValueError for
    anything else."""
    import json

    if json_depth_exceeds(text):
        raise ValueError(f"JSON nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(text, parse_constant=refuse_constant, object_pairs_hook=unique_members)
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
    except DuplicateMember as twice:
        raise InvalidRequest(f"request body is ambiguous JSON: {twice}") from None
    except ValueError:
        raise InvalidRequest("request body is not valid JSON") from None


def single_query_params(request: Request, repeats: Repeats = Repeats.REFUSE) -> dict[str, str]:
    """The query parameters, each at most once: under :attr:`Repeats.REFUSE` (every lab API
    and OAuth endpoint) a repeated one is 400 ``invalid_request`` naming it."""
    return one_value_each(query_pairs(request), repeats, where="query parameter")


def query_pairs(request: Request) -> list[tuple[str, str]]:
    """The query's ``(name, value)`` pairs in order, repeats included."""
    # What ``request.query_params.multi_items()`` lists (Starlette parses the raw query the same
    # way), without building its multidict: this runs on every authorization request.
    return parse_qsl(request.scope["query_string"].decode("latin-1"), keep_blank_values=True)


def json_response(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return JSONResponse(data, status_code=status, headers=dict(headers or {}))
