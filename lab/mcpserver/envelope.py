"""The JSON-RPC 2.0 envelope of every message POSTed to ``/mcp``, checked before the SDK sees it.

The SDK's handshake-era transport reads a message whose ``id`` is malformed (an object, an
array, a float, a boolean, ``null`` on a request) as a *notification* and answers an empty
202, and answers other malformed envelopes with pydantic's text (internal class names, a link
to pydantic's docs). JSON-RPC 2.0 §5 wants an error response instead: -32700 for a body that is
not JSON, -32600 for a message that is not a valid Request object, with ``id`` null when the id
could not be read (§5.1). MCP narrows the id to a string or an integer, never null (MCP
2025-06-18, basic/"Requests"). A message without ``id`` is a notification (§4.1): still 202.

What passes is handed on unchanged; the SDK parses it again (a few microseconds for the
messages the lab sends, against a tool call's milliseconds).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from mcp_types import INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND, PARSE_ERROR
from mcp_types.methods import MONOLITH_REQUESTS
from pydantic import BaseModel, ValidationError
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lab.mcpserver.readable import describe, json_type
from lab.oauth.starlette import DuplicateMember, NotAJsonNumber, refuse_constant, unique_members

#: Longest string id answered (MCP sets no bound; SDK clients send small integers or UUIDs).
#: An id is echoed in the answer, so a 100 KB id would be a 100 KB echo.
MAX_ID_CHARS = 256
#: Longest method name looked up. MCP's longest is under 40 characters
#: (``notifications/resources/list_changed``); the SDK echoes an unknown method in its -32601
#: answer and names it in its log, whatever its length, so a 100 KB name was a 100 KB echo.
MAX_METHOD_CHARS = 128
#: Longest tool name looked up: MCP 2025-11-25 (server/tools, "Tool names") says 1 to 128
#: characters. The SDK answers an unknown tool with "Unknown tool: <name>" and the gateway logs
#: the name, so a 100 KB name was a 100 KB answer and log line, as with method names.
MAX_TOOL_NAME_CHARS = 128
#: Integer ids are exact in every JSON implementation up to here (RFC 7493 §2.2, I-JSON).
MAX_SAFE_INTEGER = 2**53 - 1

_ID_RULE = (
    f"a string of at most {MAX_ID_CHARS} characters or an integer between "
    f"-{MAX_SAFE_INTEGER} and {MAX_SAFE_INTEGER}"
)
#: The SDK's words for a request whose params fail its models (``data`` empty).
SDK_PARAMS_MESSAGE = "Invalid request parameters"


class Refusal(Exception):
    """A JSON-RPC error answered instead of handing the message on."""

    def __init__(
        self,
        code: int,
        message: str,
        id_: Any = None,
        *,
        data: str | None = None,
        status: int = 400,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.id = id_  # echoed only when it is itself a valid id
        self.data = data
        self.status = status

    def error(self) -> dict[str, Any]:
        """The JSON-RPC ``error`` member this refusal answers with."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error

    def response(self) -> Response:
        return JSONResponse(
            {"jsonrpc": "2.0", "id": self.id, "error": self.error()}, status_code=self.status
        )


class Dropped(Refusal):
    """A notification no MCP method could name: accepted (202) as the SDK accepts an unknown
    notification, and not handed on, so its name reaches no log. JSON-RPC 2.0 §4.1: a
    notification is never answered."""

    def __init__(self) -> None:
        super().__init__(METHOD_NOT_FOUND, "dropped")

    def response(self) -> Response:
        return Response(status_code=202)


