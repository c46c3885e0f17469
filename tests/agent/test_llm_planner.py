"""The optional LLM planner: prompt + the MCP server's tools in, tool calls out, same path as rules.

A scripted chat-completions server on loopback stands in for the model.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from lab.agent import Agent, Recorder
from lab.agent.planner import chat_completions_url
from lab.config import Settings
from tests.agent.fake_mcp import GOOD_TOKEN


def _scripted_model(seen: list[dict[str, Any]], tool_calls: list[dict[str, Any]]) -> Starlette:
    async def completions(request: Request) -> JSONResponse:
        seen.append(await request.json())
        message = {"role": "assistant", "content": None, "tool_calls": tool_calls}
        return JSONResponse(
            {
                "id": "x",
                "object": "chat.completion",
                "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}],
            }
        )

    return Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"])])


def _call(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "call_1",
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(arguments)},
    }


def test_llm_tool_call_runs_through_the_authorized_mcp_path(
    lab_settings: Settings,
    fake_mcp_url: str,
    reserved_sockets: dict[str, socket.socket],
    serve: Callable[..., str],
) -> None:
    seen: list[dict[str, Any]] = []
    model_url = serve(_scripted_model(seen, [_call("get_doc", {"id": 1})]), reserved_sockets["zts"])
    settings = replace(lab_settings, llm_url=f"{model_url}/v1")
    with Agent(replace(settings.endpoints, mcp=fake_mcp_url), settings, Recorder()) as agent:
        result = agent.prompt("what does my first document say?", GOOD_TOKEN)
    assert result.plan.planner == "llm"
    assert result.ok
    assert result.tool_results[0].data["doc"]["content"] == "hello world"
    assert result.tool_results[0].data["caller"] == "human.idjag-learner"
    (request,) = seen
    assert request["messages"][-1] == {
        "role": "user",
        "content": "what does my first document say?",
    }
    offered = {tool["function"]["name"]: tool["function"] for tool in request["tools"]}
    assert set(offered) == {"list_docs", "get_doc", "create_doc", "delete_doc"}
    assert offered["get_doc"]["parameters"]["properties"]["id"]["type"] == "integer"


def test_llm_calls_to_unlisted_tools_are_not_executed(
    lab_settings: Settings,
    fake_mcp_url: str,
    reserved_sockets: dict[str, socket.socket],
    serve: Callable[..., str],
) -> None:
    model_url = serve(_scripted_model([], [_call("drop_database", {})]), reserved_sockets["zts"])
    settings = replace(lab_settings, llm_url=f"{model_url}/v1/chat/completions")
    with Agent(replace(settings.endpoints, mcp=fake_mcp_url), settings, Recorder()) as agent:
        result = agent.prompt("wipe it all", GOOD_TOKEN)
    assert result.tool_results == []
    assert "drop_database" in (result.plan.message or "")


def test_llm_planner_is_off_without_llm_url(lab_settings: Settings) -> None:
    assert lab_settings.llm_url is None
    with Agent(lab_settings.endpoints, lab_settings, Recorder()) as agent:
        plan = agent.plan("get docs", None)
    assert plan.planner == "rules" and plan.calls[0].name == "list_docs"


def test_chat_completions_url_accepts_base_or_full_endpoint() -> None:
    assert chat_completions_url("http://h:11434/v1/") == "http://h:11434/v1/chat/completions"
    assert chat_completions_url("http://h/v1/chat/completions") == "http://h/v1/chat/completions"
