"""Step 20's ``gateway`` action: what ``--manual`` prints is the Inspector against the gateway."""

from __future__ import annotations

import shlex
from dataclasses import replace
from pathlib import Path

from lab.config import Settings
from lab.steps.actions import gateway as gateway_action
from lab.steps.actions import module_for
from lab.steps.engine import RunContext


def test_gateway_is_a_registered_action_kind() -> None:
    assert module_for("gateway") is gateway_action


def test_manual_command_runs_the_inspector_against_lab_gateway_stdio(tmp_path: Path) -> None:
    ctx = RunContext(replace(Settings(), home=tmp_path), persist=False)
    words = shlex.split(
        " ".join(gateway_action.command({"tool": "get_doc", "arguments": {"id": 2}}, ctx))
    )
    assert words[:3] == ["npx", "@modelcontextprotocol/inspector", "--cli"]
    assert words[3:5] == ["-e", f"LAB_HOME={tmp_path.resolve()}"]
    assert words[words.index("--method") + 1] == "tools/call"
    assert words[words.index("--tool-name") + 1] == "get_doc"
    assert words[words.index("--tool-arg") + 1] == "id=2"
    assert words[words.index("--") + 1 :] == ["lab", "gateway", "--stdio", "--headless"]
