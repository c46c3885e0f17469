"""--manual: curl derived from the request, assertions via `lab sign-assertion`, captures as
shell variables, and every snippet valid shell."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from lab.config import Settings
from lab.steps import load_step, load_steps
from lab.steps.engine import RunContext
from lab.steps.manual import jq_filter, manual_commands
from tests.steps.conftest import SAMPLES


@pytest.fixture
def manual_ctx(lab_settings: Settings) -> RunContext:
    return RunContext(lab_settings, persist=False)


def test_sample_manual_commands(manual_ctx: RunContext, lab_settings: Settings) -> None:
    preamble, *snippets = manual_commands(load_step(SAMPLES / "01-sample.md"), manual_ctx)
    assert preamble.startswith("# values") and "access_token" in preamble.splitlines()[1]
    ep = lab_settings.endpoints
    assert (
        snippets[0].splitlines()[0]
        == "# without_token: Ask the protected port for the documents, carrying no token at all."
    )
    assert f"curl -sS -i {ep.docapi_protected}/api/docs" in snippets[0]
    assert snippets[1].splitlines()[1] == "OUT=$(lab keygen human.idjag-learner)"
    assert "learner_kid=$(printf" in snippets[1]  # the capture becomes a shell variable
    token = snippets[2]
    assert token.startswith("# get_token") and "RESPONSE=$(curl -sS " in token
    assert f'"client_assertion=$(lab sign-assertion human.idjag-learner --aud {ep.zts})"' in token
    assert "access_token=$(printf '%s' \"$RESPONSE\" | jq -r .access_token)" in token
    assert '-H "Authorization: Bearer ${access_token}"' in snippets[3]


def test_admin_json_body_and_realm_secret(
    tmp_path: Path, manual_ctx: RunContext, lab_settings: Settings
) -> None:
    path = tmp_path / "01-x.md"
    path.write_text(
        "---\nstep: 1\nslug: x\ntitle: X\nactions:\n"
        "  - id: role\n    request:\n      method: PUT\n"
        "      url: ${endpoints.zms}/domain/api/role/r\n"
        '      json: {name: "it\'s ${role_name}", members: [a]}\n      auth: admin\n'
        "  - id: pw\n    request:\n      method: POST\n      url: ${endpoints.idp_token}\n"
        "      form: {grant_type: password, username: idjag-learner, password: wrong}\n"
        "      auth: {basic: [ai.agent, '${realm.client_secret}']}\n"
        "  - id: switch\n    setting: {part: mcpserver, name: require_access, value: true}\n"
        "  - {id: trust, providers: {set: []}}\n"
        "  - {id: prompt, agent: {op: prompt, text: get docs, access_token: '${agent_token}'}}\n"
        "  - {id: tool, mcp: {tool: get_doc, arguments: {id: 1}, token: '${agent_token}'}}\n"
        "  - {id: pause, wait: {seconds: 1}}\n"
        "  - id: tamper\n"
        "    audit: {op: tamper, path: audit.json, record: -1, field: decision, value: allow}\n"
        "---\n",
        encoding="utf-8",
    )
    preamble, *snippets = manual_commands(load_step(path), manual_ctx)
    # Values from earlier steps come from `lab captured`, so the pasted script needs no copying.
    assert "agent_token=$(lab captured agent_token)" in preamble
    assert "role_name=$(lab captured role_name)" in preamble
    ep = lab_settings.endpoints
    assert (
        f'-H "Authorization: Bearer $(lab sign-assertion user.athenz_admin --aud {ep.zms})"'
        in snippets[0]
    )
    assert '--data "{\\"name\\":\\"it\'s ${role_name}\\",\\"members\\":[\\"a\\"]}"' in snippets[0]
    assert "-u \"ai.agent:$(jq -r '.clients[]" in snippets[1]
    mcp_origin = ep.mcp.rsplit("/mcp", 1)[0]
    assert (
        f"-X PUT {mcp_origin}/lab/settings" in snippets[2] and f"--aud {mcp_origin})" in snippets[2]
    )
    assert snippets[3].endswith("lab providers set '[]'")
    assert snippets[4].endswith("lab agent prompt 'get docs' --token \"${agent_token}\"")
    assert snippets[5].endswith('lab mcp call get_doc --arg id=1 --token "${agent_token}"')
    assert snippets[6].endswith("sleep 1")
    assert "jq '.records[-1].decision = \"allow\"'" in snippets[7]


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash to check the syntax")
def test_every_repository_step_prints_valid_shell(manual_ctx: RunContext) -> None:
    for step in load_steps():
        for snippet in manual_commands(step, manual_ctx):
            checked = subprocess.run(
                ["bash", "-n"], input=snippet, text=True, capture_output=True, check=False
            )
            assert checked.returncode == 0, f"step {step.number}:\n{snippet}\n{checked.stderr}"


@pytest.mark.parametrize(
    ("path", "jq"),
    [
        ("$.access_token", ".access_token"),
        ("$.docs[0].name", ".docs[0].name"),
        ("$.docs[*].id", ".docs[].id"),
        ("$.docs.length()", ".docs | length"),
        ("$.my-field", '."my-field"'),
        ("$", "."),
        ("not a path", None),
    ],
)
def test_jsonpath_to_jq(path: str, jq: str | None) -> None:
    assert jq_filter(path) == jq
