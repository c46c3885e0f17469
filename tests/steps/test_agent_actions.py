"""agent and mcp actions map lab.agent's results into what queries read.

The real chain (IdP, PDP, MCP server) runs in test_all_steps.py; here a stand-in agent with the
contracts §8 surface records exchanges like the real one, so each op's result shape is pinned.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from lab.agent import Recorder, SignIn, TokenResponse, ToolResult
from lab.agent.chain import PromptResult
from lab.agent.mcp_client import ToolCall
from lab.agent.planner import Plan
from lab.agent.recorder import build_exchange
from lab.config import Settings
from lab.oauth.jose import SigningKey
from lab.render.terminal import step_result_text
from lab.steps import load_step
from lab.steps.actions import agent as agent_action
from lab.steps.engine import RunContext, run_step


@dataclass
class StandInAgent:
    id_token: str
    recorder: Recorder = field(default_factory=Recorder)

    def _exchange(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.recorder.exchanges.append(
            build_exchange(
                method="POST",
                url="http://127.0.0.1:1/x",
                status=status,
                request_headers={},
                request_body="",
                response_headers=headers or {"content-type": "application/json"},
                response_body="{}",
                elapsed_ms=1.0,
            )
        )

    def sign_in(self, username: str, password: str, method: str = "code") -> SignIn:
        self._exchange(200)
        return SignIn(self.id_token, None, None, method, 200)

    def request_id_jag(self, id_token: str, scope: str, resource: Any = None) -> TokenResponse:
        self._exchange(403)
        return TokenResponse(
            403,
            {"error": "unauthorized_client", "message": "Principal not authorized"},
            "unauthorized_client",
        )

    def redeem_id_jag(self, id_jag: str, scope: str | None = None) -> TokenResponse:
        self._exchange(200)
        return TokenResponse(200, {"access_token": self.id_token, "scope": "mcp-accessor"})

    def call_tool(self, token: str | None, name: str, arguments: dict[str, Any]) -> ToolResult:
        if token is None:
            self._exchange(
                401,
                {"www-authenticate": 'Bearer resource_metadata="http://127.0.0.1:1/.well-known/x"'},
            )
            return ToolResult(True, "401 Unauthorized", None, name, arguments, 401)
        self._exchange(200)
        return ToolResult(False, "2 docs", {"docs": [{"id": 1}, {"id": 2}]}, name, arguments)

    def prompt(self, text: str, token: str | None) -> PromptResult:
        result = self.call_tool(token, "list_docs", {})
        return PromptResult(Plan(text, [ToolCall("list_docs", {})]), [result])

    def close(self) -> None:
        return None


@pytest.fixture
def ctx(lab_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> RunContext:
    id_token = SigningKey.load_or_create(lab_settings.home / "idp.pem").sign(
        {
            "iss": "http://127.0.0.1:1/realms/idjag",
            "aud": "ai.agent",
            "preferred_username": "idjag-learner",
        },
        typ="JWT",
    )
    monkeypatch.setattr(agent_action, "make_agent", lambda ctx: StandInAgent(id_token))
    return RunContext(lab_settings, persist=False)


STEP = """---
step: 9
slug: agent
title: Agent
actions:
  - id: sign_in
    agent: {op: sign_in, username: idjag-learner, password: not-shown-pw}
    capture:
      id_token: {result: id_token}
    expect:
      - token: ${id_token}
        claim: aud
        equals: ai.agent
  - id: id_jag
    agent: {op: id_jag, id_token: "${id_token}", scope: api:role.docs-getter}
    expect:
      - status: 403
      - json: $.error
        equals: unauthorized_client
  - id: redeem
    agent: {op: redeem, id_jag: "${id_token}"}
    capture:
      access_token: {result: token}
    expect:
      - result: body.scope
        equals: mcp-accessor
  - id: no_token
    mcp: {tool: list_docs}
    expect:
      - status: 401
      - result: www_authenticate
        contains: resource_metadata=
      - header: WWW-Authenticate
        startswith: Bearer
  - id: with_token
    mcp: {tool: list_docs, token: "${access_token}"}
    expect:
      - result: data.docs.length()
        equals: 2
      - result: is_error
        equals: false
  - id: prompt
    agent: {op: prompt, text: get docs, access_token: "${access_token}"}
    expect:
      - result: plan[0].name
        equals: list_docs
      - result: is_error
        equals: false
---
"""


def test_agent_and_mcp_results_are_queryable(tmp_path: Path, ctx: RunContext) -> None:
    path = tmp_path / "09-agent.md"
    path.write_text(STEP, encoding="utf-8")
    result = run_step(load_step(path), ctx)
    assert result.status == "passed", result.message
    assert [t.label for t in result.tokens] == ["id_token", "access_token"]
    text = step_result_text(result, verbose=True)
    assert "not-shown-pw" not in text
    assert "lab agent sign-in --username idjag-learner --password *** --method code" in text


def test_the_published_lab_password_does_not_garble_the_text(
    tmp_path: Path, ctx: RunContext
) -> None:
    path = tmp_path / "09-agent.md"
    path.write_text(
        "---\nstep: 9\nslug: agent\ntitle: Agent\nactions:\n"
        "  - {id: sign_in, agent: {op: sign_in, username: idjag-learner, password: password}}\n"
        "---\nNever type a password into the agent.\n",
        encoding="utf-8",
    )
    result = run_step(load_step(path), ctx)
    assert "Never type a password into the agent." in result.body
    assert result.actions[0].command is not None and "--password ***" in result.actions[0].command
