"""Record every HTTP exchange the agent makes, with secrets redacted, so the harness can show it.

The recorder hooks into httpx (the agent's own calls) and httpx2 (the MCP SDK's transport)
through their ``event_hooks``. The recorded copy is safe to print: credential values become
``***``. The bearer tokens and assertions themselves are kept aside on ``Exchange.tokens`` so
the harness can decode them (token lineage) without ever printing a password or secret.

A hook keeps what it saw (the request's headers and body, the response's) and the redacted
copy is built the first time any of its fields is read, the same copy as when it was built
at once: most exchanges of a chain are never read (``lab agent``, the bench), and building
them was a tenth of the agent's CPU per chain (the MCP call's JSON redacted and re-encoded).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

REDACTED = "***"

#: Form fields and JSON keys whose values never appear in a recorded copy.
SECRET_FIELDS = frozenset(
    {
        "client_secret",
        "password",
        "client_assertion",
        "assertion",
        "subject_token",
        "actor_token",
        "code_verifier",
        "refresh_token",
        "clientsecret",  # the PDP's lab extension answers {"clientSecret": ...}
    }
)
#: Headers whose values never appear in a recorded copy (the auth scheme is kept for reading).
SECRET_HEADERS = frozenset({"authorization", "cookie", "set-cookie", "proxy-authorization"})
#: Response fields that carry tokens: shown as issued (the lab teaches by showing tokens),
#: and also collected on ``Exchange.tokens`` for decoding.
TOKEN_RESPONSE_FIELDS = ("access_token", "id_token", "refresh_token")

MAX_BODY_CHARS = 64_000


@dataclass(frozen=True)
class CapturedToken:
    """A token or assertion seen on the wire; ``where`` says in which part of the exchange."""

    #: e.g. "request.header.authorization", "request.form.subject_token",
    #: "response.json.access_token"
    where: str
    value: str


@dataclass
class Exchange:
    method: str
    url: str
    status: int | None
    request_headers: dict[str, str]
    request_body: str
    response_headers: dict[str, str]
    response_body: str
    elapsed_ms: float
    tokens: list[CapturedToken] = field(default_factory=list)
    error: str | None = None  # transport failure (connection refused...), when status is None

    def response_json(self) -> Any:
        """The response body parsed as JSON (redacted copy), or None."""
        try:
            return json.loads(self.response_body)
        except ValueError:
            return None

    def as_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "url": self.url,
            "status": self.status,
            "request_headers": self.request_headers,
            "request_body": self.request_body,
            "response_headers": self.response_headers,
            "response_body": self.response_body,
            "elapsed_ms": round(self.elapsed_ms, 1),
            "error": self.error,
        }


class Recorder:
    """Collects :class:`Exchange` records; hand its hooks to every HTTP client the agent makes."""

    def __init__(self) -> None:
        self.exchanges: list[Exchange] = []
        self._started: dict[int, float] = {}
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self.exchanges.clear()

    # -- hooks -------------------------------------------------------------------------------

    def sync_hooks(self) -> dict[str, list[Callable[..., Any]]]:
        """``event_hooks`` for a synchronous ``httpx.Client``."""
        return {"request": [self._on_request], "response": [self._on_response_sync]}

    def async_hooks(self) -> dict[str, list[Callable[..., Any]]]:
        """``event_hooks`` for an ``httpx.AsyncClient`` or ``httpx2.AsyncClient``."""

        async def on_request(request: Any) -> None:
            self._on_request(request)

        return {"request": [on_request], "response": [self._on_response_async]}

    def _on_request(self, request: Any) -> None:
        self._started[id(request)] = time.perf_counter()

    def _on_response_sync(self, response: Any) -> None:
        if _body_is_finite(response):
            response.read()
        self._record(response)

    async def _on_response_async(self, response: Any) -> None:
        if _body_is_finite(response):
            await response.aread()
        self._record(response)

    def _record(self, response: Any) -> None:
        request = response.request
        started = self._started.pop(id(request), None)
        elapsed_ms = (time.perf_counter() - started) * 1000 if started is not None else 0.0
        exchange = RecordedExchange.seen(
            request.method,
            str(request.url),
            response.status_code,
            elapsed_ms,
            # Copies of what build_exchange reads (``items()`` joins repeated names), taken now.
            request_headers=dict(request.headers.items()),
            request_body=_request_content(request),
            response_headers=dict(response.headers.items()),
            response_body=_response_content(response),
        )
        with self._lock:
            self.exchanges.append(exchange)

    def record_failure(self, method: str, url: str, error: str) -> None:
        """A request that never got a response (the harness still shows the attempt)."""
        exchange = Exchange(method, url, None, {}, "", {}, "", 0.0, [], error)
        with self._lock:
            self.exchanges.append(exchange)


#: The fields of an :class:`Exchange` a :class:`RecordedExchange` builds on first read.
_REDACTED_FIELDS = frozenset(
    {"request_headers", "request_body", "response_headers", "response_body", "tokens"}
)


class RecordedExchange(Exchange):
    """An exchange as a hook saw it: the same fields as :func:`build_exchange` gives, built the
    first time one is read (``repr``, ``==``, ``as_dict`` included). Until then the parts are
    held as sent and received, outside the dataclass's fields, so nothing prints them."""

    @classmethod
    def seen(
        cls,
        method: str,
        url: str,
        status: int | None,
        elapsed_ms: float,
        *,
        request_headers: Mapping[str, str],
        request_body: bytes | str,
        response_headers: Mapping[str, str],
        response_body: bytes | str,
    ) -> RecordedExchange:
        """The record of what a hook saw (the dataclass's own constructor, which
        ``dataclasses.replace`` calls, takes the redacted fields as an ``Exchange`` does)."""
        exchange = cls.__new__(cls)
        exchange.method, exchange.url, exchange.status = method, url, status
        exchange.elapsed_ms, exchange.error = elapsed_ms, None
        seen = (request_headers, request_body, response_headers, response_body)
        exchange.__dict__["_seen"] = seen
        return exchange

    def __getattr__(self, name: str) -> Any:
        # Called only for attributes not set yet: the redacted fields before their first read.
        if name not in _REDACTED_FIELDS:
            raise AttributeError(name)
        with _BUILDING:  # a reader in another thread waits here, then finds the fields set
            if name not in self.__dict__:
                if "_seen" not in self.__dict__:
                    raise AttributeError(name)
                self._build()
        return self.__dict__[name]

    def _build(self) -> None:
        request_headers, request_body, response_headers, response_body = self.__dict__["_seen"]
        built = build_exchange(
            method=self.method,
            url=self.url,
            status=self.status,
            request_headers=request_headers,
            request_body=_text(request_body),
            response_headers=response_headers,
            response_body=_text(response_body),
            elapsed_ms=self.elapsed_ms,
        )
        for name in _REDACTED_FIELDS:
            self.__dict__[name] = getattr(built, name)
        del self.__dict__["_seen"]  # the credentials as sent are not kept past this


