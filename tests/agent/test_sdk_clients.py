"""Off-the-shelf MCP clients, unmodified and with their defaults, through the whole lab chain.

- the official Python SDK's ``IdentityAssertionOAuthProvider`` (leg 2 with
  ``client_secret_post``; leg 1 is the caller's callback), including its step-up on a 403
  ``insufficient_scope`` that names the ``scope``;
- the TypeScript ``@modelcontextprotocol/client`` 2.x ``CrossAppAccessProvider`` (RFC 9728 →
  RFC 8414 discovery, jwt-bearer with ``client_secret_basic``), leg 1 by its own
  ``discoverAndRequestJwtAuthGrant`` at the lab's IdP (draft -04 §9.3 topology);
- the MCP Inspector CLI with a lab token in an ``Authorization`` header.

Each reaches ``list_docs`` and the documents. The agent's client secret is its own, registered
in the PDP (shown once, stored hashed), never a shared key.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import anyio
import httpx2
from mcp.client.auth.extensions.identity_assertion import IdentityAssertionOAuthProvider

from lab.agent import DEFAULT_SCOPE, Agent, Recorder, run_prompt
from lab.agent.config import AgentConfig
from lab.agent.discovery import parse_bearer_challenge
from lab.agent.mcp_client import mcp_session
from lab.agent.sep990 import build_provider, call_tool_with_provider, obtain_client_secret
from lab.config import AGENT_PRINCIPAL, LEARNER_PRINCIPAL
from lab.oauth.jose import unverified_claims
from tests.agent.labsetup import RunningLab
from tests.npmtools import INSPECTOR, TS_CLIENT, node_bin_dir, node_env, require

USER, PASSWORD = "idjag-learner", "password"
TS_SCRIPT = Path(__file__).with_name("ts_cross_app_access.mjs")


def assert_docs(data: dict) -> None:
    assert [doc["id"] for doc in data["docs"]] == [1, 2]
    assert data["received_token"]["client_id"] == AGENT_PRINCIPAL


def test_agent_takes_its_id_jag_from_the_idp_in_the_drafts_topology(draft_lab: RunningLab) -> None:
    recorder = Recorder()
    result = run_prompt(
        draft_lab.settings,
        draft_lab.endpoints,
        "get docs",
        USER,
        PASSWORD,
        recorder=recorder,
        config=AgentConfig(id_jag_from="idp"),
    )
    assert result.ok, result.message
    jag = unverified_claims(result.id_jag.token)
    assert jag["iss"] == draft_lab.endpoints.idp_issuer  # the IdP issued it, the PDP redeemed it
    assert (jag["aud"], jag["resource"]) == (draft_lab.endpoints.zts, draft_lab.endpoints.mcp)
    assert_docs(result.tool_results[0].data)


def test_python_sdk_provider_with_defaults_redeems_an_idp_issued_id_jag(
    draft_lab: RunningLab,
) -> None:
    settings, endpoints = draft_lab.settings, draft_lab.endpoints
    with Agent(endpoints, settings) as agent:
        signed_in = agent.sign_in(USER, PASSWORD)
        secret = obtain_client_secret(settings, endpoints, agent.http)
        seen: list[tuple[str, str]] = []

        def at_idp(audience: str, resource: str):  # type: ignore[no-untyped-def]
            # Leg 1 is the deployment's: ask the IdP for what the MCP server's challenge named
            # (MCP "Scope Selection Strategy"), found by the agent's own discovery.
            seen.append((audience, resource))
            hint = agent.discovery.scope_hint if agent.discovery is not None else None
            return agent.request_id_jag_at_idp(signed_in.id_token, hint, resource, audience)

        provider = build_provider(
            settings, endpoints, signed_in.id_token, secret, pdp=agent.pdp, issue_id_jag=at_idp
        )
        result = anyio.run(call_tool_with_provider, endpoints.mcp, provider, "list_docs", {})
    assert not result.is_error, result.text
    assert_docs(result.data)
    assert seen == [(endpoints.zts, endpoints.mcp)]


async def list_then_call(
    url: str,
    provider: IdentityAssertionOAuthProvider,
    between: Callable[[], None],
    recorder: Recorder,
) -> Any:
    """One MCP session: list the tools, let ``between`` change the lab, then call list_docs."""
    async with (
        httpx2.AsyncClient(auth=provider, event_hooks=recorder.async_hooks(), timeout=30) as http,
        mcp_session(http, url) as client,
    ):
        await client.list_tools()
        await anyio.to_thread.run_sync(between)
        return await client.call_tool("list_docs", {})


def test_python_sdk_provider_steps_up_on_403_with_the_challenges_scope(
    running_lab: RunningLab,
) -> None:
    """Mid-session the learner is granted mcp-accessor and the server starts requiring it (step
    8): the next call is refused 403 ``insufficient_scope`` with ``scope=``, and the SDK's own
    step-up gets a token for exactly that scope."""
    settings, endpoints, admin = running_lab.settings, running_lab.endpoints, running_lab.admin
    settings_url = f"{endpoints.mcp_origin}/lab/settings"

    def require_access(on: bool) -> None:
        admin.call("PUT", settings_url, endpoints.mcp_origin, {"require_access": on})

    admin.remove_member("mcp", "mcp-accessor", LEARNER_PRINCIPAL)
    require_access(False)

    def grant_and_require() -> None:
        admin.member("mcp", "mcp-accessor", LEARNER_PRINCIPAL)
        require_access(True)

    recorder = Recorder()
    with Agent(endpoints, settings, recorder) as agent:
        signed_in = agent.sign_in(USER, PASSWORD)
        secret = obtain_client_secret(settings, endpoints, agent.http)
        provider = build_provider(settings, endpoints, signed_in.id_token, secret, pdp=agent.pdp)
        result = anyio.run(list_then_call, endpoints.mcp, provider, grant_and_require, recorder)
    assert not result.is_error, result.content
    assert [doc["id"] for doc in result.structured_content["docs"]] == [1, 2]
    refusals = [e for e in recorder.exchanges if e.url == endpoints.mcp and e.status == 403]
    assert len(refusals) == 1
    challenge = parse_bearer_challenge(refusals[0].response_headers["www-authenticate"])
    assert challenge["error"] == "insufficient_scope"
    forms = [
        dict(parse_qsl(e.request_body)) for e in recorder.exchanges if e.url == endpoints.zts_token
    ]
    grants = [f for f in forms if f["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"]
    assert len(grants) == 2
    assert "scope" not in grants[0]  # the SDK's default: no scope until a challenge names one
    assert grants[1]["scope"] == challenge["scope"]  # the step-up asks for exactly that


def test_typescript_cross_app_access_provider_reaches_list_docs(draft_lab: RunningLab) -> None:
    prefix = require(TS_CLIENT)
    settings, endpoints = draft_lab.settings, draft_lab.endpoints
    with Agent(endpoints, settings) as agent:
        signed_in = agent.sign_in(USER, PASSWORD)
        secret = obtain_client_secret(settings, endpoints, agent.http)
        idp_client = agent.idp_client
    env = node_env(
        {
            "LAB_TS_CLIENT_ENTRY": str(TS_CLIENT.package_dir / "dist" / "index.mjs"),
            "LAB_MCP_URL": endpoints.mcp,
            "LAB_AS_ISSUER": endpoints.zts,
            "LAB_CLIENT_ID": AGENT_PRINCIPAL,
            "LAB_CLIENT_SECRET": secret,
            "LAB_IDP_ISSUER": endpoints.idp_issuer,
            "LAB_IDP_CLIENT_ID": idp_client.client_id,
            "LAB_IDP_CLIENT_SECRET": idp_client.client_secret,
            "LAB_ID_TOKEN": str(signed_in.id_token),
        }
    )
    done = subprocess.run(
        [str(node_bin_dir() / "node"), str(TS_SCRIPT)],
        cwd=prefix,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert secret not in done.stdout + done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert "list_docs" in out["tools"]
    assert not out["isError"], out["text"]
    data = out["structuredContent"] or json.loads(out["text"])
    assert_docs(data)
    assert data["exchanged_token"]["sub"] == LEARNER_PRINCIPAL
    (context,) = out["assertionContexts"]
    assert context["resourceUrl"] == endpoints.mcp
    assert context["authorizationServerUrl"].rstrip("/") == endpoints.zts


def test_mcp_inspector_cli_lists_and_calls_tools_with_a_lab_token(
    running_lab: RunningLab, tmp_path: Path
) -> None:
    prefix = require(INSPECTOR)
    with Agent(running_lab.endpoints, running_lab.settings) as agent:
        signed_in = agent.sign_in(USER, PASSWORD)
        access = agent.redeem_id_jag(agent.request_id_jag(signed_in.id_token, DEFAULT_SCOPE).token)
    assert access.ok, access.body
    env = node_env({"MCP_CATALOG_PATH": str(tmp_path / "mcp.json"), "HOME": str(tmp_path)})

    def inspector(*args: str) -> dict:
        done = subprocess.run(
            [
                str(INSPECTOR.bin("inspector")),
                "--cli",
                running_lab.endpoints.mcp,
                "--transport",
                "http",
                "--header",
                f"Authorization: Bearer {access.token}",
                *args,
            ],
            cwd=prefix,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout)

    listed = inspector("--method", "tools/list")
    assert {"list_docs", "get_doc"} <= {tool["name"] for tool in listed["tools"]}
    called = inspector("--method", "tools/call", "--tool-name", "get_doc", "--tool-arg", "id=2")
    assert not called.get("isError"), called
    assert "how are you?" in json.dumps(called)
