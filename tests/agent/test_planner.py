"""The deterministic planner: the four prompts it understands, and help for anything else."""

from __future__ import annotations

import pytest

from lab.agent.mcp_client import ToolCall
from lab.agent.planner import HELP, plan_rules


@pytest.mark.parametrize("prompt", ["get docs", "Get Docs", "  list documents. ", "show all docs"])
def test_listing_prompts_map_to_list_docs(prompt: str) -> None:
    assert plan_rules(prompt).calls == [ToolCall("list_docs", {})]


def test_get_doc_takes_the_numeric_id() -> None:
    assert plan_rules("get doc 2").calls == [ToolCall("get_doc", {"id": 2})]


def test_delete_doc_takes_the_numeric_id() -> None:
    assert plan_rules("delete doc 2").calls == [ToolCall("delete_doc", {"id": 2})]


def test_create_doc_keeps_title_and_content_case() -> None:
    plan = plan_rules("create a doc titled Meeting Notes with content Bring the Slides")
    assert plan.calls == [
        ToolCall("create_doc", {"name": "Meeting Notes", "content": "Bring the Slides"})
    ]


def test_create_doc_accepts_quoted_values_containing_keywords() -> None:
    plan = plan_rules('create a doc titled "with content" with content "a, b and c"')
    assert plan.calls == [ToolCall("create_doc", {"name": "with content", "content": "a, b and c"})]


@pytest.mark.parametrize("prompt", ["summarise my week", "get doc two", "delete everything", ""])
def test_unknown_prompts_get_a_help_message_and_no_calls(prompt: str) -> None:
    plan = plan_rules(prompt)
    assert plan.calls == []
    assert not plan.understood
    assert plan.message is not None and HELP in plan.message
