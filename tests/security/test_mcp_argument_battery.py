"""Hostile tool arguments and JSON-RPC garbage at the MCP server, with a *valid* access token.

The token battery (``test_token_battery.py``) forges the tokens and the route sweep
(``test_route_sweep.py``) sends malformed requests without credentials. Here every request
carries a genuine access token for the MCP server (audience = its URL, ``api:role.docs-getter``
and ``mcp:role.mcp-accessor``, as the agent gets it), and what is hostile is the MCP message:

* every tool the server lists (``tools/list``) is called with one argument at a time missing,
  null, of each wrong JSON type, empty, huge (100 KB), with NUL, with non-ASCII look-alikes,
  path traversal, ids that do not exist, negative and huge numbers; and with unknown extra
  arguments;
* JSON-RPC itself is garbled: wrong ``jsonrpc``, missing ``id`` / ``method``, batch arrays,
  unknown methods, ``params`` of the wrong type, bodies that are not JSON or not UTF-8.

Whatever the server answers must be: an HTTP status below 500; a JSON-RPC error object, or a
tool result with ``isError`` (a request that is well-formed may also succeed); no stack trace,
internal path or token in any text. And the document API is never reached with a right the token
does not carry: the token holds docs-getter only, so every ``create_doc`` / ``delete_doc`` call,
whatever its arguments, is refused and leaves the document store as it was. A second token,
carrying docs-poster and docs-deleter as well (the learner made a member of both, the MCP server
allowed to exchange into them), takes the hostile ``create_doc`` / ``delete_doc`` arguments past
the exchange to the document API: there they are refused cleanly or stored exactly as sent, and
no hostile id deletes a document.

Shown able to fail (each by hand, then restored), on the code this battery landed with:

* ``get_doc`` / ``delete_doc`` taking a plain ``id: int`` (pydantic's lax mode) instead of the
  strict ``DocId``: ``test_a_hostile_argument_is_refused_cleanly[get_doc.id]`` failed with
  "get_doc.id='True': a value of the wrong type was accepted" (``true`` read document 1);
* ``create_doc`` exchanging for ``ROLE_GET`` instead of ``ROLE_POST``:
  ``test_no_argument_reaches_the_document_api_with_a_right_not_held`` failed - the docs-getter
  token's call reached the document API (which refused it with 403, too late);
* without the MCP server's own ``Content-Type`` check, ``text/plain`` and ``multipart`` bodies got
  the SDK's plain-text 400 and ``test_wrong_content_type_or_accept_is_refused_cleanly`` failed;
* without ``refusals_as_json``, the 5 MB body got the SDK's plain-text 413 and
  ``test_json_rpc_garbage_is_refused_cleanly[5 MB, over the transport's limit]`` failed;
* without ``lab/mcpserver/envelope.py`` and ``LabMCPServer`` (on ``51950ef``), every malformed
  id got an empty 202, and tool and envelope refusals quoted pydantic: the id, envelope,
  argument-words and params-words tests failed, and so did every battery test whose answers
  ``LIBRARY_TEXT`` now screens.
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest

from lab.agent.mcp_client import ToolCall, call_tools
from lab.config import LEARNER_PRINCIPAL, MCP_PRINCIPAL
from lab.oauth.jose import SigningKey, now
from lab.oauth.tokens import TYP_ACCESS_TOKEN
from tests.security.test_token_battery import MCP_INIT, Kit, bearer, kit  # noqa: F401

#: The tools the lab's MCP server offers (contracts §7); the battery checks the server lists
#: exactly these, so a new tool cannot slip past it untested.
EXPECTED_TOOLS = {"list_docs", "get_doc", "create_doc", "delete_doc"}
#: Tools that write: a docs-getter token must never get them to the document API.
WRITING_TOOLS = {"create_doc", "delete_doc"}

MISSING = object()  # an argument value meaning "leave the argument out"

HOSTILE_ARGUMENTS: list[Any] = [
    MISSING,
    None,
    0,
    -1,
    1.5,
    -(2**63),
    2**63,
    2**64 + 1,
    10**400,  # beyond every integer and float range
    1e308,
    True,
    False,
    {},
    {"id": 1},
    [],
    [1],
    "",
    " ",
    "1",
    "-1",
    "1e3",
    "x" * 100_000,
    "\x00",
    "a\x00b",
    "\u0430\u0440\u0456",  # Cyrillic look-alike of "api"
    "\U0001d7cf",  # mathematical bold digit one: NFKC folds it to "1"
    "\u0661",  # Arabic-Indic digit one
    "\u212a",  # Kelvin sign
    "../../../../etc/passwd",
    "../api/docs",
    "1/../../lab/settings",
    "..\\..\\windows",
    "%2e%2e%2f",
    "1?x=1",
    "1#x",
    "\ufffd",
    "<script>alert(1)</script>",
    "' OR 1=1 --",
    "99999999",  # an id that does not exist
]

#: Text that must never appear in an answer: a stack trace, an internal path, a module path.
LEAKS = re.compile(
    r"Traceback|File \"|site-packages|/lab/[a-z_]+/[a-z_]+\.py|\.py\", line|"
    r"/tmp/|/home/|/work/|sqlite3\.|Exception:|Error\(",
)
#: A validation library's own words: its error codes, model class names, links to its docs.
LIBRARY_TEXT = re.compile(
    r"[Pp]ydantic|validation errors? for|\[type=|input_value=|input_type=|"
    r"For further information|JSONRPC(Request|Notification|Response|Error)|[a-z_]Arguments\b",
)


# ------------------------------------------------------------------------------ sending


def post(kit: Kit, body: bytes, token: str | None = None, **headers: str) -> httpx.Response:  # noqa: F811
    sent = {
        b"Authorization": bearer(token if token is not None else kit.mcp_at()),
        b"Accept": b"application/json, text/event-stream",
        b"Content-Type": b"application/json",
    }
    for name, value in headers.items():
        sent[name.replace("_", "-").encode()] = value.encode()
    return kit.http.post(kit.lab.endpoints.mcp, content=body, headers=sent)


def rpc(kit: Kit, method: str, params: Any = MISSING, id_: Any = 1) -> httpx.Response:  # noqa: F811
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": id_, "method": method}
    if params is not MISSING:
        message["params"] = params
    return post(kit, json.dumps(message).encode())


def call_tool(kit: Kit, tool: str, arguments: Any) -> httpx.Response:  # noqa: F811
    return rpc(kit, "tools/call", {"name": tool, "arguments": arguments})


def problems_with(response: httpx.Response, described: str) -> list[str]:
    """Whatever the MCP server answered, the reasons it is not acceptable (none: fine)."""
    if response.status_code >= 500:
        return [f"{described}: HTTP {response.status_code} {response.text[:200]}"]
    if LEAKS.search(response.text):
        return [f"{described}: answer leaks internals: {response.text[:300]}"]
    if "eyJ" in response.text and "exchanged_token" not in response.text:
        return [f"{described}: answer carries a token: {response.text[:200]}"]
    for text in refusal_texts(response):
        if LIBRARY_TEXT.search(text):
            return [f"{described}: refusal quotes library internals: {text[:300]}"]
    if response.status_code == 202 and not response.content:
        return []  # a notification (no id): accepted, nothing to answer (JSON-RPC 2.0 §4.1)
    try:
        body = response.json()
    except ValueError:
        return [f"{described}: HTTP {response.status_code}, not JSON: {response.text[:200]}"]
    messages = body if isinstance(body, list) else [body]
    found = []
    for message in messages:
        if not isinstance(message, dict):
            found.append(f"{described}: not a JSON-RPC message: {str(message)[:200]}")
        elif response.status_code >= 400 and "error" in message and "jsonrpc" not in message:
            # The transport's own HTTP refusal (e.g. 406, 415) with an OAuth-shaped body.
            continue
        elif message.get("jsonrpc") != "2.0":
            found.append(f"{described}: not JSON-RPC 2.0: {str(message)[:200]}")
        elif "error" in message:
            error = message["error"]
            if not isinstance(error, dict) or not isinstance(error.get("code"), int):
                found.append(f"{described}: malformed JSON-RPC error {str(error)[:200]}")
        elif "result" not in message:
            found.append(f"{described}: neither result nor error: {str(message)[:200]}")
    return found


def refusal_texts(response: httpx.Response) -> list[str]:
    """What a refusal says to the client: a JSON-RPC error's message and data, a tool error's
    text blocks, an HTTP error's description."""
    try:
        body = response.json()
    except ValueError:
        return [response.text] if response.status_code >= 400 else []
    texts: list[str] = []
    for message in body if isinstance(body, list) else [body]:
        if not isinstance(message, dict):
            continue
        error = message.get("error")
        if isinstance(error, dict):
            texts += [str(error.get("message", "")), str(error.get("data", ""))]
        elif error is not None:
            texts += [str(error), str(message.get("error_description", ""))]
        result = message.get("result")
        if isinstance(result, dict) and result.get("isError"):
            texts += [str(block.get("text", "")) for block in result.get("content", [])]
    return texts