#: Held while a recorded exchange builds its redacted copy (first reads only).
_BUILDING = threading.Lock()


# -- redaction (pure functions, unit-tested) --------------------------------------------------


def build_exchange(
    *,
    method: str,
    url: str,
    status: int | None,
    request_headers: Mapping[str, str],
    request_body: str,
    response_headers: Mapping[str, str],
    response_body: str,
    elapsed_ms: float,
) -> Exchange:
    tokens: list[CapturedToken] = []
    req_headers = redact_headers(request_headers, "request", tokens)
    req_body = redact_body(request_body, _content_type(request_headers), "request", tokens)
    resp_headers = redact_headers(response_headers, "response", tokens)
    resp_body = redact_body(response_body, _content_type(response_headers), "response", tokens)
    return Exchange(
        method=method,
        url=url,
        status=status,
        request_headers=req_headers,
        request_body=req_body,
        response_headers=resp_headers,
        response_body=resp_body,
        elapsed_ms=elapsed_ms,
        tokens=tokens,
    )


def redact_headers(
    headers: Mapping[str, str], side: str, tokens: list[CapturedToken]
) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in headers.items():
        lower = name.lower()
        if lower in SECRET_HEADERS:
            scheme, sep, credential = value.partition(" ")
            if lower.endswith("authorization") and sep:
                out[lower] = f"{scheme} {REDACTED}"
                if scheme.lower() == "bearer":
                    tokens.append(CapturedToken(f"{side}.header.{lower}", credential.strip()))
            else:
                out[lower] = REDACTED
        else:
            out[lower] = value
    return out


