"""Both sides declare SEP-990's extension (``capabilities.extensions``): the agent in every
request's ``_meta`` client capabilities (2026-07-28; in ``initialize`` on a handshake-era
server), the lab's MCP server in its ``server/discover`` result; it is active only when both do."""

from __future__ import annotations

import json

from lab.agent import Agent, Recorder
from lab.agent.mcp_client import ERAS
from lab.oauth.tokens import MCP_EXTENSION_ENTERPRISE_MANAGED_AUTHORIZATION as EMA
from tests.agent.labsetup import RunningLab

CLIENT_CAPABILITIES = "io.modelcontextprotocol/clientCapabilities"


def mcp_exchanges(recorder: Recorder) -> list[tuple[dict, dict]]:
    found = []
    for exchange in recorder.exchanges:
        try:
            request = json.loads(exchange.request_body or "null")
        except ValueError:
            continue
        if isinstance(request, dict) and "method" in request and "id" in request:
            body = exchange.response_body or ""
            # Streamable HTTP may answer as an SSE stream: the JSON-RPC result is a data line.
            data = next((line[5:] for line in body.splitlines() if line.startswith("data:")), body)
            found.append((request, json.loads(data)))
    return found


def test_agent_and_mcp_server_both_declare_enterprise_managed_authorization(
    running_lab: RunningLab,
) -> None:
    ERAS.forget(running_lab.endpoints.mcp)  # negotiate afresh: the discover exchange is recorded
    recorder = Recorder()
    with Agent(running_lab.endpoints, running_lab.settings, recorder) as agent:
        signed_in = agent.sign_in("idjag-learner", "password")
        access = agent.redeem_id_jag(agent.request_id_jag(signed_in.id_token).token)
        agent.list_tools(access.token)
    exchanges = mcp_exchanges(recorder)
    assert [request["method"] for request, _ in exchanges] == ["server/discover", "tools/list"]
    for request, _ in exchanges:
        assert request["params"]["_meta"][CLIENT_CAPABILITIES]["extensions"] == {EMA: {}}
    _, discovered = exchanges[0]
    assert EMA in discovered["result"]["capabilities"]["extensions"]