#: A ``\\uD800``-``\\uDFFF`` escape: the only way a lone surrogate gets into JSON text that is
#: valid UTF-8. A cheap filter; only a body that has one is searched exactly.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def parse(body: bytes) -> Any:
    """The decoded message; :class:`Refusal` -32700 with the reason when it is not JSON."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Refusal(PARSE_ERROR, "Parse error: the body is not UTF-8") from None
    try:
        # The lab's strict JSON (lab.oauth.starlette), without read_json's depth bound: how
        # deep an MCP message may nest is the SDK's to say.
        message = json.loads(text, parse_constant=refuse_constant, object_pairs_hook=unique_members)
    except json.JSONDecodeError as exc:
        raise Refusal(PARSE_ERROR, f"Parse error: the body is not JSON ({exc})") from None
    except (DuplicateMember, NotAJsonNumber) as exc:
        raise Refusal(PARSE_ERROR, f"Parse error: {exc}") from None
    except RecursionError:
        raise Refusal(PARSE_ERROR, "Parse error: the JSON nests too deeply") from None
    except ValueError:  # an integer literal of thousands of digits
        raise Refusal(PARSE_ERROR, "Parse error: a number in the body is too long") from None
    if _SURROGATE_ESCAPE.search(body) and _has_lone_surrogate(message):
        # RFC 8259 §8.2: such a string is not Unicode text; the SDK's parser refuses it with
        # "unexpected end of hex escape", which names no reason.
        raise Refusal(
            PARSE_ERROR,
            "Parse error: a string holds a lone UTF-16 surrogate (\\uD800-\\uDFFF without its "
            "pair), which is not a Unicode character (RFC 8259 §8.2)",
        )
    return message


def _has_lone_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return any("\ud800" <= char <= "\udfff" for char in value)
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(item) for item in value)
    return False


def valid_id(value: Any) -> bool:
    if isinstance(value, str):
        return len(value) <= MAX_ID_CHARS
    return (
        isinstance(value, int)
        and not isinstance(value, bool)
        and -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER
    )


def check(body: bytes) -> dict[str, Any]:
    """The message if its envelope is valid JSON-RPC 2.0 as MCP uses it; else :class:`Refusal`."""
    message = parse(body)
    if isinstance(message, list):
        raise Refusal(
            INVALID_REQUEST,
            "Invalid Request: batches are not supported (MCP 2025-06-18 removed JSON-RPC "
            "batching): POST one message at a time",
        )
    if not isinstance(message, dict):
        raise Refusal(
            INVALID_REQUEST,
            f"Invalid Request: a JSON-RPC message is a JSON object, not {json_type(message)}",
        )
    has_id = "id" in message
    id_ = message.get("id")
    echo = id_ if has_id and valid_id(id_) else None
    is_request = "method" in message
    is_response = not is_request and ("result" in message or "error" in message)
    if has_id and not valid_id(id_) and not (is_response and id_ is None):
        raise Refusal(
            INVALID_REQUEST, f"Invalid Request: 'id' must be {_ID_RULE}, not {_id_kind(id_)}"
        )
    if message.get("jsonrpc") != "2.0":
        raise Refusal(
            INVALID_REQUEST, "Invalid Request: 'jsonrpc' must be the string \"2.0\"", echo
        )
    if is_request:
        if not isinstance(message["method"], str):
            raise Refusal(
                INVALID_REQUEST,
                f"Invalid Request: 'method' must be a string, not {json_type(message['method'])}",
                echo,
            )
        if len(message["method"]) > MAX_METHOD_CHARS:
            if not has_id:
                raise Dropped()
            # The SDK's own answer to an unknown method (200, -32601), its data saying what
            # was wrong instead of echoing the name back.
            raise Refusal(
                METHOD_NOT_FOUND,
                "Method not found",
                echo,
                data=f"a method name of {len(message['method'])} characters (MCP's methods "
                f"have at most {MAX_METHOD_CHARS})",
                status=200,
            )
        if "params" in message and not isinstance(message["params"], dict):
            raise Refusal(
                INVALID_PARAMS,
                "Invalid params: 'params' must be a JSON object (MCP passes parameters by "
                f"name), not {json_type(message['params'])}",
                echo,
            )
        name = (message.get("params") or {}).get("name")
        if (
            message["method"] == "tools/call"
            and isinstance(name, str)
            and len(name) > MAX_TOOL_NAME_CHARS
        ):
            # Answered as the SDK answers bad params (200, -32602), naming the length only.
            raise Refusal(
                INVALID_PARAMS,
                f"Invalid params for tools/call: 'name' is {len(name)} characters long; "
                f"a tool name has at most {MAX_TOOL_NAME_CHARS}",
                echo,
                status=200,
            )
        return message
    if not is_response:
        raise Refusal(
            INVALID_REQUEST,
            "Invalid Request: a request needs 'method' (a response, 'result' or 'error')",
            echo,
        )
    if not has_id or ("result" in message and "error" in message):
        raise Refusal(
            INVALID_REQUEST,
            "Invalid Request: a response carries 'id' and exactly one of 'result' or 'error'",
            echo,
        )
    error = message.get("error", {"code": 0, "message": ""})
    if not (
        isinstance(error, dict)
        and type(error.get("code")) is int
        and isinstance(error.get("message"), str)
    ):
        raise Refusal(
            INVALID_REQUEST,
            "Invalid Request: 'error' is an object with an integer 'code' and a string "
            "'message' (JSON-RPC 2.0 §5.1)",
            echo,
        )
    return message


def _id_kind(value: Any) -> str:
    if isinstance(value, str):
        return f"a string of {len(value)} characters"
    if isinstance(value, int) and not isinstance(value, bool):
        return "an integer out of that range"
    return json_type(value)


def params_problem(message: Mapping[str, Any]) -> str | None:
    """What is wrong with a request's ``params``, in words, by the method's own MCP model
    (the SDK only says "Invalid request parameters"); None when the model finds nothing."""
    method = message.get("method")
    model = MONOLITH_REQUESTS.get(method) if isinstance(method, str) else None
    if model is None:
        return None
    try:
        model.model_validate({"method": method, "params": message.get("params")}, by_name=False)
    except ValidationError as exc:
        return describe(exc.errors(include_url=False), drop=1, properties=_params_properties(model))
    return None


def _params_properties(model: type[BaseModel]) -> Mapping[str, Any]:
    """The JSON Schema properties of a request model's ``params`` (only on the error path)."""
    schema = model.model_json_schema(by_alias=True)
    params = schema.get("properties", {}).get("params", {})
    for option in [params, *params.get("anyOf", [])]:
        ref = option.get("$ref", "") if isinstance(option, dict) else ""
        if ref.startswith("#/$defs/"):
            found = schema.get("$defs", {}).get(ref.removeprefix("#/$defs/"), {})
            return dict(found.get("properties", {}))
    return dict(params.get("properties", {}))