def redact_body(body: str, content_type: str, side: str, tokens: list[CapturedToken]) -> str:
    if not body:
        return body
    if "application/x-www-form-urlencoded" in content_type:
        return _redact_form(body, side, tokens)
    if "json" in content_type or body.lstrip().startswith(("{", "[")):
        try:
            data = json.loads(body)
        except ValueError:
            return body
        return json.dumps(_redact_json(data, f"{side}.json", tokens))
    return body


def _redact_form(body: str, side: str, tokens: list[CapturedToken]) -> str:
    pairs = parse_qsl(body, keep_blank_values=True)
    out: list[tuple[str, str]] = []
    for key, value in pairs:
        if key.lower() in SECRET_FIELDS:
            if _looks_like_jwt(value):
                tokens.append(CapturedToken(f"{side}.form.{key}", value))
            out.append((key, REDACTED))
        else:
            out.append((key, value))
    # Keep "***" readable rather than percent-encoded.
    return urlencode(out, safe="*:/ ")


def _redact_json(data: Any, where: str, tokens: list[CapturedToken]) -> Any:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            lowered = str(key).lower()
            if lowered in SECRET_FIELDS and isinstance(value, str):
                if _looks_like_jwt(value):
                    tokens.append(CapturedToken(f"{where}.{key}", value))
                out[key] = REDACTED
                continue
            if lowered in TOKEN_RESPONSE_FIELDS and isinstance(value, str):
                tokens.append(CapturedToken(f"{where}.{key}", value))
            out[key] = _redact_json(value, where, tokens)
        return out
    if isinstance(data, list):
        return [_redact_json(item, where, tokens) for item in data]
    return data


def _looks_like_jwt(value: str) -> bool:
    return value.count(".") == 2 and len(value) > 20


def _content_type(headers: Mapping[str, str]) -> str:
    for name, value in headers.items():
        if name.lower() == "content-type":
            return value.lower()
    return ""


def _body_is_finite(response: Any) -> bool:
    """A GET event stream stays open for server pushes: never wait for its end."""
    content_type = response.headers.get("content-type", "")
    return not (response.request.method == "GET" and "text/event-stream" in content_type)


def _request_content(request: Any) -> bytes | str:
    """The body as sent (bytes), or what the record shows instead (str)."""
    try:
        content: bytes = request.content
    except Exception:  # noqa: BLE001 - a streaming upload body is not available to record
        return "<streamed body>"
    return content


def _response_content(response: Any) -> bytes | str:
    if not _body_is_finite(response):
        return "<event stream>"
    try:
        content: bytes = response.content
    except Exception:  # noqa: BLE001 - an unread body is simply not recorded
        return ""
    return content


def _text(content: bytes | str) -> str:
    return content if isinstance(content, str) else _decode(content)


def _decode(content: bytes) -> str:
    text = content.decode("utf-8", errors="replace")
    if len(text) > MAX_BODY_CHARS:
        return text[:MAX_BODY_CHARS] + f"... ({len(text) - MAX_BODY_CHARS} more characters)"
    return text
