"""Both sides of ``initialize`` declare SEP-990's extension (``capabilities.extensions``): the
agent in its request, the lab's MCP server in its result; it is active only when both do."""

from __future__ import annotations

import json

from lab.agent import Agent, Recorder
from lab.oauth.tokens import MCP_EXTENSION_ENTERPRISE_MANAGED_AUTHORIZATION as EMA
from tests.agent.labsetup import RunningLab


def initialize_exchange(recorder: Recorder) -> tuple[dict, dict]:
    for exchange in recorder.exchanges:
        try:
            request = json.loads(exchange.request_body or "null")
        except ValueError:
            continue
        if isinstance(request, dict) and request.get("method") == "initialize":
            body = exchange.response_body or ""
            # Streamable HTTP may answer as an SSE stream: the JSON-RPC result is a data line.
            data = next((line[5:] for line in body.splitlines() if line.startswith("data:")), body)
            return request, json.loads(data)
    raise AssertionError("no initialize exchange was recorded")


def test_agent_and_mcp_server_both_declare_enterprise_managed_authorization(
    running_lab: RunningLab,
) -> None:
    recorder = Recorder()
    with Agent(running_lab.endpoints, running_lab.settings, recorder) as agent:
        signed_in = agent.sign_in("idjag-learner", "password")
        access = agent.redeem_id_jag(agent.request_id_jag(signed_in.id_token).token)
        agent.list_tools(access.token)
    request, response = initialize_exchange(recorder)
    assert request["params"]["capabilities"]["extensions"] == {EMA: {}}
    assert EMA in response["result"]["capabilities"]["extensions"]
