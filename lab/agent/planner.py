"""Turn a prompt into MCP tool calls.

The default planner is a few deterministic rules, so steps and tests never depend on a model.
An optional LLM planner (``LAB_LLM_URL``, any OpenAI-compatible chat-completions endpoint such
as Ollama's) gets the prompt and the MCP server's own tool list as function definitions, and
its tool calls run through the same authorized path as the rules' calls.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from lab.agent.mcp_client import ToolCall

HELP = (
    "I can list your documents ('list my documents'), show one ('show doc 2'), "
    "create one ('create a doc titled Notes with content hello') "
    "or delete one ('delete doc 2')."
)

#: The role each tool needs at the document API (the MCP server's tool descriptions say the
#: same); the agent asks its ID-JAG for these plus the MCP server's access role, nothing more.
TOOL_ROLES = {
    "list_docs": "api:role.docs-getter",
    "get_doc": "api:role.docs-getter",
    "create_doc": "api:role.docs-poster",
    "delete_doc": "api:role.docs-deleter",
}


@dataclass
class Plan:
    """The tool calls a prompt maps to; ``message`` explains an empty plan."""

    prompt: str
    calls: list[ToolCall] = field(default_factory=list)
    message: str | None = None
    planner: str = "rules"

    @property
    def understood(self) -> bool:
        return bool(self.calls)

    def roles(self) -> list[str]:
        """The document-API roles the plan's tool calls need, in order, each once."""
        return list(dict.fromkeys(TOOL_ROLES[c.name] for c in self.calls if c.name in TOOL_ROLES))


def scope_for(plan: Plan, access_role: str) -> str:
    """The ID-JAG scope a plan needs: each tool's role, and ``access_role`` for the MCP server."""
    return " ".join([*plan.roles(), access_role])


# -- deterministic rules ---------------------------------------------------------------------------
#
# Ordinary phrasings, not fixed phrases: politeness and filler words are dropped, then a verb
# class (list/show/get/read, create/add/write, delete/remove) and the object (documents, a
# numbered document, a title and content) are picked out.

_FILLER = re.compile(
    r"\b(?:please|pls|kindly|can you|could you|would you|will you|i want to|i'd like to|"
    r"i would like to|i need to|let me|for me|me|my|our|all|of|the|a|an|some|every|just|now|"
    r"quickly|go ahead and|thanks|thank you)\b",
    re.IGNORECASE,
)
_DOC = r"(?:docs?|documents?|files?|notes?)"
_NUMBER = r"(?:number\s+|no\.?\s*|id\s+|#)?(?P<id>\d+)"
_LIST_VERB = r"(?:get|list|show|fetch|read|see|view|display|give|what|which|find)"
_ONE_VERB = r"(?:get|show|fetch|read|open|view|display|give|see|find)"
_DELETE_VERB = r"(?:delete|remove|erase|drop|destroy|trash|get rid of)"
_CREATE_VERB = r"(?:create|add|post|write|make|new|save|store|put)"
_LIST = re.compile(rf"^{_LIST_VERB}?\s*{_DOC}(?:\s+(?:do i have|are there|i have))?$")
_GET = re.compile(rf"^{_ONE_VERB}\s+{_DOC}\s+{_NUMBER}$")
_DELETE = re.compile(rf"^{_DELETE_VERB}\s+{_DOC}\s+{_NUMBER}$")
_QUOTED = r"(?:\"(?P<{0}q>[^\"]*)\"|'(?P<{0}s>[^']*)'|(?P<{0}>.+?))"
_CREATE = re.compile(
    rf"^(?:please\s+)?(?:could you\s+|can you\s+)?{_CREATE_VERB}\s+(?:a\s+|an\s+|new\s+)*"
    rf"{_DOC}\s+(?:titled|named|called|with (?:the )?(?:title|name))\s+"
    + _QUOTED.format("name")
    + r"(?:\s+(?:with\s+(?:the\s+)?(?:content|body|text)|saying|containing|that says)\s+"
    + _QUOTED.format("content")
    + r")?$",
    re.IGNORECASE | re.DOTALL,
)


def normalise(prompt: str) -> str:
    text = prompt.strip().lower().rstrip(".!?")
    text = _FILLER.sub(" ", text.replace(",", " "))
    return " ".join(text.split())


def plan_rules(prompt: str) -> Plan:
    text = " ".join(prompt.strip().rstrip(".!?").split())
    if match := _CREATE.match(text):
        name = _pick(match, "name")
        content = _pick(match, "content")
        return Plan(prompt, [ToolCall("create_doc", {"name": name, "content": content})])
    words = normalise(prompt)
    if match := _DELETE.match(words):
        return Plan(prompt, [ToolCall("delete_doc", {"id": int(match["id"])})])
    if match := _GET.match(words):
        return Plan(prompt, [ToolCall("get_doc", {"id": int(match["id"])})])
    if _LIST.match(words):
        return Plan(prompt, [ToolCall("list_docs", {})])
    return Plan(prompt, [], f"Sorry, I did not understand {prompt.strip()!r}. {HELP}")


def _pick(match: re.Match[str], name: str) -> str:
    for key in (f"{name}q", f"{name}s", name):
        if match.group(key) is not None:
            return match.group(key).strip()
    return ""


# -- optional LLM planner ------------------------------------------------------------------

SYSTEM_PROMPT = (
    "You are an agent acting for a signed-in user on a document store. "
    "Answer by calling the tools you are given; call nothing when no tool fits."
)
DEFAULT_MODEL = "llama3.2"


def chat_completions_url(base: str) -> str:
    """Accept the full endpoint or an OpenAI-style base such as http://localhost:11434/v1."""
    base = base.rstrip("/")
    return base if base.endswith("/chat/completions") else f"{base}/chat/completions"


def tool_definitions(tools: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """MCP tools/list entries → OpenAI function definitions."""
    return [
        {
            "type": "function",
            "function": {
                "name": tool["name"],
                "description": tool.get("description", ""),
                "parameters": tool.get("inputSchema") or {"type": "object", "properties": {}},
            },
        }
        for tool in tools
    ]


def plan_with_llm(
    http: httpx.Client,
    llm_url: str,
    prompt: str,
    tools: Sequence[dict[str, Any]],
    model: str | None = None,
) -> Plan:
    """Ask the model which tools to call; only tools the MCP server listed are accepted."""
    request = {
        "model": model or os.environ.get("LAB_LLM_MODEL", DEFAULT_MODEL),
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": prompt},
        ],
        "tools": tool_definitions(tools),
        "tool_choice": "auto",
        "stream": False,
    }
    try:
        response = http.post(chat_completions_url(llm_url), json=request, timeout=120.0)
        body = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        return Plan(prompt, [], f"the LLM planner at {llm_url} failed: {exc}", "llm")
    if response.status_code != 200 or not isinstance(body, dict):
        return Plan(prompt, [], f"the LLM planner answered HTTP {response.status_code}", "llm")
    return _plan_from_completion(prompt, body, {tool["name"] for tool in tools})


def _plan_from_completion(prompt: str, body: dict[str, Any], known: set[str]) -> Plan:
    try:
        message = body["choices"][0]["message"]
    except (KeyError, IndexError, TypeError):
        return Plan(prompt, [], "the LLM planner's answer has no message", "llm")
    calls: list[ToolCall] = []
    ignored: list[str] = []
    for tool_call in message.get("tool_calls") or []:
        function = tool_call.get("function") or {}
        name = str(function.get("name", ""))
        arguments = function.get("arguments") or {}
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments or "{}")
            except ValueError:
                arguments = None
        if name not in known or not isinstance(arguments, dict):
            ignored.append(name or "?")
            continue
        calls.append(ToolCall(name, arguments))
    note = message.get("content") or None
    if ignored:
        note = f"ignored unknown or malformed tool call(s): {', '.join(ignored)}"
    if not calls and not note:
        note = f"the model chose no tool. {HELP}"
    return Plan(prompt, calls, note, "llm")