def tool_outcome(response: httpx.Response) -> str:
    """``"rpc-error"``, ``"tool-error"`` or ``"ok"`` for a tools/call answer."""
    body = response.json()
    if "error" in body:
        return "rpc-error"
    return "tool-error" if body["result"].get("isError") else "ok"


def document_ids(kit: Kit) -> set[int]:  # noqa: F811
    """The documents in the store, read through the document API with a docs-getter token."""
    response = kit.http.get(
        f"{kit.lab.endpoints.docapi_protected}/api/docs",
        headers={b"Authorization": bearer(kit.api_at())},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    docs = body["docs"] if isinstance(body, dict) else body
    return {int(doc["id"]) for doc in docs}


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def tools(kit: Kit) -> dict[str, dict[str, Any]]:  # noqa: F811
    """``tools/list`` as the server answers it: name → input schema."""
    response = rpc(kit, "tools/list", {})
    assert response.status_code == 200, response.text
    listed = {tool["name"]: tool["inputSchema"] for tool in response.json()["result"]["tools"]}
    assert set(listed) == EXPECTED_TOOLS, sorted(listed)
    return listed


def genuine_arguments(kit: Kit, schema: dict[str, Any]) -> dict[str, Any]:  # noqa: F811
    """Valid arguments for a tool: an existing document id, a plain name and content."""
    existing = min(document_ids(kit))
    values = {"integer": existing, "string": "battery"}
    return {
        name: values[spec.get("type", "string")]
        for name, spec in schema.get("properties", {}).items()
    }


# ------------------------------------------------------------------------------ tests


def test_the_genuine_calls_work_so_each_refusal_is_the_servers_doing(
    kit: Kit,  # noqa: F811
    tools: dict[str, dict[str, Any]],
) -> None:
    """The control: the reading tools answer with valid arguments; the writing ones are refused
    as a tool error (the token carries docs-getter only), not by the transport."""
    for name, schema in tools.items():
        response = call_tool(kit, name, genuine_arguments(kit, schema))
        assert not problems_with(response, name)
        expected = "tool-error" if name in WRITING_TOOLS else "ok"
        assert tool_outcome(response) == expected, (name, response.text[:500])


def argument_cases() -> list[tuple[str, str]]:
    """(tool, argument) for every argument of every tool, as the contracts list them."""
    return [
        ("get_doc", "id"),
        ("delete_doc", "id"),
        ("create_doc", "name"),
        ("create_doc", "content"),
    ]


def test_the_cases_cover_every_argument_the_server_lists(
    tools: dict[str, dict[str, Any]],
) -> None:
    listed = {(name, arg) for name, schema in tools.items() for arg in schema.get("properties", {})}
    assert listed == set(argument_cases())


@pytest.mark.parametrize(
    ("tool", "argument"), argument_cases(), ids=[f"{t}.{a}" for t, a in argument_cases()]
)
def test_a_hostile_argument_is_refused_cleanly(
    kit: Kit,  # noqa: F811
    tools: dict[str, dict[str, Any]],
    tool: str,
    argument: str,
) -> None:
    base = genuine_arguments(kit, tools[tool])
    expected_type = tools[tool]["properties"][argument].get("type")
    before = document_ids(kit)
    found: list[str] = []
    for value in HOSTILE_ARGUMENTS:
        arguments = {**base}
        if value is MISSING:
            del arguments[argument]
        else:
            arguments[argument] = value
        described = f"{tool}.{argument}={str(value)[:40]!r}"
        response = call_tool(kit, tool, arguments)
        problems = problems_with(response, described)
        found += problems
        if problems or response.status_code != 200:
            continue
        outcome = tool_outcome(response)
        if tool in WRITING_TOOLS and outcome == "ok":
            found.append(f"{described}: a docs-getter token got {tool} done")
        wrong_type = value is MISSING or not _fits(value, expected_type)
        if wrong_type and outcome == "ok":
            found.append(f"{described}: a value of the wrong type was accepted")
    assert document_ids(kit) == before, "the document store changed"
    assert not found, "\n".join(found)


def _fits(value: Any, json_type: str | None) -> bool:
    """Whether ``value`` is a sensible ``json_type`` value the tool may legitimately accept
    (the SDK validates in pydantic's lax mode: ``"1"`` is an integer 1 there)."""
    if json_type == "integer":
        if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
            return True
        return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= 2**53
    if json_type == "string":
        return isinstance(value, str)
    return True


def test_unknown_extra_arguments_change_nothing(
    kit: Kit,  # noqa: F811
    tools: dict[str, dict[str, Any]],
) -> None:
    """Arguments a tool does not declare are ignored or refused; none widens what it may do."""
    before = document_ids(kit)
    found: list[str] = []
    extras = {
        "role": "api:role.docs-poster",
        "scope": "api:role.docs-poster api:role.docs-deleter",
        "token": "x.y.z",
        "path": "../../lab/settings",
        "method": "DELETE",
        "__proto__": {"admin": True},
        "x" * 1000: "y" * 100_000,
    }
    for name, schema in tools.items():
        for extra, value in extras.items():
            arguments = {**genuine_arguments(kit, schema), extra: value}
            response = call_tool(kit, name, arguments)
            found += problems_with(response, f"{name} + {extra[:20]}")
            writes = response.status_code == 200 and name in WRITING_TOOLS
            if writes and tool_outcome(response) == "ok":
                found.append(f"{name} + {extra[:20]}: a docs-getter token got it done")
    assert document_ids(kit) == before
    assert not found, "\n".join(found)


def test_no_argument_reaches_the_document_api_with_a_right_not_held(
    kit: Kit,  # noqa: F811
    tools: dict[str, dict[str, Any]],
) -> None:
    """docs-getter only: create and delete are refused whatever the arguments, the document
    store is untouched, and the refusal is the exchange's (the tool result names no document
    API answer: the document API was never called)."""
    before = document_ids(kit)
    victim = min(before)
    for name, arguments in [
        ("create_doc", {"name": "escalated", "content": "by a docs-getter"}),
        ("create_doc", {"name": "../x", "content": "\x00"}),
        ("delete_doc", {"id": victim}),
        ("delete_doc", {"id": str(victim)}),
    ]:
        response = call_tool(kit, name, arguments)
        assert response.status_code == 200, response.text
        result = response.json()["result"]
        assert result["isError"] is True, result
        text = " ".join(block.get("text", "") for block in result["content"])
        assert "document API" not in text, text
        hop_urls = json.dumps(result.get("_meta", {}))
        assert kit.lab.endpoints.docapi_protected not in hop_urls, hop_urls
    assert document_ids(kit) == before


GARBAGE: list[tuple[str, bytes]] = [
    ("wrong jsonrpc version", b'{"jsonrpc":"1.0","id":1,"method":"tools/list"}'),
    ("jsonrpc a number", b'{"jsonrpc":2.0,"id":1,"method":"tools/list"}'),
    ("no jsonrpc", b'{"id":1,"method":"tools/list"}'),
    ("missing id (a notification)", b'{"jsonrpc":"2.0","method":"tools/list"}'),
    ("id an object", b'{"jsonrpc":"2.0","id":{"a":1},"method":"tools/list"}'),
    ("id an array", b'{"jsonrpc":"2.0","id":[1],"method":"tools/list"}'),
    ("id a float", b'{"jsonrpc":"2.0","id":1.5,"method":"tools/list"}'),
    ("id a huge integer", b'{"jsonrpc":"2.0","id":' + b"9" * 400 + b',"method":"tools/list"}'),
    ("id null", b'{"jsonrpc":"2.0","id":null,"method":"tools/list"}'),
    ("id a boolean", b'{"jsonrpc":"2.0","id":true,"method":"tools/list"}'),
    ("id 100 KB", b'{"jsonrpc":"2.0","id":"' + b"x" * 100_000 + b'","method":"tools/list"}'),
    ("missing method", b'{"jsonrpc":"2.0","id":1}'),
    ("method a number", b'{"jsonrpc":"2.0","id":1,"method":7}'),
    ("method null", b'{"jsonrpc":"2.0","id":1,"method":null}'),
    ("unknown method", b'{"jsonrpc":"2.0","id":1,"method":"tools/delete_everything"}'),
    ("method with NUL", b'{"jsonrpc":"2.0","id":1,"method":"tools/list\\u0000"}'),
    ("method 100 KB", b'{"jsonrpc":"2.0","id":1,"method":"' + b"m" * 100_000 + b'"}'),
    ("params a string", b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":"get_doc"}'),
    ("params a number", b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":1}'),
    ("params an array", b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":["get_doc"]}'),
    ("params null", b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":null}'),
    ("tools/call no name", b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}'),
    (
        "tools/call unknown tool",
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"rm_rf"}}',
    ),
    (
        "tools/call name a number",
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":1}}',
    ),
    (
        "tools/call arguments an array",
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call",'
        b'"params":{"name":"get_doc","arguments":[1]}}',
    ),
    (
        "tools/call arguments a string",
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call",'
        b'"params":{"name":"get_doc","arguments":"id=1"}}',
    ),
    (
        "tools/call traversal in the name",
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call",'
        b'"params":{"name":"../get_doc","arguments":{"id":1}}}',
    ),
    (
        "tools/list cursor an object",
        b'{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"cursor":{}}}',
    ),
    ("initialize params a list", b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":[]}'),
    (
        "initialize wrong protocol version",
        b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":1,'
        b'"capabilities":[],"clientInfo":"x"}}',
    ),
    ("a response instead of a request", b'{"jsonrpc":"2.0","id":1,"result":{}}'),
    ("an error instead of a request", b'{"jsonrpc":"2.0","id":1,"error":{"code":1}}'),
    (
        "batch of two",
        b'[{"jsonrpc":"2.0","id":1,"method":"tools/list"},'
        b'{"jsonrpc":"2.0","id":2,"method":"tools/list"}]',
    ),
    ("empty batch", b"[]"),
    ("batch of garbage", b"[1,2,3]"),
    (
        "batch of 1000",
        b"[" + b",".join([b'{"jsonrpc":"2.0","id":1,"method":"ping"}'] * 1000) + b"]",
    ),
    ("a JSON string", b'"tools/list"'),
    ("a JSON number", b"1"),
    ("null", b"null"),
    ("empty body", b""),
    ("not JSON", b"{not json"),
    ("truncated", b'{"jsonrpc":"2.0","id":1,"method":"tools/li'),
    ("not UTF-8", b'{"jsonrpc":"2.0","id":1,"method":"\xff\xfe"}'),
    ("NaN", b'{"jsonrpc":"2.0","id":NaN,"method":"tools/list"}'),
    ("duplicate keys", b'{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"rm"}'),
    (
        "deeply nested params",
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":'
        + b'{"a":' * 5_000
        + b"1"
        + b"}" * 5_000
        + b"}",
    ),
    ("deeply nested arrays", b"[" * 10_000 + b"]" * 10_000),
    (
        "5 MB, over the transport's limit",
        b'{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"x":"'
        + b"y" * 5_000_000
        + b'"}}',
    ),
]


@pytest.mark.parametrize(("name", "body"), GARBAGE, ids=[name for name, _ in GARBAGE])
def test_json_rpc_garbage_is_refused_cleanly(kit: Kit, name: str, body: bytes) -> None:  # noqa: F811
    before = document_ids(kit)
    response = post(kit, body)
    found = problems_with(response, name)
    assert not found, "\n".join(found)
    assert document_ids(kit) == before


MALFORMED_IDS: list[tuple[str, bytes]] = [
    ("an object", b'{"a":1}'),
    ("an array", b"[1]"),
    ("a float", b"1.5"),
    ("a whole float", b"1.0"),
    ("true", b"true"),
    ("false", b"false"),
    ("null", b"null"),
    ("beyond 2^53", b"9007199254740993"),
    ("400 digits", b"9" * 400),
    ("a 100 KB string", b'"' + b"x" * 100_000 + b'"'),
]


@pytest.mark.parametrize("method", ["tools/list", "tools/call", "ping", "initialize"])
@pytest.mark.parametrize(("kind", "id_"), MALFORMED_IDS, ids=[kind for kind, _ in MALFORMED_IDS])
def test_a_request_with_a_malformed_id_is_an_invalid_request(
    kit: Kit,  # noqa: F811
    method: str,
    kind: str,
    id_: bytes,
) -> None:
    """JSON-RPC 2.0 §5.1: a message whose id is not a string or an integer (MCP: never null)
    is owed an Invalid Request error with id null - not the empty 202 of a notification, which
    the SDK transport gave (it read the message as a notification and dropped it)."""
    params = {"tools/call": b'{"name":"list_docs","arguments":{}}'}.get(method, b"{}")
    body = b'{"jsonrpc":"2.0","id":' + id_ + b',"method":"' + method.encode()
    response = post(kit, body + b'","params":' + params + b"}")
    assert response.status_code == 400, (kind, response.status_code, response.text[:200])
    answer = response.json()
    assert answer["jsonrpc"] == "2.0" and answer["id"] is None, answer
    assert answer["error"]["code"] == -32600, answer
    assert "'id' must be a string" in answer["error"]["message"], answer
    assert len(response.content) < 1000  # the id is not echoed


@pytest.mark.parametrize(
    ("id_", "echoed"),
    [(b"7", 7), (b'"req-7"', "req-7"), (b"-3", -3), (b"9007199254740991", 2**53 - 1)],
)
def test_a_well_formed_id_is_answered_with_the_same_id(
    kit: Kit,  # noqa: F811
    id_: bytes,
    echoed: Any,
) -> None:
    response = post(kit, b'{"jsonrpc":"2.0","id":' + id_ + b',"method":"ping"}')
    assert response.status_code == 200, response.text
    assert response.json() == {"jsonrpc": "2.0", "id": echoed, "result": {}}


@pytest.mark.parametrize(
    "body",
    [
        b'{"jsonrpc":"2.0","method":"notifications/initialized"}',
        b'{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}',
        b'{"jsonrpc":"2.0","id":1,"result":{}}',
        b'{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"bad"}}',
    ],
    ids=["initialized", "cancelled", "a response", "an error response with id null"],
)
def test_notifications_and_responses_are_still_accepted_with_202(
    kit: Kit,  # noqa: F811
    body: bytes,
) -> None:
    """JSON-RPC 2.0 §4.1: a message without an id is a notification, never answered; MCP's
    transport acknowledges it (and a client's response) with an empty 202."""
    response = post(kit, body)
    assert (response.status_code, response.content) == (202, b""), response.text[:200]


#: (request, the JSON-RPC error code, words its message must contain).
ENVELOPE_ERRORS: list[tuple[str, bytes, int, str]] = [
    ("not JSON", b"{not json", -32700, "Parse error: the body is not JSON"),
    (
        "not UTF-8",
        b'{"jsonrpc":"2.0","id":1,"method":"\xff"}',
        -32700,
        "not UTF-8",
    ),
    ("NaN", b'{"jsonrpc":"2.0","id":NaN,"method":"ping"}', -32700, "NaN is not a JSON number"),
    (
        "a member twice",
        b'{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/list"}',
        -32700,
        "member 'method' appears twice",
    ),
    ("10,000 levels", b"[" * 10_000 + b"]" * 10_000, -32700, "nests too deeply"),
    (
        "a lone surrogate",
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call",'
        b'"params":{"name":"create_doc","arguments":{"name":"\\ud800","content":"x"}}}',
        -32700,
        "lone UTF-16 surrogate",
    ),
    ("a batch", b'[{"jsonrpc":"2.0","id":1,"method":"ping"}]', -32600, "batches are not supported"),
    ("a string", b'"ping"', -32600, "a JSON-RPC message is a JSON object, not a string"),
    ("jsonrpc 1.0", b'{"jsonrpc":"1.0","id":1,"method":"ping"}', -32600, "'jsonrpc' must be"),
    (
        "method a number",
        b'{"jsonrpc":"2.0","id":1,"method":7}',
        -32600,
        "'method' must be a string",
    ),
    ("no method", b'{"jsonrpc":"2.0","id":1}', -32600, "a request needs 'method'"),
    (
        "a malformed error response",
        b'{"jsonrpc":"2.0","id":1,"error":{"code":1}}',
        -32600,
        "integer 'code' and a string 'message'",
    ),
    (
        "params an array",
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":["list_docs"]}',
        -32602,
        "'params' must be a JSON object",
    ),
]


@pytest.mark.parametrize(
    ("name", "body", "code", "words"), ENVELOPE_ERRORS, ids=[row[0] for row in ENVELOPE_ERRORS]
)
def test_a_malformed_envelope_gets_a_precise_json_rpc_error(
    kit: Kit,  # noqa: F811
    name: str,
    body: bytes,
    code: int,
    words: str,
) -> None:
    """Each broken envelope gets JSON-RPC 2.0 §5.1's code and a sentence saying what is wrong -
    not pydantic's validation dump (the SDK's -32602 "Validation error: 6 validation errors for
    union[JSONRPCRequest, ...] ... errors.pydantic.dev")."""
    response = post(kit, body)
    assert response.status_code == 400, response.text[:200]
    error = response.json()["error"]
    assert error["code"] == code, error
    assert words in error["message"], error
    assert not problems_with(response, name)


def test_a_surrogate_pair_and_an_escaped_backslash_u_are_not_lone_surrogates(
    kit: Kit,  # noqa: F811
) -> None:
    """The guard: an emoji written as a UTF-16 pair and the literal text ``\\ud800`` are text."""
    for name in (b"\\ud83d\\ude00", b"\\\\ud800"):
        body = (
            b'{"jsonrpc":"2.0","id":1,"method":"tools/call",'
            b'"params":{"name":"get_doc","arguments":{"id":"' + name + b'"}}}'
        )
        response = post(kit, body)
        assert response.status_code == 200, response.text[:200]
        text = response.json()["result"]["content"][0]["text"]
        assert text.endswith("'id' must be an integer, not a string"), text


#: (tool, arguments, the refusal's exact words after "Error executing tool <tool>: ").
ARGUMENT_REFUSALS: list[tuple[str, dict[str, Any], str]] = [
    ("get_doc", {}, "invalid arguments: 'id' is required: an integer"),
    ("get_doc", {"id": "x"}, "invalid arguments: 'id' must be an integer, not a string"),
    ("get_doc", {"id": "1"}, "invalid arguments: 'id' must be an integer, not a string"),
    (
        "get_doc",
        {"id": 1.5},
        "invalid arguments: 'id' must be an integer, not a number with a fraction",
    ),
    ("get_doc", {"id": True}, "invalid arguments: 'id' must be an integer, not a boolean"),
    ("get_doc", {"id": None}, "invalid arguments: 'id' must be an integer, not null"),
    ("delete_doc", {"id": [1]}, "invalid arguments: 'id' must be an integer, not an array"),
    ("get_doc", {"id": -1}, "'id' must be a positive integer up to 2^53 (got -1)"),
    (
        "get_doc",
        {"id": 10**30},
        "'id' must be a positive integer up to 2^53 (got an integer of 31 digits)",
    ),
    ("create_doc", {"content": "c"}, "invalid arguments: 'name' is required: a string"),
    (
        "create_doc",
        {"name": 1, "content": {}},
        "invalid arguments: 'name' must be a string, not an integer; "
        "'content' must be a string, not an object",
    ),
]


@pytest.mark.parametrize(
    ("tool", "arguments", "words"),
    ARGUMENT_REFUSALS,
    ids=[f"{tool}{arguments}"[:60] for tool, arguments, _ in ARGUMENT_REFUSALS],
)
def test_a_bad_argument_is_refused_in_words_naming_it_and_what_was_expected(
    kit: Kit,  # noqa: F811
    tool: str,
    arguments: dict[str, Any],
    words: str,
) -> None:
    """A tool error a learner (or a model) can act on: the argument, what it must be, the JSON
    type that came - no pydantic model name (``get_docArguments``), error code or docs link."""
    response = call_tool(kit, tool, arguments)
    assert response.status_code == 200, response.text[:200]
    result = response.json()["result"]
    assert result["isError"] is True, result
    assert result["content"][0]["text"] == f"Error executing tool {tool}: {words}"


#: (params of tools/call or another method, words of the -32602 message).
PARAMS_REFUSALS: list[tuple[str, dict[str, Any], str]] = [
    ("tools/call", {}, "Invalid params for tools/call: 'name' is required: a string"),
    (
        "tools/call",
        {"name": 1},
        "Invalid params for tools/call: 'name' must be a string, not an integer",
    ),
    (
        "tools/call",
        {"name": "get_doc", "arguments": [1]},
        "Invalid params for tools/call: 'arguments' must be a JSON object, not an array",
    ),
    (
        "tools/list",
        {"cursor": {}},
        "Invalid params for tools/list: 'cursor' must be a string, not an object",
    ),
]


@pytest.mark.parametrize(
    ("method", "params", "words"),
    PARAMS_REFUSALS,
    ids=[f"{method}{params}"[:60] for method, params, _ in PARAMS_REFUSALS],
)
def test_bad_request_params_are_refused_in_words(
    kit: Kit,  # noqa: F811
    method: str,
    params: dict[str, Any],
    words: str,
) -> None:
    """The SDK's own params check says only "Invalid request parameters" (empty data); the
    MCP server says which member and what it must be, with the same code -32602."""
    response = rpc(kit, method, params)
    error = response.json()["error"]
    assert error == {"code": -32602, "message": words}, error


def test_wrong_content_type_or_accept_is_refused_cleanly(kit: Kit) -> None:  # noqa: F811
    """The transport's own refusals (406, 415) are 4xx, not 5xx, and leak nothing."""
    body = json.dumps(MCP_INIT).encode()
    found: list[str] = []
    for headers in [
        {"Content_Type": "text/plain"},
        {"Content_Type": "application/json; charset=latin-1"},
        {"Content_Type": "multipart/form-data; boundary=x"},
        {"Accept": "text/html"},
        {"Accept": ""},
    ]:
        response = post(kit, body, **headers)
        found += problems_with(response, str(headers))
    assert not found, "\n".join(found)


def test_an_expired_token_with_valid_arguments_is_still_refused(kit: Kit) -> None:  # noqa: F811
    """Control for the whole battery: a request like the ones above but with a token that is no
    longer valid never reaches a tool."""
    key = SigningKey.load_or_create(kit.lab.settings.keys_dir / "pdp-signing.pem")
    expired = key.sign(
        kit.fresh(kit.mcp_access, iat=now() - 7200, exp=now() - 3600), typ=TYP_ACCESS_TOKEN
    )
    body = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "list_docs", "arguments": {}},
        }
    ).encode()
    response = post(kit, body, token=expired)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"


# ------------------------------------------------------------------------------ with write rights

WRITER_SCOPE = (
    "api:role.docs-getter api:role.docs-poster api:role.docs-deleter mcp:role.mcp-accessor"
)


@pytest.fixture(scope="module")
def writer(kit: Kit) -> str:  # noqa: F811
    """An access token for the MCP server carrying docs-poster and docs-deleter too, after the
    learner is made a member of both and the MCP server may exchange into them: so hostile
    ``create_doc`` / ``delete_doc`` arguments get past the exchange to the document API."""
    admin = kit.lab.admin
    for role, action in (("docs-poster", "post"), ("docs-deleter", "delete")):
        admin.role("api", role, (LEARNER_PRINCIPAL,))
        admin.policy("api", role, [(role, action, "api:docs")])
        admin.role("api", f"{role}-exchanger", (MCP_PRINCIPAL,))
        admin.policy(
            "api",
            f"{role}-exchanger",
            [(f"{role}-exchanger", "zts.token_target_exchange", f"api:mcp:role.{role}")],
        )
    changes: dict[str, Any] = {"scope": WRITER_SCOPE}
    if "scp" in kit.mcp_access:
        changes["scp"] = WRITER_SCOPE.split()
    return kit.mcp_at(**changes)


def call_as(kit: Kit, token: str, tool: str, arguments: Any) -> httpx.Response:  # noqa: F811
    message = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments},
    }
    return post(kit, json.dumps(message).encode(), token=token)


def test_the_writer_token_creates_and_deletes(kit: Kit, writer: str) -> None:  # noqa: F811
    """The control for the two tests below: with the rights, the genuine calls succeed."""
    created = call_as(kit, writer, "create_doc", {"name": "control", "content": "c"})
    assert tool_outcome(created) == "ok", created.text[:500]
    doc_id = max(document_ids(kit))
    deleted = call_as(kit, writer, "delete_doc", {"id": doc_id})
    assert tool_outcome(deleted) == "ok", deleted.text[:500]
    assert doc_id not in document_ids(kit)


@pytest.mark.parametrize("argument", ["name", "content"])
def test_hostile_create_arguments_with_the_right_to_write(
    kit: Kit,  # noqa: F811
    writer: str,
    argument: str,
) -> None:
    """Past the exchange, at the document API: refused cleanly, or stored exactly as sent."""
    found: list[str] = []
    for value in HOSTILE_ARGUMENTS:
        arguments: dict[str, Any] = {"name": "battery", "content": "battery"}
        if value is MISSING:
            del arguments[argument]
        else:
            arguments[argument] = value
        described = f"create_doc.{argument}={str(value)[:40]!r}"
        before = document_ids(kit)
        response = call_as(kit, writer, "create_doc", arguments)
        problems = problems_with(response, described)
        found += problems
        if problems or response.status_code != 200:
            continue
        if tool_outcome(response) != "ok":
            if document_ids(kit) != before:
                found.append(f"{described}: refused, yet the store changed")
            continue
        if not isinstance(value, str):
            found.append(f"{described}: a non-string was accepted")
            continue
        new = document_ids(kit) - before
        stored = response.json()["result"]["structuredContent"]
        if len(new) != 1 or json.dumps(stored).find(json.dumps(value)[1:-1][:1000]) < 0:
            found.append(f"{described}: not stored as sent ({str(stored)[:200]})")
    assert not found, "\n".join(found)


def test_hostile_delete_ids_with_the_right_to_delete_touch_no_other_document(
    kit: Kit,  # noqa: F811
    writer: str,
) -> None:
    """With docs-deleter, a hostile id deletes nothing: only a real, exact id deletes a
    document (``true``, ``"1"``, ``1.5``, traversal and out-of-range ids are all refused)."""
    before = document_ids(kit)
    found: list[str] = []
    for value in HOSTILE_ARGUMENTS:
        if isinstance(value, int) and not isinstance(value, bool) and value in before:
            continue  # a genuine id
        arguments = {} if value is MISSING else {"id": value}
        described = f"delete_doc.id={str(value)[:40]!r}"
        response = call_as(kit, writer, "delete_doc", arguments)
        problems = problems_with(response, described)
        found += problems
        if not problems and response.status_code == 200 and tool_outcome(response) == "ok":
            found.append(f"{described}: deleted something")
    assert document_ids(kit) == before, "a hostile id deleted a document"
    assert not found, "\n".join(found)


# ------------------------------------------------------------------------------ the official client


def test_hostile_arguments_through_the_official_sdk_client(
    kit: Kit,  # noqa: F811
    tools: dict[str, dict[str, Any]],
) -> None:
    """The same wrong-typed arguments through the ``mcp`` SDK client (one session, every call
    in turn, as the agent makes them): each is a tool error the session survives - not a
    transport failure, not an HTTP refusal - and its text leaks nothing."""
    before = document_ids(kit)
    calls = []
    for name, schema in tools.items():
        for argument, spec in schema.get("properties", {}).items():
            for value in HOSTILE_ARGUMENTS:
                if value is MISSING or _fits(value, spec.get("type")):
                    continue
                if isinstance(value, int) and abs(value) > 2**64:
                    continue  # the SDK client cannot serialise it; sent raw above
                arguments = {**genuine_arguments(kit, schema), argument: value}
                calls.append(ToolCall(name, arguments))
    results = call_tools(kit.lab.endpoints.mcp, kit.mcp_at(), calls)
    found = [
        f"{r.name}({str(r.arguments)[:60]}): {r.http_status} {r.text[:200]}"
        for r in results
        if not r.is_error or r.http_status is not None or LEAKS.search(r.text)
    ]
    assert len(results) == len(calls) > 50
    assert document_ids(kit) == before
    assert not found, "\n".join(found)


def test_an_unknown_methods_name_is_echoed_only_when_short(kit: Kit) -> None:  # noqa: F811
    """-32601 "Method not found": the SDK echoes the method name in ``data`` whatever its
    length, so a 100 KB name came back as a 100 KB answer (and into the logs). A name longer
    than any MCP method is refused without the echo, as an over-long id is; a short unknown
    name is still echoed (the guard)."""
    short = rpc(kit, "nope/nothing")
    assert short.json()["error"]["code"] == -32601, short.text
    assert "nope/nothing" in short.text
    for name in ("x" * 100_000, "tools/call" + "\x1b[2J" * 40):
        response = rpc(kit, name)
        assert response.status_code < 500, response.status_code
        answer = response.json()
        assert answer["id"] == 1 and answer["error"]["code"] == -32601, answer
        assert len(response.content) < 1000, len(response.content)
        assert name[:50] not in response.text
        assert "a method name of" in answer["error"]["data"], answer
    # A notification of such a name: accepted as any unknown notification, and not passed on.
    dropped = post(kit, json.dumps({"jsonrpc": "2.0", "method": "y" * 100_000}).encode())
    assert (dropped.status_code, dropped.text) == (202, ""), dropped.text[:200]


def test_an_unknown_tools_name_is_echoed_only_when_short(kit: Kit) -> None:  # noqa: F811
    """The same echo with the tool's name (sixth session's outsider battery): ``tools/call``
    with a 100 KB ``name`` came back as "Unknown tool: <100 KB>" (and the gateway logged it
    twice). A name longer than MCP's 128 characters is -32602 naming its length; a short
    unknown name is still echoed (the guard). Shown failing without ``MAX_TOOL_NAME_CHARS``."""
    short = call_tool(kit, "nope", {})
    assert short.json()["result"]["isError"] is True, short.text
    assert "Unknown tool: nope" in short.text
    assert call_tool(kit, "n" * 128, {}).json()["result"]["isError"] is True
    for name in ("x" * 100_000, "list_docs" + "\x1b[2J" * 40):
        response = call_tool(kit, name, {})
        assert response.status_code == 200, response.status_code
        answer = response.json()
        assert answer["id"] == 1 and answer["error"]["code"] == -32602, answer
        assert len(response.content) < 1000, len(response.content)
        assert name[9:60] not in response.text
        assert f"{len(name)} characters long" in answer["error"]["message"], answer
