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


@pytest.mark.parametrize(
    "prompt",
    [
        "please list my documents",
        "show me all documents",
        "What documents do I have?",
        "Please get docs.",
        "can you list the docs",
    ],
)
def test_ordinary_phrasings_of_list(prompt: str) -> None:
    assert plan_rules(prompt).calls == [ToolCall("list_docs", {})]


@pytest.mark.parametrize(
    ("prompt", "call"),
    [
        ("read doc 2", ToolCall("get_doc", {"id": 2})),
        ("Could you show document #1?", ToolCall("get_doc", {"id": 1})),
        ("get document number 2", ToolCall("get_doc", {"id": 2})),
        ("please delete doc 2", ToolCall("delete_doc", {"id": 2})),
        ("remove document 1", ToolCall("delete_doc", {"id": 1})),
        ("create a doc titled x", ToolCall("create_doc", {"name": "x", "content": ""})),
        (
            'Add a new document called "Notes" with content "hi there"',
            ToolCall("create_doc", {"name": "Notes", "content": "hi there"}),
        ),
        (
            "write a doc named plan saying buy milk",
            ToolCall("create_doc", {"name": "plan", "content": "buy milk"}),
        ),
    ],
)
def test_ordinary_phrasings_of_show_get_read_create_add_delete(prompt: str, call: ToolCall) -> None:
    assert plan_rules(prompt).calls == [call]


def test_help_says_what_the_agent_can_do() -> None:
    message = plan_rules("summarise my week").message or ""
    for example in ("list my documents", "show doc 2", "create a doc titled", "delete doc 2"):
        assert example in message


def test_the_plan_asks_only_for_the_roles_its_tools_need() -> None:
    from lab.agent.planner import scope_for

    access = "mcp:role.mcp-accessor"
    assert scope_for(plan_rules("get docs"), access) == f"api:role.docs-getter {access}"
    create = plan_rules("create a doc titled x")
    assert scope_for(create, access) == f"api:role.docs-poster {access}"
    assert scope_for(plan_rules("delete doc 1"), access) == f"api:role.docs-deleter {access}"
