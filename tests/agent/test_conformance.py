"""The official MCP conformance suite with the lab's agent as the client under test.

npm ``@modelcontextprotocol/conformance`` starts a mock IdP, authorization server and MCP server
and runs ``python -m lab.agent.conformance <server URL>``. The SEP-990 scenario checks the
agent discovers the authorization server (RFC 9728 → RFC 8414), exchanges the ID token at the
IdP with ``audience`` and ``resource`` (RFC 8693), then redeems the ID-JAG with the client
authentication the server advertises (``client_secret_basic`` there; the lab's default is
``private_key_jwt``), and uses the token at the MCP server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lab.agent import Agent
from lab.agent.sep990 import obtain_client_secret
from lab.config import AGENT_PRINCIPAL
from tests.agent.labsetup import RunningLab
from tests.npmtools import CONFORMANCE_PRERELEASE, CONFORMANCE_RELEASE, NpmTool, node_env, require

AGENT_COMMAND = f"{sys.executable} -m lab.agent.conformance"

#: Every check the scenario must report as SUCCESS (the rest are INFO traffic logs).
REQUIRED_CHECKS = {
    "prm-pathbased-requested",
    "authorization-server-metadata",
    "complete-flow-token-exchange",
    "token-request",
    "complete-flow-jwt-bearer",
    "valid-bearer-token",
}


def run_scenario(
    tool: NpmTool, scenario: str, out: Path
) -> tuple[subprocess.CompletedProcess[str], list[dict[str, str]]]:
    prefix = require(tool)
    done = subprocess.run(
        [
            str(tool.bin("conformance")),
            "client",
            "--command",
            AGENT_COMMAND,
            "--scenario",
            scenario,
            "--timeout",
            "60000",
            "-o",
            str(out),
        ],
        cwd=prefix,
        env=node_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    results = sorted(out.rglob("checks.json"))
    assert results, (
        f"the harness wrote no checks.json:\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}"
    )
    checks = json.loads(results[-1].read_text())
    return done, checks


@pytest.mark.parametrize(
    ("tool", "scenario"),
    [
        (CONFORMANCE_RELEASE, "auth/cross-app-access-complete-flow"),
        (CONFORMANCE_PRERELEASE, "auth/enterprise-managed-authorization"),
    ],
    ids=["release-0.1.16", "prerelease-0.2.0-alpha"],
)
def test_agent_passes_the_official_enterprise_managed_authorization_scenario(
    tool: NpmTool, scenario: str, tmp_path: Path
) -> None:
    done, checks = run_scenario(tool, scenario, tmp_path / "out")

    failed = [c for c in checks if c["status"] in ("FAILURE", "WARNING")]
    assert failed == [], json.dumps(failed, indent=2)
    passed = {c["id"] for c in checks if c["status"] == "SUCCESS"}
    assert passed >= REQUIRED_CHECKS, f"missing: {sorted(REQUIRED_CHECKS - passed)}"
    report = done.stdout + done.stderr  # the harness prints its summary on stderr
    assert done.returncode == 0, report[-3000:]
    assert "OVERALL: PASSED" in report


def test_conformance_client_names_what_is_missing_without_a_context() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "lab.agent.conformance", "http://127.0.0.1:9/mcp"],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "MCP_CONFORMANCE_CONTEXT"},
    )
    assert done.returncode == 2
    assert "missing client configuration: client_id, idp_client_id, idp_id_token" in done.stderr


def test_the_same_conformance_client_runs_the_whole_lab_chain(draft_lab: RunningLab) -> None:
    """No harness: the lab's IdP issues the ID-JAG, the PDP redeems it with the agent's own
    registered secret (client_secret_basic, advertised), the MCP server answers list_docs."""
    settings, endpoints = draft_lab.settings, draft_lab.endpoints
    with Agent(endpoints, settings) as agent:
        id_token = str(agent.sign_in("idjag-learner", "password").id_token)
        secret = obtain_client_secret(settings, endpoints, agent.http)
        idp_secret = agent.idp_client.client_secret
    context = {
        "client_id": AGENT_PRINCIPAL,
        "client_secret": secret,
        "idp_client_id": AGENT_PRINCIPAL,
        "idp_client_secret": idp_secret,
        "idp_issuer": endpoints.idp_issuer,
        "idp_id_token": id_token,
    }
    done = subprocess.run(
        [sys.executable, "-m", "lab.agent.conformance", endpoints.mcp],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "MCP_CONFORMANCE_CONTEXT": json.dumps(context)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"authorization server {endpoints.zts}" in done.stderr
    assert f"client_secret_basic at {endpoints.zts}" in done.stderr
    assert "called list_docs: ok" in done.stderr
    for value in (secret, idp_secret, id_token):
        assert value not in done.stdout + done.stderr