def precise_params_errors(send: Send, message: Mapping[str, Any]) -> Send:
    """The SDK's -32602 "Invalid request parameters" (empty ``data``) for ``message``, answered
    with what is wrong and what was expected; every other answer passes unchanged."""
    held: Message | None = None

    async def answered(event: Message) -> None:
        nonlocal held
        if event["type"] == "http.response.start":
            held = event
            return
        if held is None or event["type"] != "http.response.body":
            await send(event)
            return
        start, held = held, None
        body = event.get("body", b"")
        if SDK_PARAMS_MESSAGE.encode() in body and _is_event_stream(start):
            # A stateful session (the gateway) answers as Server-Sent Events: the same answer
            # in a ``data:`` line of a stream that has no Content-Length to correct.
            await send(start)
            await send({**event, "body": _rewritten_events(body, message)})
            return
        if event.get("more_body", False) or SDK_PARAMS_MESSAGE.encode() not in body:
            await send(start)
            await send(event)
            return
        body = _rewritten(body, message)
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", b"%d" % len(body)))
        await send({**start, "headers": headers})
        await send({**event, "body": body})

    return answered


def _is_event_stream(start: Message) -> bool:
    return any(
        key.lower() == b"content-type" and value.lower().startswith(b"text/event-stream")
        for key, value in start.get("headers", [])
    )


def _rewritten_events(body: bytes, message: Mapping[str, Any]) -> bytes:
    """Each SSE ``data:`` line carrying the SDK's bare params error, reworded; the rest as is."""
    lines = body.split(b"\n")
    for index, line in enumerate(lines):
        text = line.rstrip(b"\r")
        if text.startswith(b"data:") and SDK_PARAMS_MESSAGE.encode() in text:
            reworded = _rewritten(text[5:].strip(), message)
            lines[index] = b"data: " + reworded + line[len(text) :]
    return b"\n".join(lines)


def params_message(message: Mapping[str, Any]) -> str | None:
    """The SDK's bare :data:`SDK_PARAMS_MESSAGE` for ``message`` reworded: its method, the
    member, what it must be and what came (:func:`params_problem`); None when nothing is found."""
    problem = params_problem(message)
    if problem is None:
        return None
    return f"Invalid params for {str(message.get('method'))[:100]}: {problem}"


def _rewritten(body: bytes, message: Mapping[str, Any]) -> bytes:
    try:
        answer = json.loads(body)
        error = answer["error"]
    except (ValueError, TypeError, KeyError):
        return body
    if not isinstance(error, dict) or error.get("message") != SDK_PARAMS_MESSAGE:
        return body
    reworded = params_message(message)
    if reworded is None:
        return body
    error["message"] = reworded
    error.pop("data", None)
    return json.dumps(answer).encode()


async def screened(
    scope: Scope, receive: Receive, send: Send, limit: int
) -> tuple[Receive, Send] | None:
    """Check a POSTed message before the SDK reads it: None when it was refused (its JSON-RPC
    error is answered here), else the ``receive`` that hands the same body on and the ``send``
    that words the SDK's bare params errors. A body over ``limit`` goes on unread (the SDK's
    own 413)."""
    body, receive = await buffered_body(scope, receive, limit)
    if body is None:
        return receive, send
    try:
        message = check(body)
    except Refusal as refusal:
        await refusal.response()(scope, receive, send)
        return None
    if "method" in message:
        send = precise_params_errors(send, message)
    return receive, send


class EnvelopeCheck:
    """ASGI middleware: :func:`screened` for every POST to ``path`` (an MCP endpoint of the
    SDK's Streamable HTTP transport that has no gate of its own, e.g. the AI Client Gateway)."""

    def __init__(self, app: ASGIApp, path: str, limit: int) -> None:
        self.app = app
        self.path = path
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("method") == "POST" and scope["path"] == self.path:
            checked = await screened(scope, receive, send, self.limit)
            if checked is None:
                return
            receive, send = checked
        await self.app(scope, receive, send)


async def buffered_body(scope: Scope, receive: Receive, limit: int) -> tuple[bytes | None, Receive]:
    """The whole request body (None when it is over ``limit`` or the client left) and a
    ``receive`` that hands the same body on to the app behind, then the client's own events."""
    for name, value in scope.get("headers", []):
        if name.lower() == b"content-length" and value.strip().isdigit() and int(value) > limit:
            return None, receive
    chunks: list[bytes] = []
    size = 0
    while True:
        event = await receive()
        if event["type"] != "http.request":
            return None, _replaying([event], receive)
        chunk = event.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not event.get("more_body", False):
            body = b"".join(chunks)
            return body, _replaying([{"type": "http.request", "body": body}], receive)
        if size > limit:
            held = {"type": "http.request", "body": b"".join(chunks), "more_body": True}
            return None, _replaying([held], receive)


def _replaying(events: list[Any], receive: Receive) -> Receive:
    pending = list(events)

    async def replay() -> Any:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay
