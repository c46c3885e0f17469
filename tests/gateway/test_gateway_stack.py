"""The gateway against a running lab, through unmodified MCP clients.

The official Python SDK's stdio client and Streamable HTTP client, and the MCP Inspector CLI, each
list the gateway's tools and call ``list_docs``; the documents come back for the learner. Then the
learner leaves ``docs-getter`` and the refusal reaches the client as a tool error naming F2.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
from typing import Any

import httpx
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from lab.config import AGENT_PRINCIPAL, LEARNER_PRINCIPAL, MCP_PRINCIPAL
from tests import npmtools
from tests.agent.labsetup import Admin
from tests.gateway.conftest import RunningGateway, gateway_command
from tests.gateway.stdio_wire import StdioGateway, run_ts_client
from tests.mcpserver.test_mcp_auth import INITIALIZE, MCP_HEADERS
from tests.stack import ROOT, Stack

LAB_TOOLS = {"list_docs", "get_doc", "create_doc", "delete_doc"}
MEMBERSHIP_MESSAGE = (
    "principal human.idjag-learner is not included in the requested role(s) in domain api"
)
JWT = re.compile(r"eyJ[\w-]{8,}\.[\w-]{8,}\.[\w-]{8,}")


async def list_and_call(client: Client) -> tuple[set[str], Any]:
    tools = await client.list_tools()
    result = await client.call_tool("list_docs", {})
    return {tool.name for tool in tools.tools}, result


def assert_docs_for_learner(result: Any) -> None:
    assert not result.is_error, result.content
    data = result.structured_content
    assert [doc["id"] for doc in data["docs"]] == [1, 2]
    assert data["exchanged_token"]["sub"] == LEARNER_PRINCIPAL
    assert data["received_token"]["client_id"] == "ai.agent"


async def test_sdk_stdio_client_lists_and_calls_list_docs(lab_stack: Stack) -> None:
    command, *args = gateway_command("--stdio", "--headless")
    params = StdioServerParameters(command=command, args=args, env=lab_stack.env, cwd=str(ROOT))
    async with Client(params) as client:
        names, result = await list_and_call(client)
    assert names >= LAB_TOOLS
    assert_docs_for_learner(result)


async def test_sdk_http_client_lists_and_calls_list_docs(http_gateway: RunningGateway) -> None:
    async with Client(streamable_http_client(http_gateway.url)) as client:
        names, result = await list_and_call(client)
    assert names >= LAB_TOOLS
    assert_docs_for_learner(result)


def test_inspector_cli_lists_and_calls_list_docs(http_gateway: RunningGateway) -> None:
    npmtools.require(npmtools.INSPECTOR)  # installs into the cache; with CI=true never skips
    inspector = [str(npmtools.INSPECTOR.bin("mcp-inspector")), "--cli"]
    env = npmtools.node_env()
    base = [*inspector, http_gateway.url, "--transport", "http"]
    listed = _run([*base, "--method", "tools/list"], env)
    assert {tool["name"] for tool in json.loads(listed)["tools"]} >= LAB_TOOLS
    called = json.loads(_run([*base, "--method", "tools/call", "--tool-name", "list_docs"], env))
    assert called.get("isError") is not True, called
    assert [doc["id"] for doc in called["structuredContent"]["docs"]] == [1, 2]


def _run(command: list[str], env: dict[str, str]) -> str:
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{command} exited {result.returncode}: {result.stderr}"
    return result.stdout


async def test_removed_role_reaches_the_client_as_a_tool_error_naming_f2(
    http_gateway: RunningGateway, admin: Admin
) -> None:
    admin.remove_member("api", "docs-getter", LEARNER_PRINCIPAL)
    try:
        async with Client(streamable_http_client(http_gateway.url)) as client:
            refused = await client.call_tool("list_docs", {})
    finally:
        admin.member("api", "docs-getter", LEARNER_PRINCIPAL)
    assert refused.is_error
    text = refused.content[0].text
    assert "F2: role configured, membership missing" in text
    assert MEMBERSHIP_MESSAGE in text
    assert "HTTP 403 invalid_scope" in text
    # Restored: the same gateway, the same session state, documents again.
    async with Client(streamable_http_client(http_gateway.url)) as client:
        assert_docs_for_learner(await client.call_tool("list_docs", {}))


async def test_gateway_calls_are_marked_in_the_pdp_audit(
    http_gateway: RunningGateway, lab_stack: Stack
) -> None:
    async with Client(streamable_http_client(http_gateway.url)) as client:
        await client.call_tool("list_docs", {})
    audit = lab_stack.lab("audit", "--json", "--correlation", "gw-")
    assert audit.returncode == 0, audit.stderr
    marked = json.loads(audit.stdout)["records"]
    assert marked and all(r["correlation_id"].startswith("gw-") for r in marked)
    by_action = {(r["action"], r["client"]) for r in marked}
    assert ("id-jag", AGENT_PRINCIPAL) in by_action, by_action
    assert ("token:jwt-bearer", AGENT_PRINCIPAL) in by_action, by_action
    # The MCP server passes the gateway's id on with its own exchange: the last hop is marked too.
    assert ("token:token-exchange", MCP_PRINCIPAL) in by_action, by_action
    none = lab_stack.lab("audit", "--json", "--correlation", "no-such-client-")
    assert json.loads(none.stdout)["count"] == 0
    table = lab_stack.lab("audit", "--correlation", "gw-", "--last", "3")
    # The latest gateway records may all be the MCP server's exchanges (the gateway reuses its
    # token): each acts for the learner either way.
    assert table.returncode == 0 and LEARNER_PRINCIPAL in table.stdout, table.stdout
    assert AGENT_PRINCIPAL in table.stdout or MCP_PRINCIPAL in table.stdout, table.stdout


def test_hops_are_logged_with_fingerprints_never_whole_tokens(
    http_gateway: RunningGateway, lab_stack: Stack
) -> None:
    log = (lab_stack.home / "logs" / "gateway.log").read_text()
    assert "got ID-JAG jti=" in log and "got access token jti=" in log
    assert "sha256=" in log
    assert JWT.search(log) is None, "a whole JWT reached the gateway log"
    assert JWT.search(http_gateway.log.read_text()) is None


@pytest.mark.parametrize(
    ("headers", "status", "error"),
    [
        ({"Host": "evil.example:80"}, 421, "misdirected_request"),
        ({"Origin": "http://evil.example"}, 403, "forbidden_origin"),
        ({"Origin": "http://localhost:6274"}, 403, "forbidden_origin"),
    ],
)
def test_foreign_host_or_origin_is_refused(
    http_gateway: RunningGateway, headers: dict[str, str], status: int, error: str
) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    answer = httpx.post(
        http_gateway.url,
        json=body,
        headers={"Accept": "application/json, text/event-stream", **headers},
        timeout=10,
    )
    assert answer.status_code == status
    assert answer.json()["error"] == error


def test_the_mcp_endpoint_is_only_under_the_secret_path(http_gateway: RunningGateway) -> None:
    origin = http_gateway.url.rsplit("/", 2)[0]
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    for path in ("/mcp", "/", "/healthz"):
        answer = httpx.post(f"{origin}{path}", json=body, timeout=10)
        assert answer.status_code == 404, path


def test_non_loopback_bind_is_refused_without_allow_remote(lab_stack: Stack) -> None:
    result = subprocess.run(
        gateway_command("--headless", "--host", "0.0.0.0", "--port", "0"),
        env=lab_stack.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "refusing to bind the gateway to 0.0.0.0" in result.stderr
    assert "--allow-remote" in result.stderr


MALFORMED_IDS = [
    b'{"a":1}',
    b"[1]",
    b"1.5",
    b"true",
    b"null",
    b"9007199254740993",
    b'"' + b"x" * 300 + b'"',
]


def open_session(client: httpx.Client, url: str) -> dict[str, str]:
    """Initialize an MCP session over plain HTTP; the headers its later messages carry."""
    headers = dict(MCP_HEADERS)
    opened = client.post(url, json=INITIALIZE, headers=headers)
    assert opened.status_code == 200, opened.text[:200]
    headers["Mcp-Session-Id"] = opened.headers["mcp-session-id"]
    headers["Mcp-Protocol-Version"] = INITIALIZE["params"]["protocolVersion"]
    return headers


@pytest.mark.parametrize("id_", MALFORMED_IDS)
def test_a_malformed_id_at_the_gateway_is_an_invalid_request(
    http_gateway: RunningGateway, id_: bytes
) -> None:
    """The gateway is an MCP server on the same SDK transport: inside a session, a message with
    a malformed id is owed -32600 with id null (JSON-RPC 2.0 §5.1), not the empty 202 of a
    notification; a real notification still gets 202."""
    with httpx.Client(timeout=10) as client:
        headers = open_session(client, http_gateway.url)
        body = b'{"jsonrpc":"2.0","id":' + id_ + b',"method":"tools/list"}'
        answer = client.post(http_gateway.url, content=body, headers=headers)
        note = b'{"jsonrpc":"2.0","method":"notifications/initialized"}'
        acknowledged = client.post(http_gateway.url, content=note, headers=headers)
    assert answer.status_code == 400, (answer.status_code, answer.text[:200])
    error = answer.json()
    assert error["id"] is None and error["error"]["code"] == -32600, answer.text
    assert "'id' must be" in error["error"]["message"], answer.text
    assert acknowledged.status_code == 202, acknowledged.text[:200]


def test_the_gateway_does_not_echo_an_over_long_method_name(http_gateway: RunningGateway) -> None:
    """As at the MCP server: the SDK's -32601 echoed a method name of any length (100 KB in, 100
    KB out); an unknown short name is still echoed (the guard)."""
    with httpx.Client(timeout=10) as client:
        headers = open_session(client, http_gateway.url)
        answers = [
            client.post(
                http_gateway.url, json={"jsonrpc": "2.0", "id": 2, "method": m}, headers=headers
            )
            for m in ("nope/nothing", "x" * 100_000)
        ]
    short, long = (_rpc_answer(a) for a in answers)
    assert short["error"]["code"] == -32601 and short["error"]["data"] == "nope/nothing", short
    assert long["id"] == 2 and long["error"]["code"] == -32601, answers[1].text[:200]
    assert len(answers[1].content) < 1000 and "xxxxxxxxxx" not in answers[1].text


def test_the_gateway_does_not_echo_or_log_an_over_long_tool_name(
    http_gateway: RunningGateway,
) -> None:
    """``tools/call`` with a 100 KB ``name`` was forwarded to the MCP server, whose "Unknown
    tool: <name>" came back whole, and the gateway logged the name in two 100 KB lines. Now the
    shared envelope check answers -32602 naming the length (MCP: at most 128 characters)."""
    with httpx.Client(timeout=30) as client:
        headers = open_session(client, http_gateway.url)
        call = {"jsonrpc": "2.0", "id": 3, "method": "tools/call"}
        long = client.post(
            http_gateway.url,
            json={**call, "params": {"name": "y" * 100_000, "arguments": {}}},
            headers=headers,
        )
    answer = _rpc_answer(long)
    assert answer["id"] == 3 and answer["error"]["code"] == -32602, long.text[:200]
    assert len(long.content) < 1000 and "yyyyyyyyyy" not in long.text
    assert "yyyyyyyyyy" not in http_gateway.log.read_text()


GATEWAY_PARAMS_REFUSALS = [
    (
        "tools/call",
        {"name": "get_doc", "arguments": [1]},
        "Invalid params for tools/call: 'arguments' must be a JSON object, not an array",
    ),
    (
        "tools/call",
        {"name": 1},
        "Invalid params for tools/call: 'name' must be a string, not an integer",
    ),
    (
        "tools/list",
        {"cursor": {}},
        "Invalid params for tools/list: 'cursor' must be a string, not an object",
    ),
]


def test_bad_params_at_the_gateway_are_refused_in_words(http_gateway: RunningGateway) -> None:
    """As at the MCP server: the SDK's -32602 says only "Invalid request parameters". The
    gateway shares the rewording (``envelope.precise_params_errors``), but its stateful
    transport answers as a Server-Sent Events stream, which the rewording passed unchanged
    (sixth session's outsider battery). Shown failing with the event-stream branch removed."""
    with httpx.Client(timeout=30) as client:
        headers = open_session(client, http_gateway.url)
        for n, (method, params, words) in enumerate(GATEWAY_PARAMS_REFUSALS):
            message = {"jsonrpc": "2.0", "id": 10 + n, "method": method, "params": params}
            answer = client.post(http_gateway.url, json=message, headers=headers)
            error = _rpc_answer(answer)["error"]
            assert error == {"code": -32602, "message": words}, (answer.headers, error)


def _rpc_answer(response: httpx.Response) -> dict:
    """The JSON-RPC answer, sent as JSON or as the one event of an SSE stream."""
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        data = [line[5:] for line in response.text.splitlines() if line.startswith("data:")]
        return json.loads(data[-1])
    return response.json()


def test_typescript_sdk_client_over_stdio_lists_and_calls_list_docs(lab_stack: Stack) -> None:
    summary = run_ts_client("stdio", env=lab_stack.env)
    assert summary["errors"] == [], summary
    assert set(summary["tools"]) >= LAB_TOOLS
    result = summary["result"]
    assert result.get("isError") is not True, result
    assert [doc["id"] for doc in result["structuredContent"]["docs"]] == [1, 2]


def test_typescript_sdk_client_over_http_lists_and_calls_list_docs(
    http_gateway: RunningGateway,
) -> None:
    summary = run_ts_client("http", env={}, url=http_gateway.url)
    assert summary["errors"] == [], summary
    assert set(summary["tools"]) >= LAB_TOOLS
    assert [doc["id"] for doc in summary["result"]["structuredContent"]["docs"]] == [1, 2]


def test_concurrent_stdio_calls_are_all_answered_and_no_token_is_logged(lab_stack: Stack) -> None:
    with StdioGateway(lab_stack.env) as gateway:
        gateway.initialize()
        ids = [
            gateway.request("tools/call", {"name": "list_docs", "arguments": {}}) for _ in range(8)
        ]
        answers = [gateway.answer(id_) for id_ in ids]
        gateway.close_stdin()
        assert gateway.wait() == 0, gateway.describe()
        gateway.assert_stdout_is_only_json_rpc()
        stderr = gateway.stderr.decode(errors="replace")
    for answer in answers:
        assert answer["result"].get("isError") is not True, answer
        assert [doc["id"] for doc in answer["result"]["structuredContent"]["docs"]] == [1, 2]
    assert "got access token jti=" in stderr  # the hops are logged, by fingerprint only
    assert JWT.search(stderr) is None, "a whole JWT reached the gateway's stderr"


def test_a_call_cancelled_mid_way_leaves_the_session_working(lab_stack: Stack) -> None:
    """notifications/cancelled (MCP "Cancellation") while the chain runs: no answer is owed for
    it, and the next call in the same session gets the documents."""
    with StdioGateway(lab_stack.env, "--chain-every-call") as gateway:
        gateway.initialize()
        for _ in range(3):
            cancelled = gateway.request("tools/call", {"name": "list_docs", "arguments": {}})
            gateway.send(
                {
                    "jsonrpc": "2.0",
                    "method": "notifications/cancelled",
                    "params": {"requestId": cancelled, "reason": "user pressed stop"},
                }
            )
        after = gateway.call("tools/call", {"name": "list_docs", "arguments": {}})
        assert after["result"].get("isError") is not True, after
        assert [doc["id"] for doc in after["result"]["structuredContent"]["docs"]] == [1, 2]
        gateway.close_stdin()
        assert gateway.wait() == 0, gateway.describe()
        gateway.assert_stdout_is_only_json_rpc()
        assert b"Traceback" not in gateway.stderr, gateway.describe()


@pytest.mark.parametrize("stop", ["SIGTERM", "cancel then EOF"])
def test_a_browser_sign_in_still_waiting_does_not_hold_the_gateway_open(
    lab_stack: Stack, stop: str
) -> None:
    """The first call waits (up to 5 minutes) for the user to sign in in the browser; it ran in
    a worker thread the interpreter joins at exit, so SIGTERM or the client leaving waited for
    it. Now the gateway exits at once, 0."""
    env = {**lab_stack.env, "BROWSER": "true"}  # webbrowser "opens" the page with true(1)
    with StdioGateway(env, headless=False) as gateway:
        gateway.initialize()
        waiting = gateway.request("tools/call", {"name": "list_docs", "arguments": {}})
        gateway.wait_for_stderr(b"sign in at http")
        if stop == "SIGTERM":
            gateway.signal(signal.SIGTERM)
        else:
            gateway.send(
                {
                    "jsonrpc": "2.0",
                    "method": "notifications/cancelled",
                    "params": {"requestId": waiting},
                }
            )
            gateway.close_stdin()
        # The bound only tells "exits" from "waits for the sign-in" (5 minutes), however loaded.
        assert gateway.wait(timeout=60) == 0, gateway.describe()
        gateway.assert_stdout_is_only_json_rpc()


async def test_the_shipped_tool_listing_is_the_labs(http_gateway: RunningGateway) -> None:
    """lab/gateway/lab_tools.json (listed by a gateway started before the first `lab up`) is
    what the lab's MCP server lists now: regenerate it when a tool changes."""
    from lab.gateway.listing import SHIPPED, read_listing

    async with Client(streamable_http_client(http_gateway.url)) as client:
        live = (await client.list_tools()).tools
    shipped = read_listing(SHIPPED)
    assert shipped is not None
    dump = [t.model_dump(mode="json", exclude_none=True) for t in live]
    assert [t.model_dump(mode="json", exclude_none=True) for t in shipped] == dump
