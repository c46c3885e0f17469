"""The agent's MCP client (the official SDK's) against a stand-in MCP server over real HTTP."""

from __future__ import annotations

from dataclasses import replace

from lab.agent import Agent, Recorder
from lab.agent.recorder import REDACTED
from lab.config import Settings
from tests.agent.fake_mcp import GOOD_TOKEN


def _agent(settings: Settings, mcp_url: str) -> Agent:
    endpoints = replace(settings.endpoints, mcp=mcp_url)
    return Agent(endpoints, settings, Recorder())


def test_call_tool_returns_structured_data_and_sends_the_bearer_token(
    lab_settings: Settings, fake_mcp_url: str
) -> None:
    with _agent(lab_settings, fake_mcp_url) as agent:
        result = agent.call_tool(GOOD_TOKEN, "get_doc", {"id": 2})
    assert not result.is_error
    assert result.data["doc"]["content"] == "how are you?"
    assert result.data["caller"] == "human.idjag-learner"


def test_mcp_traffic_is_recorded_with_the_token_redacted_and_kept(
    lab_settings: Settings, fake_mcp_url: str
) -> None:
    with _agent(lab_settings, fake_mcp_url) as agent:
        agent.call_tool(GOOD_TOKEN, "list_docs", {})
        posts = [
            e for e in agent.recorder.exchanges if e.method == "POST" and e.url == fake_mcp_url
        ]
    assert posts, "the MCP POSTs were recorded"
    assert all(e.request_headers["authorization"] == f"Bearer {REDACTED}" for e in posts)
    assert all(GOOD_TOKEN not in e.request_body + str(e.request_headers) for e in posts)
    assert {t.value for e in posts for t in e.tokens} == {GOOD_TOKEN}
    assert any('"tools/call"' in e.request_body and e.status == 200 for e in posts)


def test_missing_token_is_a_tool_error_naming_the_401_challenge(
    lab_settings: Settings, fake_mcp_url: str
) -> None:
    with _agent(lab_settings, fake_mcp_url) as agent:
        result = agent.call_tool(None, "list_docs", {})
    assert result.is_error
    assert result.http_status == 401
    assert "invalid_token" in result.text
    assert "resource_metadata=" in result.text


def test_tool_error_is_returned_as_data(lab_settings: Settings, fake_mcp_url: str) -> None:
    with _agent(lab_settings, fake_mcp_url) as agent:
        result = agent.call_tool(GOOD_TOKEN, "get_doc", {"id": 99})
    assert result.is_error
    assert result.http_status is None
    assert "no document 99" in result.text


def test_prompt_runs_the_planned_calls_in_one_session(
    lab_settings: Settings, fake_mcp_url: str
) -> None:
    with _agent(lab_settings, fake_mcp_url) as agent:
        created = agent.prompt("create a doc titled Plan with content ship it", GOOD_TOKEN)
        deleted = agent.prompt("delete doc 3", GOOD_TOKEN)
    assert created.ok and created.tool_results[0].data["doc"] == {
        "id": 3,
        "name": "Plan",
        "content": "ship it",
    }
    assert deleted.ok and deleted.tool_results[0].data["deleted"]["id"] == 3


def test_prompt_not_understood_calls_nothing(lab_settings: Settings, fake_mcp_url: str) -> None:
    with _agent(lab_settings, fake_mcp_url) as agent:
        result = agent.prompt("make me a sandwich", GOOD_TOKEN)
        recorded = list(agent.recorder.exchanges)
    assert result.tool_results == [] and not result.ok
    assert "did not understand" in result.message and "list my documents" in result.message
    assert recorded == []


def test_list_tools_reports_the_servers_tools(lab_settings: Settings, fake_mcp_url: str) -> None:
    with _agent(lab_settings, fake_mcp_url) as agent:
        tools = agent.list_tools(GOOD_TOKEN)
    assert sorted(t["name"] for t in tools) == ["create_doc", "delete_doc", "get_doc", "list_docs"]
    assert tools[0]["inputSchema"]["type"] == "object"


async def test_sync_calls_also_work_from_inside_a_running_event_loop(
    lab_settings: Settings, fake_mcp_url: str
) -> None:
    with _agent(lab_settings, fake_mcp_url) as agent:
        result = agent.call_tool(GOOD_TOKEN, "list_docs", {})
    assert not result.is_error
    assert len(result.data["docs"]) == 2
